//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! - `ci`: every check CI runs, in order; the first failing step stops the run with its
//!   exit code. A check whose tool is missing is skipped, and said so at the start and
//!   at the end.
//! - `recipes`: only the checks of `docs/deploy` by the tools that read the files:
//!   `haproxy -c`, `kubernetes-validate` and `systemd-analyze verify`
//!   (`systemd-units`).
//! - `loom`: only the `loom` model checks of `shutdown-core`.
//! - `mutants`: applies bugs the request tracker is exposed to, one at a time, to a
//!   scratch copy, and requires the loom models (or miri) to catch each one.
//! - `miri`: only the request tracker's unit tests under miri, with both borrow models
//!   (needs the nightly toolchain with its `miri` component, which `.ci/run` installs;
//!   where it cannot, `ci` warns and runs them under valgrind instead).
//! - `valgrind`: the same tests under valgrind's memcheck.
//! - `bench`: the benchmarks, summarised in `docs/bench-summary.md`; `bench long-lived`
//!   only the long-lived connections one (SSE and WebSockets at SIGTERM); `bench e2e`
//!   only the end-to-end axum comparison, printed.
//! - `bench-writes`: only the demo's write benchmark by `ACK_MODE` (part of `bench`),
//!   printed.
//! - `rolling-restart`: two demo instances behind haproxy on loopback, restarted in
//!   turn under load; 0 failed requests is the target (see `docs/deploy/README.md`).
//! - `hot-restart`: one demo instance under write load, restarted in place (`SIGHUP`)
//!   5 times, next to the same run restarted by `SIGTERM` + start; 0 failed, 0 `503`
//!   and 0 lost is the target for the restart in place (see `docs/performance.md`).

mod bench;
mod bench_e2e;
mod bench_writes;
mod hot_restart;
mod http;
mod mutants;
mod rolling_restart;
mod systemd;

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The loom models' preemption bound: every model explores all interleavings with up
/// to this many preemptions (about 6 s for the four models; 4 takes about 40 s).
const LOOM_MAX_PREEMPTIONS: &str = "3";
/// The loom build: the tracker on loom's types, warnings denied (clippy does not see
/// this build).
const LOOM_RUSTFLAGS: &str = "--cfg loom -D warnings";

struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
}

impl Step {
    fn new(name: &'static str, program: &'static str, args: &[&str]) -> Self {
        Self {
            name,
            program,
            args: args.iter().map(|&arg| arg.to_owned()).collect(),
            env: Vec::new(),
        }
    }

    fn cargo(name: &'static str, args: &[&str]) -> Self {
        Self::new(name, "cargo", args)
    }

    fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let mut warnings = Vec::new();
    let steps = match args.first().map(String::as_str) {
        Some("ci") => ci_steps(&mut warnings),
        Some("recipes") => recipe_steps(&mut warnings),
        Some("loom") => vec![loom_step()],
        Some("mutants") => {
            return mutants::run(args.get(1).is_some_and(|a| a == "--every-check"));
        }
        Some("miri") => miri_steps(),
        Some("valgrind") => vec![valgrind_step()],
        Some("rolling-restart") => return rolling_restart::run(&args[1..]),
        Some("hot-restart") => return hot_restart::run(&args[1..]),
        Some("systemd-units") => return systemd::run(),
        Some("bench") if args.get(1).map(String::as_str) == Some("long-lived") => {
            return bench::run_long_lived();
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("e2e") => {
            return bench::run_e2e();
        }
        Some("bench") => return bench::run(),
        Some("bench-writes") => return bench::run_writes(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|recipes|systemd-units|loom|mutants|miri|valgrind|bench|bench-writes|rolling-restart|hot-restart>"
            );
            eprintln!(
                "  ci    fmt, recipes, clippy, binaries, tests, doc tests, loom, mutants, docs, miri: what CI runs"
            );
            eprintln!(
                "  recipes  docs/deploy checked by haproxy -c, kubernetes-validate and systemd-analyze"
            );
            eprintln!("  systemd-units  only the systemd units, by systemd-analyze verify");
            eprintln!("  loom  the loom model checks of shutdown-core");
            eprintln!(
                "  mutants [--every-check]  the tracker's bugs, one at a time: loom or miri must fail"
            );
            eprintln!("  miri  the request tracker's tests under miri (nightly toolchain)");
            eprintln!("  valgrind  the same tests under valgrind's memcheck");
            eprintln!("  bench  the benchmarks; writes docs/bench-summary.md");
            eprintln!(
                "  bench-writes [--clients N]  only the demo's write benchmark by ACK_MODE, printed"
            );
            eprintln!("  bench long-lived  only the long-lived connections benchmark");
            eprintln!("  bench e2e  only the end-to-end axum comparison under wrk, printed");
            eprintln!("  rolling-restart [--bin telemetry-axum] [--path /slow?ms=5]");
            eprintln!("        two instances behind haproxy, restarted in turn under load");
            eprintln!("  hot-restart [--bin telemetry-axum] [--ack-mode durable|buffered]");
            eprintln!(
                "        one instance under write load, restarted in place by SIGHUP 5 times,"
            );
            eprintln!("        next to the same run restarted by SIGTERM + start");
            return ExitCode::from(2);
        }
    };
    run(&steps, &warnings)
}

fn ci_steps(warnings: &mut Vec<String>) -> Vec<Step> {
    let tests = if succeeds("cargo", &["nextest", "--version"]) {
        Step::cargo(
            "tests (nextest)",
            &[
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
            ],
        )
    } else {
        Step::cargo(
            "tests (cargo test)",
            &[
                "test",
                "--workspace",
                "--all-features",
                "--lib",
                "--bins",
                "--tests",
                "--no-fail-fast",
            ],
        )
    };
    let recipes = recipe_steps(warnings);
    let mut steps = vec![Step::cargo("fmt", &["fmt", "--all", "--", "--check"])];
    steps.extend(recipes);
    steps.extend([
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // The end-to-end tests start the example binaries of other packages, which a
        // test run does not build.
        Step::cargo(
            "build binaries",
            &["build", "--workspace", "--all-features", "--bins"],
        ),
        tests,
        Step::cargo(
            "doc tests",
            &["test", "--workspace", "--all-features", "--doc"],
        ),
        loom_step(),
        Step::cargo("mutants", &["xtask", "mutants"]),
        Step::cargo(
            "docs",
            &["doc", "--workspace", "--all-features", "--no-deps"],
        )
        .env("RUSTDOCFLAGS", "-D warnings"),
    ]);
    if succeeds("cargo", &["+nightly", "miri", "--version"]) {
        steps.extend(miri_steps());
    } else if succeeds("valgrind", &["--version"]) {
        warnings.push(
            "miri is not installed for the nightly toolchain (.ci/run could not install it): \
             the tracker's tests run under valgrind instead, which sees fewer bugs"
                .to_owned(),
        );
        let mut step = valgrind_step();
        step.name = "valgrind (FALLBACK: no miri)";
        steps.push(step);
    } else {
        warnings.push(
            "neither miri nor valgrind is installed: the tracker's memory check is SKIPPED"
                .to_owned(),
        );
    }
    // Linux: the restart in place passes the listening socket to the successor.
    if cfg!(target_os = "linux") {
        steps.push(Step::cargo(
            "hot restart in place (SIGHUP) under write load",
            &["xtask", "hot-restart"],
        ));
    }
    if succeeds("haproxy", &["-v"]) {
        steps.push(Step::cargo(
            "rolling restart behind haproxy",
            &["xtask", "rolling-restart"],
        ));
    } else {
        warnings.push("haproxy is not installed: the rolling-restart check is skipped".to_owned());
    }
    steps
}

/// The deployment recipes checked by the tools that read them: `haproxy -c` on
/// `docs/deploy/haproxy.cfg`, `kubernetes-validate` (PyPI) on
/// `docs/deploy/kubernetes.yaml` against the API schemas of the two newest Kubernetes
/// versions it knows (its own version is the newest, e.g. 1.37.0: 1.37 and 1.36), and
/// `systemd-analyze verify` on the systemd units (`cargo xtask systemd-units`).
fn recipe_steps(warnings: &mut Vec<String>) -> Vec<Step> {
    let mut steps = Vec::new();
    if succeeds("haproxy", &["-v"]) {
        steps.push(Step::new(
            "haproxy recipe",
            "haproxy",
            &["-c", "-f", rolling_restart::HAPROXY_CFG],
        ));
    } else {
        warnings.push(format!(
            "{}: haproxy is not installed (Debian: apt-get install haproxy): its check is SKIPPED",
            rolling_restart::HAPROXY_CFG
        ));
    }
    match newest_kubernetes_versions() {
        Ok([newest, previous]) => {
            let mut step = Step::new(
                "Kubernetes recipe",
                "kubernetes-validate",
                &["--strict", "--kubernetes-version", &newest],
            );
            step.args.extend([
                "--kubernetes-version".into(),
                previous,
                KUBERNETES_YAML.into(),
            ]);
            steps.push(step);
        }
        Err(error) => warnings.push(format!(
            "{KUBERNETES_YAML}: {error} (pip install kubernetes-validate): its check is SKIPPED"
        )),
    }
    if succeeds("systemd-analyze", &["--version"]) {
        steps.push(Step::cargo("systemd recipe", &["xtask", "systemd-units"]));
    } else {
        warnings.push(
            "docs/deploy/telemetry-axum.{service,socket}: systemd-analyze is not installed \
             (Debian: apt-get install systemd): their check is SKIPPED"
                .to_owned(),
        );
    }
    steps
}

const KUBERNETES_YAML: &str = "docs/deploy/kubernetes.yaml";

/// The two newest Kubernetes versions `kubernetes-validate` knows, newest first: its
/// own version names the newest (`1.37.0` validates up to Kubernetes 1.37).
fn newest_kubernetes_versions() -> Result<[String; 2], String> {
    let output = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .map_err(|_| "kubernetes-validate is not installed".to_owned())?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let parsed = version
        .split('.')
        .take(2)
        .map(str::parse::<u32>)
        .collect::<Vec<_>>();
    match parsed.as_slice() {
        [Ok(major), Ok(minor)] if output.status.success() && *minor > 0 => {
            Ok([format!("{major}.{minor}"), format!("{major}.{}", minor - 1)])
        }
        _ => Err(format!(
            "kubernetes-validate --version answered {version:?}, not a version like 1.37.0"
        )),
    }
}

/// A check with options: `2` when `options` could not be parsed, `1` when the check
/// fails (`Ok(false)`, its output says why) or cannot run (`Err`), success otherwise.
fn run_checked<O>(
    name: &str,
    options: Result<O, String>,
    check: impl FnOnce(&O) -> Result<bool, String>,
) -> ExitCode {
    let options = match options {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::from(2);
        }
    };
    match check(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::from(1)
        }
    }
}

/// Cargo's target directory, as the cargo running the xtask uses it.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// Builds the binary of `package` (debug profile); its path.
fn build_debug(package: &str) -> Result<PathBuf, String> {
    println!("==> building {package}");
    let status = Command::new("cargo")
        .args(["build", "--quiet", "--package", package])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --package {package} failed"));
    }
    Ok(target_dir().join("debug").join(package))
}

/// Whether `program args` runs and exits with success: is a tool installed?
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

fn loom_step() -> Step {
    // A separate target directory: `--cfg loom` would otherwise rebuild everything
    // that the other steps just built.
    Step::cargo(
        "loom",
        &[
            "test",
            "--package",
            "shutdown-core",
            "--lib",
            "--release",
            "--target-dir",
            "target/loom",
            "--",
            "loom_tests",
        ],
    )
    .env("RUSTFLAGS", LOOM_RUSTFLAGS)
    .env("LOOM_MAX_PREEMPTIONS", LOOM_MAX_PREEMPTIONS)
}

/// The request tracker is the one module with `unsafe` (its last holder frees it): its
/// unit tests run under miri, which reports a use after free, a double free, a leak or
/// a data race, with each of miri's two aliasing models.
fn miri_steps() -> Vec<Step> {
    const ARGS: &[&str] = &[
        "+nightly",
        "miri",
        "test",
        "--package",
        "shutdown-core",
        "--lib",
        "--",
        "in_flight::tests",
    ];
    vec![
        Step::cargo("miri (stacked borrows)", ARGS),
        Step::cargo("miri (tree borrows)", ARGS).env("MIRIFLAGS", "-Zmiri-tree-borrows"),
    ]
}

/// Where miri is missing (the stable toolchain alone): the same tests under valgrind's
/// memcheck, which reports a use after free or a double free on the paths the threads
/// take, and a tracker that no holder freed as a definite leak.
fn valgrind_step() -> Step {
    Step::cargo(
        "valgrind",
        &[
            "test",
            "--package",
            "shutdown-core",
            "--lib",
            "--config",
            "target.'cfg(target_os = \"linux\")'.runner = ['valgrind', '--quiet', '--error-exitcode=9', '--leak-check=full', '--errors-for-leak-kinds=definite']",
            "--",
            "in_flight::tests",
        ],
    )
}

/// Runs `steps` in order, stopping at the first failure, then prints the step table
/// with `warnings` (checks replaced or skipped on this machine) under it.
fn run(steps: &[Step], warnings: &[String]) -> ExitCode {
    for warning in warnings {
        println!("WARNING: {warning}");
    }
    let started = Instant::now();
    let mut table = Vec::new();
    let mut failed = None;
    for (index, step) in steps.iter().enumerate() {
        let shown_env: String = step
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v:?} "))
            .collect();
        println!(
            "\n==> [{}/{}] {}: {shown_env}{} {}",
            index + 1,
            steps.len(),
            step.name,
            step.program,
            step.args.join(" ")
        );
        let step_started = Instant::now();
        let status = Command::new(step.program)
            .args(&step.args)
            .envs(step.env.iter().copied())
            .status();
        let secs = step_started.elapsed().as_secs_f64();
        let result = match status {
            Ok(status) if status.success() => {
                println!("==> {} passed in {secs:.1}s", step.name);
                "passed".to_owned()
            }
            Ok(status) => {
                let code = status.code().unwrap_or(1);
                println!("==> {} FAILED in {secs:.1}s (exit code {code})", step.name);
                failed = Some(u8::try_from(code).unwrap_or(1).max(1));
                format!("FAILED (exit code {code})")
            }
            Err(error) => {
                println!(
                    "==> {} could not start `{}`: {error}",
                    step.name, step.program
                );
                failed = Some(1);
                "could not start".to_owned()
            }
        };
        table.push((step.name, result, secs));
        if failed.is_some() {
            break;
        }
    }
    println!("\n| step | result | time |\n|---|---|---|");
    for (name, result, secs) in &table {
        println!("| {name} | {result} | {secs:.1} s |");
    }
    for warning in warnings {
        println!("| WARNING | {warning} | |");
    }
    match failed {
        Some(code) => ExitCode::from(code),
        None => {
            println!(
                "\n==> all {} steps passed in {:.1}s",
                steps.len(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
    }
}
