//! `cargo xtask mutants`: do the request tracker's checks catch its bugs?
//!
//! Each mutation below is a bug the tracker is exposed to, written as exact text
//! replacements in its sources. Each is applied to a scratch copy of `shutdown-core`
//! (in `target/mutants/`, a workspace of its own), which must still compile, and then
//! the loom models must fail on it, or else the unit tests under miri. A mutation that
//! no longer applies (its text is gone) is an error, not a pass; so is a mutation that
//! survives both; and the unmutated copy must pass, so that a failure means the bug was
//! found.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// A text replacement in files of `crates/shutdown-core/src/in_flight/`: of exactly
/// one occurrence in them all, or (`every`) of every occurrence, of which there must
/// be at least one.
struct Edit {
    files: &'static [&'static str],
    from: &'static str,
    to: &'static str,
    every: bool,
}

struct Mutation {
    name: &'static str,
    bug: &'static str,
    edits: Vec<Edit>,
}

fn mutations() -> Vec<Mutation> {
    // The tracker's code; `owner.rs` has no ordering of its own outside the loom
    // record of its memory.
    const TRACKER: &[&str] = &["state.rs", "mod.rs"];
    let relaxed = ["Ordering::AcqRel", "Ordering::Acquire", "Ordering::Release"]
        .into_iter()
        .map(|from| Edit {
            files: TRACKER,
            from,
            to: "Ordering::Relaxed",
            every: true,
        })
        .collect();
    vec![
        Mutation {
            name: "relaxed",
            bug: "every ordering made `Relaxed`",
            edits: relaxed,
        },
        Mutation {
            name: "exit-without-release",
            bug: "the exit's compare-exchange without `Release`",
            edits: vec![Edit {
                files: &["state.rs"],
                from: "                next,\n                Ordering::AcqRel,",
                to: "                next,\n                Ordering::Acquire,",
                every: false,
            }],
        },
        Mutation {
            name: "observer-after-exit",
            bug: "the observer told after the count drops (a use after free)",
            edits: vec![Edit {
                files: &["owner.rs"],
                from: "            notify_observer(this, Event::Finished);\n            this.state.exit()\n",
                to: "            let outcome = this.state.exit();\n            notify_observer(this, Event::Finished);\n            outcome\n",
                every: false,
            }],
        },
        Mutation {
            name: "finish-wake-first",
            bug: "`finish_wake` before `notify_waiters` (a use after free)",
            edits: vec![Edit {
                files: &["owner.rs"],
                from: "            wake_waiters(this);\n            this.state.finish_wake()\n",
                to: "            let last = this.state.finish_wake();\n            wake_waiters(this);\n            last\n",
                every: false,
            }],
        },
    ]
}

/// How the checks went on one copy.
struct Verdict {
    compiled: bool,
    loom_failed: bool,
    /// `None` when miri did not run.
    miri_failed: Option<bool>,
}

/// `every_check`: run miri on each mutation even when the loom models already failed
/// (for the table in docs/architecture.md), rather than only as a second line.
pub(crate) fn run(every_check: bool) -> ExitCode {
    match run_all(every_check) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("mutants: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_all(every_check: bool) -> Result<bool, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the xtask crate has no parent directory")?
        .to_path_buf();
    let scratch = root.join("target").join("mutants");
    let miri = crate::succeeds("cargo", &["+nightly", "miri", "--version"]);
    if !miri {
        println!("WARNING: miri is not installed: only the loom models check the mutations");
    }
    let fresh_copy = || copy_crate(&root, &scratch).map_err(|e| format!("copying the crate: {e}"));
    let mut rows = Vec::new();
    let mut ok = true;

    let started = Instant::now();
    fresh_copy()?;
    let baseline = check(&scratch, "unmutated", miri, every_check)?;
    let baseline_ok =
        baseline.compiled && !baseline.loom_failed && baseline.miri_failed != Some(true);
    ok &= baseline_ok;
    rows.push((
        "(none)",
        "the tracker as it is",
        if baseline_ok {
            "passes, as it must".to_owned()
        } else {
            "FAILS: the checks fail without a mutation".to_owned()
        },
        started.elapsed().as_secs_f64(),
    ));

    for mutation in mutations() {
        let started = Instant::now();
        fresh_copy()?;
        let result = match apply(&scratch, &mutation) {
            Err(error) => {
                ok = false;
                format!("DOES NOT APPLY: {error}")
            }
            Ok(()) => {
                let verdict = check(&scratch, mutation.name, miri, every_check)?;
                let miri_too = match verdict.miri_failed {
                    Some(true) => ", and by miri",
                    Some(false) => ", not by miri",
                    None => "",
                };
                if !verdict.compiled {
                    ok = false;
                    "DOES NOT COMPILE: fix the mutation".to_owned()
                } else if verdict.loom_failed {
                    format!("killed by the loom models{miri_too}")
                } else if verdict.miri_failed == Some(true) {
                    "killed by miri (the loom models passed)".to_owned()
                } else {
                    ok = false;
                    if miri {
                        "SURVIVED the loom models and miri".to_owned()
                    } else {
                        "SURVIVED the loom models (miri not installed)".to_owned()
                    }
                }
            }
        };
        rows.push((
            mutation.name,
            mutation.bug,
            result,
            started.elapsed().as_secs_f64(),
        ));
    }

    // The scratch copy ends unmutated, so that nothing left there looks like the crate.
    fresh_copy()?;
    println!("\n| mutation | bug | result | time |\n|---|---|---|---|");
    for (name, bug, result, secs) in &rows {
        println!("| {name} | {bug} | {result} | {secs:.0} s |");
    }
    if ok {
        println!("\nmutants: every mutation was killed");
    } else {
        println!("\nmutants: FAILED (see the table)");
    }
    Ok(ok)
}

/// Builds the copy in `scratch` and runs its loom models, then the unit tests under
/// miri if it is installed and either the models passed or `every_check`.
fn check(scratch: &Path, label: &str, miri: bool, every_check: bool) -> Result<Verdict, String> {
    // Target directories of the scratch workspace's own: the copy's `shutdown-core` has
    // the same relative path, so cargo gives its artifacts the same names as the real
    // crate's, and a shared `target/loom` would hand the next `cargo xtask loom` the
    // last mutant's build as fresh.
    let loom_target = scratch.join("target").join("loom");
    let loom = |extra: &[&str]| {
        let mut command = Command::new("cargo");
        command
            .current_dir(scratch)
            .args(["test", "--package", "shutdown-core", "--lib", "--release"])
            .arg("--target-dir")
            .arg(&loom_target)
            .args(extra)
            .env("RUSTFLAGS", crate::LOOM_RUSTFLAGS)
            .env("LOOM_MAX_PREEMPTIONS", crate::LOOM_MAX_PREEMPTIONS);
        command
    };
    println!("\n==> mutants: {label}: build");
    if !status(loom(&["--no-run"]), true)? {
        return Ok(Verdict {
            compiled: false,
            loom_failed: false,
            miri_failed: None,
        });
    }
    println!("==> mutants: {label}: loom models");
    let loom_failed = !status(loom(&["--", "loom_tests"]), false)?;
    let miri_failed = if miri && (every_check || !loom_failed) {
        println!("==> mutants: {label}: unit tests under miri");
        let mut command = Command::new("cargo");
        command
            .current_dir(scratch)
            .args(["+nightly", "miri", "test", "--package", "shutdown-core"])
            .args(["--lib", "--target-dir"])
            .arg(scratch.join("target").join("miri"))
            .args(["--", "in_flight::tests"]);
        Some(!status(command, false)?)
    } else {
        None
    };
    Ok(Verdict {
        compiled: true,
        loom_failed,
        miri_failed,
    })
}

/// Runs `command` (with `--quiet` for a build) and says whether it succeeded.
fn status(mut command: Command, quiet: bool) -> Result<bool, String> {
    if quiet {
        command.arg("--quiet");
    }
    command
        .stdin(Stdio::null())
        .status()
        .map(|status| status.success())
        .map_err(|e| format!("could not run cargo: {e}"))
}

/// Applies every edit of `mutation` to the copy, or says which one no longer matches.
fn apply(scratch: &Path, mutation: &Mutation) -> Result<(), String> {
    for edit in &mutation.edits {
        let mut texts = Vec::new();
        for file in edit.files {
            let path = in_flight(scratch).join(file);
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            texts.push((path, text));
        }
        let found: usize = texts
            .iter()
            .map(|(_, t)| t.matches(edit.from).count())
            .sum();
        let fits = if edit.every { found >= 1 } else { found == 1 };
        if !fits {
            let expected = if edit.every {
                "at least one"
            } else {
                "exactly one"
            };
            return Err(format!(
                "{}: expected {expected} of {:?}, found {found}",
                edit.files.join(", "),
                edit.from
            ));
        }
        for (path, text) in texts {
            fs::write(&path, text.replace(edit.from, edit.to))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn in_flight(crate_root: &Path) -> PathBuf {
    crate_root
        .join("crates")
        .join("shutdown-core")
        .join("src")
        .join("in_flight")
}

/// Makes `scratch` a workspace of two members, `shutdown-core` and the test support
/// crate it uses, copied from `root` with the same lock file and settings.
fn copy_crate(root: &Path, scratch: &Path) -> io::Result<()> {
    for member in ["crates/shutdown-core", "tests/support"] {
        let to = scratch.join(member);
        if to.exists() {
            fs::remove_dir_all(&to)?;
        }
        copy_dir(&root.join(member), &to)?;
    }
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    let mut members = 0;
    let manifest: String = manifest
        .lines()
        .map(|line| {
            if line.starts_with("members = ") {
                members += 1;
                "members = [\"crates/shutdown-core\", \"tests/support\"]".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if members != 1 {
        return Err(io::Error::other(
            "the root Cargo.toml has no single `members = ` line to replace",
        ));
    }
    fs::write(scratch.join("Cargo.toml"), manifest + "\n")?;
    fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else {
            fs::copy(&path, to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
