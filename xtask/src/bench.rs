//! `cargo xtask bench`: runs the benchmarks and writes `docs/bench-summary.md`, a
//! summary table with the machine and the date, which `docs/performance.md` links to.
//!
//! - criterion: `enter_exit` (shutdown-core, 1 and 2 threads), `per_request`
//!   (drain-tower) and `axum_router` (drain-axum), medians read from
//!   `target/criterion/*/new/estimates.json`;
//! - the layer's allocations and heap bytes per request (`layer-cost`, dhat);
//! - drain latency: `cargo bench -p shutdown-core --bench drain_latency` (1000 drains);
//! - shutdown latency: SIGTERM to process exit of `telemetry-axum` (release build) with
//!   nothing in flight, 20 runs;
//! - end to end (`bench_e2e`): bare axum, axum + drain adapter, axum + `tokio-graceful`
//!   under `wrk`, alternating, 9 rounds (`cargo xtask bench e2e` runs only these and
//!   prints them); and 10,000 requests in flight drained;
//! - writes (`bench_writes`): `POST /telemetry` throughput and p99 latency of the demo
//!   by `ACK_MODE`: durable (group commit), buffered, one transaction per request.
//! - gRPC (`tonic-bench`, release build): unary RPCs per second through tonic's
//!   `Server`, with its `serve_with_shutdown`, with `DrainLayer`, and through
//!   `drain_tonic::serve`, as ratios of one run; and the time to exit with a stream
//!   open (tonic's, bounded: it never exits).
//! - long-lived connections (`long-lived-bench`): 200 SSE streams, 200 WebSockets and
//!   short requests at SIGTERM, on axum, actix-web and poem, this project's drain against
//!   each framework's own graceful shutdown. `cargo xtask bench long-lived` runs only
//!   this one and writes it into `docs/performance.md`.
//!
//! Nothing here is a test: the figures are reported, never asserted.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SHUTDOWN_RUNS: usize = 20;

/// `cargo xtask bench-writes [--clients N]`: only the write benchmark, printed.
pub fn run_writes(args: &[String]) -> ExitCode {
    let clients = match args {
        [] => crate::bench_writes::DEFAULT_CLIENTS,
        [flag, n] if flag == "--clients" => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("bench-writes: --clients takes a positive whole number, not {n:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: cargo xtask bench-writes [--clients N]");
            return ExitCode::from(2);
        }
    };
    match crate::bench_writes::run(clients) {
        Ok(section) => {
            println!("\n{section}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench-writes: {error}");
            ExitCode::from(1)
        }
    }
}

/// `cargo xtask bench e2e`: only the end-to-end comparison, printed.
pub fn run_e2e() -> ExitCode {
    match crate::bench_e2e::run() {
        Ok(section) => {
            println!("\n{section}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench e2e: {error}");
            ExitCode::from(1)
        }
    }
}

pub fn run() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::from(1)
        }
    }
}

/// The order of `modes` modes in round `round` (from 0): rotated by one each round, so
/// that no mode always runs first or after the same one.
pub(crate) fn rotation(round: usize, modes: usize) -> Vec<usize> {
    (0..modes).map(|i| (i + round) % modes).collect()
}

/// An order of modes as their names, comma-separated.
pub(crate) fn named(order: &[usize], name: impl Fn(usize) -> &'static str) -> String {
    order
        .iter()
        .map(|&m| name(m))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cargo(args: &[&str]) -> Result<String, String> {
    println!("==> cargo {}", args.join(" "));
    let output = Command::new("cargo")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{stdout}");
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("cargo {} failed", args.join(" ")))
    }
}

fn bench() -> Result<(), String> {
    let started = Instant::now();
    cargo(&[
        "bench",
        "-p",
        "shutdown-core",
        "--bench",
        "enter_exit",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ])?;
    cargo(&[
        "bench",
        "-p",
        "drain-tower",
        "--bench",
        "per_request",
        "--",
        "--warm-up-time",
        "2",
        "--measurement-time",
        "5",
    ])?;
    cargo(&[
        "bench",
        "-p",
        "drain-axum",
        "--bench",
        "router",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "4",
    ])?;
    let layer_cost = cargo(&[
        "run",
        "--release",
        "--quiet",
        "-p",
        "e2e-tests",
        "--bin",
        "layer-cost",
    ])?;
    let drain = cargo(&["bench", "-p", "shutdown-core", "--bench", "drain_latency"])?;
    let drain_row = drain
        .lines()
        .find(|l| l.starts_with("| drain latency"))
        .ok_or("drain_latency printed no summary row")?
        .to_owned();
    let shutdown_row = shutdown_latency()?;
    let end_to_end = crate::bench_e2e::run()?;
    let scale = crate::bench_e2e::scale()?;
    let writes = crate::bench_writes::run(crate::bench_writes::DEFAULT_CLIENTS)?;
    let grpc = cargo(&[
        "run",
        "--release",
        "--quiet",
        "-p",
        "e2e-tests",
        "--bin",
        "tonic-bench",
    ])?;
    let long_lived = long_lived()?;

    let mut summary = String::new();
    let _ = writeln!(summary, "# Benchmark summary\n");
    let _ = writeln!(
        summary,
        "Written by `cargo xtask bench` on {} ({}, {} cores); took {:.0} s. Medians; ratios within one run.\n",
        today(),
        cpu_model(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        summary,
        "## `enter_exit` (shutdown-core): `try_enter` + drop\n"
    );
    let _ = writeln!(
        summary,
        "| threads | bare_pair | try_enter | bare_pair_arc |\n|---|---|---|---|"
    );
    for threads in ["1_thread", "2_thread"] {
        let group = format!("enter_exit_{threads}");
        let bare = median(&group, "bare_pair")?;
        let mut row = format!("| {} | {bare:.1} ns |", threads.replace('_', " "));
        for name in ["try_enter", "bare_pair_arc"] {
            let t = median(&group, name)?;
            let _ = write!(row, " {t:.1} ns ({:.2}x) |", t / bare);
        }
        let _ = writeln!(summary, "{row}");
    }
    let _ = writeln!(summary, "\nTarget: `try_enter` at most 1.5x `bare_pair`.\n");
    let _ = writeln!(
        summary,
        "## `per_request` (drain-tower): one request through a tower stack\n"
    );
    let _ = writeln!(
        summary,
        "| row | 1 thread | to `bare` | to `arc_counter_layer` | 2 threads, contended | to `bare` | to `arc_counter_layer` |\n|---|---|---|---|---|---|---|"
    );
    let bare = median("per_request", "bare")?;
    let floor = median("per_request", "arc_counter_layer")?;
    let bare2 = median("per_request_2_threads", "bare")?;
    let floor2 = median("per_request_2_threads", "arc_counter_layer")?;
    for name in [
        "bare",
        "drain_layer",
        "drain_layer_metrics",
        "arc_counter_layer",
        "core_guard_layer",
        "tokio_graceful",
        "task_tracker",
        "concurrency_limit",
        "task_tracker_body",
        "semaphore_body",
    ] {
        let t = median("per_request", name)?;
        let t2 = median("per_request_2_threads", name)?;
        let _ = writeln!(
            summary,
            "| `{name}` | {t:.1} ns | {:.2}x | {:.2}x | {t2:.1} ns | {:.2}x | {:.2}x |",
            t / bare,
            t / floor,
            t2 / bare2,
            t2 / floor2
        );
    }
    let drain_layer = median("per_request", "drain_layer")?;
    let metrics = median("per_request", "drain_layer_metrics")? - drain_layer;
    let mut slower_than = Vec::new();
    for name in [
        "tokio_graceful",
        "task_tracker",
        "concurrency_limit",
        "task_tracker_body",
        "semaphore_body",
    ] {
        if median("per_request", name)? <= drain_layer {
            slower_than.push(format!("`{name}`"));
        }
    }
    let alternatives = if slower_than.is_empty() {
        "met".to_owned()
    } else {
        format!("not met: slower than {}", slower_than.join(", "))
    };
    let _ = writeln!(
        summary,
        "\nTargets: `drain_layer` within 1.25x of `arc_counter_layer` ({:.2}x: {}), faster than each alternative (1 thread: {alternatives}), metrics observer at most 30 ns ({metrics:.1} ns: {}).\n",
        drain_layer / floor,
        if drain_layer / floor <= 1.25 {
            "met"
        } else {
            "not met"
        },
        if metrics <= 30.0 { "met" } else { "not met" }
    );
    let _ = writeln!(
        summary,
        "## `axum_router` (drain-axum): one request through an axum `Router`, in process\n"
    );
    let _ = writeln!(summary, "| row | time | to `bare` |\n|---|---|---|");
    let router_bare = median("axum_router", "bare")?;
    for name in ["bare", "with_drain", "drained"] {
        let t = median("axum_router", name)?;
        let _ = writeln!(
            summary,
            "| `{name}` | {t:.1} ns | {:.2}x (+{:.0} ns) |",
            t / router_bare,
            t - router_bare
        );
    }
    let _ = writeln!(
        summary,
        "\n`with_drain` layers route by route (axum clones each route's boxed service per request); `drained` wraps the whole router once, as `drain_axum::serve` (`axum::serve`) runs it (response body boxed into axum's `Body`).\n"
    );
    let _ = writeln!(
        summary,
        "## Allocations and heap per request (`layer-cost`, dhat)\n\nRequests on `/` run to the end of their body (allocations); 1000 requests parked in a `/hold` handler, each boxed like a connection task (heap bytes in flight, what the layer's state adds inline included).\n\n{}",
        layer_cost.trim_end()
    );
    let _ = writeln!(summary);
    let _ = writeln!(
        summary,
        "## Latencies\n\n| measurement | median / p50 | p99 / max | target |\n|---|---|---|---|\n{drain_row}\n{shutdown_row}"
    );
    let _ = writeln!(
        summary,
        "\n{end_to_end}\n\n{scale}\n\n{writes}\n\n{}\n\n{long_lived}",
        grpc.trim_end()
    );
    fs::write("docs/bench-summary.md", &summary)
        .map_err(|e| format!("docs/bench-summary.md: {e}"))?;
    include_in_performance_md(&summary)?;
    println!("\n{summary}\nwritten to docs/bench-summary.md");
    Ok(())
}

const SUMMARY_START: &str = "<!-- bench-summary:start -->";
const SUMMARY_END: &str = "<!-- bench-summary:end -->";
const LONG_LIVED_START: &str = "<!-- long-lived:start -->";
const LONG_LIVED_END: &str = "<!-- long-lived:end -->";

/// `cargo xtask bench long-lived`: only the long-lived connections benchmark, written
/// into `docs/performance.md` between its markers.
pub fn run_long_lived() -> ExitCode {
    let result = long_lived().and_then(|section| {
        let path = "docs/performance.md";
        let page = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let dated = format!(
            "Run of {} ({}, {} cores).\n\n{section}",
            today(),
            cpu_model(),
            thread::available_parallelism().map_or(0, |n| n.get())
        );
        let page = between(&page, LONG_LIVED_START, LONG_LIVED_END, &dated)
            .map_err(|e| format!("{path}: {e}"))?;
        fs::write(path, page).map_err(|e| format!("{path}: {e}"))?;
        println!("\n{dated}\nwritten to {path}");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::from(1)
        }
    }
}

/// The long-lived connections section: `long-lived-bench` (release), which starts
/// `long-lived-server` for each framework and mode.
fn long_lived() -> Result<String, String> {
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "-p",
        "e2e-tests",
        "--bin",
        "long-lived-server",
        "--bin",
        "long-lived-bench",
    ])?;
    let binary = crate::target_dir().join("release/long-lived-bench");
    println!("==> {}", binary.display());
    let output = Command::new(&binary)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed: {}", binary.display(), output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Copies the summary into `docs/performance.md`, between its markers.
fn include_in_performance_md(summary: &str) -> Result<(), String> {
    let path = "docs/performance.md";
    let page = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let page = with_summary(&page, summary).map_err(|e| format!("{path}: {e}"))?;
    fs::write(path, page).map_err(|e| format!("{path}: {e}"))
}

/// `page` with what is between the summary markers replaced by `summary`, its headings
/// one level down and without its title.
fn with_summary(page: &str, summary: &str) -> Result<String, String> {
    between(page, SUMMARY_START, SUMMARY_END, summary)
}

/// `page` with what is between the markers `open` and `close` replaced by `text`, its
/// headings one level down and without its title.
fn between(page: &str, open: &str, close: &str, text: &str) -> Result<String, String> {
    let (Some(start), Some(end)) = (page.find(open), page.find(close)) else {
        return Err(format!("the markers {open} / {close} are missing"));
    };
    if end < start {
        return Err(format!("{close} comes before {open}"));
    }
    let summary = text;
    let body: String = summary
        .lines()
        .filter(|line| !line.starts_with("# "))
        .map(|line| {
            if line.starts_with('#') {
                format!("#{line}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    Ok(format!(
        "{}{open}\n{}\n{}",
        &page[..start],
        body.trim(),
        &page[end..]
    ))
}

/// Criterion's median estimate, in nanoseconds.
fn median(group: &str, name: &str) -> Result<f64, String> {
    let path = crate::target_dir()
        .join("criterion")
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let json = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let median = json
        .split("\"median\"")
        .nth(1)
        .ok_or_else(|| format!("{}: no median", path.display()))?;
    let value = median
        .split("\"point_estimate\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{}: no point estimate", path.display()))?;
    Ok(value)
}

/// SIGTERM to exit of the release `telemetry-axum` with nothing in flight.
fn shutdown_latency() -> Result<String, String> {
    cargo(&["build", "--release", "--quiet", "-p", "telemetry-axum"])?;
    let binary = crate::target_dir().join("release/telemetry-axum");
    let work = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let mut times = Vec::with_capacity(SHUTDOWN_RUNS);
    for run in 0..SHUTDOWN_RUNS {
        let mut child = Command::new(&binary)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_PATH", work.join(format!("run-{run}.db")))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (listening, rx) = mpsc::channel();
        // Keeps draining the log so the child never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = listening.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            return Err("telemetry-axum did not start listening".into());
        }
        let signalled = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        times.push(signalled.elapsed());
        if !status.success() {
            return Err(format!("run {run}: exit {status}"));
        }
    }
    let _ = fs::remove_dir_all(&work);
    times.sort();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!("shutdown latency over {SHUTDOWN_RUNS} runs: median {median:?}, max {max:?}");
    Ok(format!(
        "| shutdown latency (SIGTERM -> exit of `telemetry-axum`, nothing in flight, {SHUTDOWN_RUNS} runs) | {:.1} ms | max {:.1} ms | median < 50 ms: {} |",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        if median < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        }
    ))
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown date".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_replaces_what_is_between_the_markers() {
        let page = format!("# Perf\n\ntext\n\n{SUMMARY_START}\nold\n{SUMMARY_END}\nafter\n");
        let summary = "# Benchmark summary\n\nWritten today.\n\n## Latencies\n\n| a |\n";
        let page = with_summary(&page, summary).expect("markers present");
        assert_eq!(
            page,
            format!(
                "# Perf\n\ntext\n\n{SUMMARY_START}\nWritten today.\n\n### Latencies\n\n| a |\n{SUMMARY_END}\nafter\n"
            )
        );
        let again = with_summary(&page, summary).expect("markers kept");
        assert_eq!(again, page, "running twice changes nothing");
    }

    #[test]
    fn missing_or_swapped_markers_are_errors() {
        assert!(with_summary("no markers", "# s").is_err());
        let swapped = format!("{SUMMARY_END}\n{SUMMARY_START}\n");
        assert!(with_summary(&swapped, "# s").is_err());
    }
}
