//! The long-lived connections benchmark of `cargo xtask bench`: for each framework
//! (axum, actix-web, poem), `long-lived-server` in `drain` mode (this project) and in
//! `builtin` mode (the framework's own graceful shutdown), under the same load:
//! [`STREAMS`] SSE streams and [`SOCKETS`] WebSockets open and [`SHORT`] short requests
//! in flight, then SIGTERM.
//!
//! Measured: SIGTERM to exit (with `SHUTDOWN_DELAY=0` the drain begins at SIGTERM), the
//! exit code, and how each client's connection ended. Every wait is bounded: a server
//! still running [`EXIT_BOUND`] after SIGTERM is killed, and its clients are counted as
//! cut. Loopback only. Prints a markdown section on stdout; progress on stderr.
//!
//! `long-lived-server` is looked up next to this binary (build both with the same
//! profile: `cargo build --release -p e2e-tests --bins`).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use e2e_tests::http;
use e2e_tests::long_lived::{SseClient, SseEnd, WsClient, WsEnd};

/// SSE streams open at SIGTERM.
const STREAMS: usize = 200;
/// WebSockets open at SIGTERM.
const SOCKETS: usize = 200;
/// Short requests (`/slow?ms=300`) in flight at SIGTERM.
const SHORT: usize = 20;
/// How long a server may take to exit after SIGTERM before it is killed.
const EXIT_BOUND: Duration = Duration::from_secs(15);
const START_BOUND: Duration = Duration::from_secs(20);
/// The drain's target: exit within this long of the drain's start.
const TARGET: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum SseOutcome {
    /// The `shutdown` event, then the chunked terminator.
    ShutdownEvent,
    /// The terminator without a `shutdown` event.
    Complete,
    /// Closed, reset or timed out before the terminator.
    Cut,
}

#[derive(Debug)]
enum WsOutcome {
    /// Close 1001, answered, then a clean close.
    GoingAway,
    /// A Close with another code (or none), then a clean close.
    OtherClose,
    /// No Close frame, or a reset after it.
    Cut,
}

#[derive(Debug)]
struct Run {
    framework: &'static str,
    mode: &'static str,
    exit_code: Option<i32>,
    sigterm_to_exit: Duration,
    sse: [usize; 3],
    ws: [usize; 3],
    short_ok: usize,
    report: Option<String>,
}

fn main() {
    let server = server_binary();
    let mut runs = Vec::new();
    for framework in ["axum", "actix", "poem"] {
        for mode in ["drain", "builtin"] {
            eprintln!("==> {framework} {mode}");
            match run(&server, framework, mode) {
                Ok(run) => {
                    eprintln!("    {run:?}");
                    runs.push(run);
                }
                Err(error) => {
                    eprintln!("long-lived-bench: {framework} {mode}: {error}");
                    std::process::exit(1);
                }
            }
        }
    }
    print!("{}", markdown(&runs));
}

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|error| {
        eprintln!("long-lived-bench: own path: {error}");
        std::process::exit(2)
    });
    let path = exe.with_file_name(format!("long-lived-server{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        eprintln!(
            "long-lived-bench: {} not found: `cargo build --release -p e2e-tests --bins`",
            path.display()
        );
        std::process::exit(2);
    }
    path
}

fn run(server: &PathBuf, framework: &'static str, mode: &'static str) -> Result<Run, String> {
    let mut child = Command::new(server)
        .env("BENCH_FRAMEWORK", framework)
        .env("BENCH_MODE", mode)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("SHUTDOWN_TIMEOUT", "30")
        .env("SHUTDOWN_DELAY", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", server.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (listening, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = listening.send(addr.trim().to_owned());
            }
        }
    });
    let (report_tx, report_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("graceful shutdown complete") {
                let _ = report_tx.send(line);
            }
        }
    });
    let addr: SocketAddr = match rx.recv_timeout(START_BOUND) {
        Ok(addr) => addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the server did not start".into());
        }
    };

    let (sse_tx, sse_rx) = mpsc::channel();
    for _ in 0..STREAMS {
        let mut sse = SseClient::open(addr, "/events").map_err(|e| format!("SSE: {e}"))?;
        sse.next_event().map_err(|e| format!("first tick: {e:?}"))?;
        let tx = sse_tx.clone();
        spawn_small(move || {
            let outcome = loop {
                match sse.next_event() {
                    Ok(event) if event.event == "shutdown" => {
                        break match sse.next_event() {
                            Err(SseEnd::Complete) => SseOutcome::ShutdownEvent,
                            _ => SseOutcome::Cut,
                        };
                    }
                    Ok(_) => continue,
                    Err(SseEnd::Complete) => break SseOutcome::Complete,
                    Err(SseEnd::Cut(_)) => break SseOutcome::Cut,
                }
            };
            let _ = tx.send(outcome);
        });
    }
    drop(sse_tx);
    let (ws_tx, ws_rx) = mpsc::channel();
    for _ in 0..SOCKETS {
        let (mut ws, _) = WsClient::open(addr, "/ws").map_err(|e| format!("WebSocket: {e}"))?;
        ws.echo("hello").map_err(|e| format!("echo: {e}"))?;
        let tx = ws_tx.clone();
        spawn_small(move || {
            let outcome = match ws.wait_end() {
                WsEnd::Closed(Some((1001, _))) => WsOutcome::GoingAway,
                WsEnd::Closed(_) => WsOutcome::OtherClose,
                WsEnd::ClosedThenCut(..) | WsEnd::Cut(_) => WsOutcome::Cut,
            };
            let _ = tx.send(outcome);
        });
    }
    drop(ws_tx);
    let (short_tx, short_rx) = mpsc::channel();
    for _ in 0..SHORT {
        let tx = short_tx.clone();
        spawn_small(move || {
            let ok = http::get(addr, "/slow?ms=300").is_ok_and(|r| r.status() == 200);
            let _ = tx.send(ok);
        });
    }
    drop(short_tx);
    // The short requests reach their handlers.
    thread::sleep(Duration::from_millis(100));

    let signalled = Instant::now();
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    let exit_code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if signalled.elapsed() < EXIT_BOUND => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let sigterm_to_exit = signalled.elapsed();

    let mut sse = [0; 3];
    for outcome in sse_rx.iter() {
        sse[outcome as usize] += 1;
    }
    let mut ws = [0; 3];
    for outcome in ws_rx.iter() {
        ws[outcome as usize] += 1;
    }
    let short_ok = short_rx.iter().filter(|ok| *ok).count();
    Ok(Run {
        framework,
        mode,
        exit_code,
        sigterm_to_exit,
        sse,
        ws,
        short_ok,
        report: report_rx.recv_timeout(Duration::from_secs(1)).ok(),
    })
}

/// A client thread with a small stack: a run has a few hundred of them.
fn spawn_small(f: impl FnOnce() + Send + 'static) {
    if let Err(error) = thread::Builder::new().stack_size(256 * 1024).spawn(f) {
        eprintln!("long-lived-bench: client thread: {error}");
        std::process::exit(1);
    }
}

/// `key=value` in a log line.
fn field(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or("?")
        .to_owned()
}

fn markdown(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Long-lived connections: {STREAMS} SSE streams + {SOCKETS} WebSockets open and {SHORT} short requests in flight, then SIGTERM\n"
    );
    let _ = writeln!(
        out,
        "`long-lived-server` (release) on 127.0.0.1, one process per row: SSE ticks every 100 ms on `/events`, a WebSocket echo on `/ws`, `/slow?ms=300` in flight. `drain`: the adapter's `DrainLayer`, `OnDrain` + `sse`, its WebSocket session and `serve` (`SHUTDOWN_TIMEOUT=30`, `SHUTDOWN_DELAY=0`, so the drain begins at SIGTERM). `builtin`: the framework's own SSE, WebSocket and graceful shutdown on SIGTERM (axum: `with_graceful_shutdown`, no bound; actix-web: `HttpServer` signals, `shutdown_timeout(10)`; poem: `run_with_graceful_shutdown(.., Some(10 s))`). A server still running {} s after SIGTERM is killed (the measurement's bound, not the server's): its time reads `> {} s`.\n",
        EXIT_BOUND.as_secs(),
        EXIT_BOUND.as_secs()
    );
    let _ = writeln!(
        out,
        "| server | SIGTERM to exit | exit code | SSE: `shutdown` event + complete / complete / cut | WebSocket: Close 1001 + clean close / other close / cut | short requests `200` | report (`drained`, `streams_closed_by_drain`, `interrupted`) |\n|---|---|---|---|---|---|---|"
    );
    for run in runs {
        let time = match run.exit_code {
            Some(_) => format!("{:.0} ms", run.sigterm_to_exit.as_secs_f64() * 1e3),
            None => format!("> {} s (killed)", EXIT_BOUND.as_secs()),
        };
        let code = run
            .exit_code
            .map_or_else(|| "none (killed)".to_owned(), |c| c.to_string());
        let report = run.report.as_deref().map_or_else(
            || "-".to_owned(),
            |line| {
                format!(
                    "{}, {}, {}",
                    field(line, "drained"),
                    field(line, "streams_closed_by_drain"),
                    field(line, "interrupted")
                )
            },
        );
        let _ = writeln!(
            out,
            "| {} `{}` | {time} | {code} | {} / {} / {} | {} / {} / {} | {} of {SHORT} | {report} |",
            run.framework,
            run.mode,
            run.sse[0],
            run.sse[1],
            run.sse[2],
            run.ws[0],
            run.ws[1],
            run.ws[2],
            run.short_ok
        );
    }
    let _ = writeln!(out);
    for run in runs.iter().filter(|r| r.mode == "drain") {
        let clean = run.sse[0] == STREAMS && run.ws[0] == SOCKETS && run.short_ok == SHORT;
        let fast = run.exit_code.is_some() && run.sigterm_to_exit <= TARGET;
        let met = clean && fast && run.exit_code == Some(0);
        let _ = writeln!(
            out,
            "- {} `drain`: exit within {} s of the drain's start, exit 0, every client ended cleanly: {}.",
            run.framework,
            TARGET.as_secs(),
            if met { "met" } else { "NOT met" }
        );
    }
    out
}
