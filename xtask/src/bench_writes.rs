//! Write throughput of the telemetry demo (`telemetry-axum`, release build) by
//! acknowledgement mode, on 127.0.0.1:
//!
//! - `durable`: `202` once committed and fsynced, group commit (the default);
//! - `durable, synchronous normal`: the same, the commit written but not fsynced
//!   (`DATABASE_SYNCHRONOUS=normal`);
//! - `buffered`: `202` once in memory, flushed every 200 ms (`ACK_MODE=buffered`),
//!   the baseline of the target; at its default bound (10,000 events per 200 ms
//!   flush, 50,000 events/s) it may be held at the bound rather than at what the
//!   machine can do, so
//! - `buffered, bound raised`: the same with `BUFFER_CAPACITY=1000000`, which no run
//!   here reaches, is measured too, and durable is reported against both;
//! - `per-request`: `202` once committed, one transaction per request
//!   (`COMMIT_BATCH=1`).
//!
//! [`DEFAULT_CLIENTS`] keep-alive connections (or `--clients N`), each on a thread of its own, `POST
//! /telemetry` unique ids one request at a time, for [`MEASURE`] after a [`WARM_UP`];
//! requests/s (`202` only) and the p99 latency are recorded. The modes alternate in
//! rotating order over [`ROUNDS`] rounds, each run on a fresh server and a fresh
//! database in the temporary directory; medians over the rounds. Nothing is pinned:
//! the durable writer and SQLite's I/O are part of the server's work, and a server
//! pinned to one core measures how its threads share that core rather than the mode.
//! Nothing is asserted: the target is reported as met or not.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A mode of the benchmark.
struct Mode {
    name: &'static str,
    label: &'static str,
    env: &'static [(&'static str, &'static str)],
}

/// The modes, in the order of the table; the second is the baseline of the ratios.
const MODES: [Mode; 5] = [
    Mode {
        name: "durable",
        label: "durable: `202` once committed and fsynced, group commit (the default)",
        env: &[("ACK_MODE", "durable")],
    },
    Mode {
        name: "buffered",
        label: "buffered: `202` once in memory (`ACK_MODE=buffered`)",
        env: &[("ACK_MODE", "buffered")],
    },
    Mode {
        name: "buffered-raised",
        label: "buffered, bound raised (`BUFFER_CAPACITY=1000000`)",
        env: &[("ACK_MODE", "buffered"), ("BUFFER_CAPACITY", "1000000")],
    },
    Mode {
        name: "durable-normal",
        label: "durable, commit not fsynced (`DATABASE_SYNCHRONOUS=normal`)",
        env: &[("ACK_MODE", "durable"), ("DATABASE_SYNCHRONOUS", "normal")],
    },
    Mode {
        name: "per-request",
        label: "per-request: `202` once committed, one transaction each (`COMMIT_BATCH=1`)",
        env: &[("ACK_MODE", "durable"), ("COMMIT_BATCH", "1")],
    },
];
const BASELINE: usize = 1;
/// Buffered without its bound in the way.
const RAISED: usize = 2;
/// `DATABASE_SYNCHRONOUS=normal`.
const NORMAL: usize = 3;
/// `COMMIT_BATCH=1`.
const PER_REQUEST: usize = 4;
/// Rounds of the rotation: each mode runs once per round.
const ROUNDS: usize = 5;
/// Concurrent clients, each with one keep-alive connection, unless `--clients N`. Each
/// client waits for its answer before it posts again, so a durable commit gathers at
/// most this many events: more clients measure the modes nearer saturation.
pub const DEFAULT_CLIENTS: usize = 64;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(4);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const START_BOUND: Duration = Duration::from_secs(20);
const STOP_BOUND: Duration = Duration::from_secs(30);
/// Target: durable throughput at least this share of buffered.
const TARGET: f64 = 0.80;

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p99_ms: f64,
    /// Answers other than `202` (`503`s of a full buffer, say).
    refused: usize,
    /// Events per transaction, from the server's metrics (0 in buffered mode).
    events_per_commit: f64,
}

/// The markdown section for `docs/bench-summary.md`.
///
/// # Errors
///
/// When the build fails or a server does not start, answer or stop.
pub fn run(clients: usize) -> Result<String, String> {
    let binary = build()?;
    let work = std::env::temp_dir().join(format!("xtask-bench-writes-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let measured = measure_all(&binary, &work, clients);
    let _ = fs::remove_dir_all(&work);
    let (results, orders) = measured?;

    let medians: Vec<Run> = results
        .iter()
        .map(|runs| Run {
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p99_ms: median(runs.iter().map(|r| r.p99_ms).collect()),
            refused: runs.iter().map(|r| r.refused).sum(),
            events_per_commit: median(runs.iter().map(|r| r.events_per_commit).collect()),
        })
        .collect();
    let baseline = medians[BASELINE];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Writes: `POST /telemetry` of `telemetry-axum` by `ACK_MODE`\n"
    );
    let _ = writeln!(
        out,
        "{clients} clients on 127.0.0.1, each a thread with one keep-alive connection posting unique ids one request at a time; each run a fresh release server and a fresh SQLite file (WAL) in the temporary directory, warmed up {} s, measured {} s. {ROUNDS} rounds, the modes alternating in rotating order ({}). Medians over the rounds; requests/s counts `202`s only. Not pinned: the client threads and the server share the machine's {} cores.\n",
        WARM_UP.as_secs(),
        MEASURE.as_secs(),
        orders
            .iter()
            .map(|o| format!("[{o}]"))
            .collect::<Vec<_>>()
            .join(", "),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let _ = writeln!(
        out,
        "| mode | requests/s | to buffered | p99 latency | to buffered | events per transaction | not `202` (all runs) | runs (requests/s; p99) |\n|---|---|---|---|---|---|---|---|"
    );
    for (mode, m) in medians.iter().enumerate() {
        let runs = results[mode]
            .iter()
            .map(|r| format!("{:.0}; {:.2} ms", r.rps, r.p99_ms))
            .collect::<Vec<_>>()
            .join(" / ");
        let per_commit = if mode == BASELINE || mode == RAISED {
            "(a flush every 200 ms)".to_owned()
        } else {
            format!("{:.1}", m.events_per_commit)
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.3} | {:.2} ms | {:.2} | {per_commit} | {} | {runs} |",
            MODES[mode].label,
            m.rps,
            m.rps / baseline.rps,
            m.p99_ms,
            m.p99_ms / baseline.p99_ms,
            m.refused,
        );
    }
    let durable = medians[0].rps / baseline.rps;
    let raised = medians[0].rps / medians[RAISED].rps;
    let _ = writeln!(
        out,
        "\nTarget: durable at least {:.0}% of buffered throughput ({:.1}%: {}; of buffered with its bound raised {:.1}%: {}; with `DATABASE_SYNCHRONOUS=normal` {:.1}%). One transaction per request: {:.1}% of buffered.\n",
        TARGET * 100.0,
        durable * 100.0,
        if durable >= TARGET { "met" } else { "NOT met" },
        raised * 100.0,
        if raised >= TARGET { "met" } else { "NOT met" },
        medians[NORMAL].rps / baseline.rps * 100.0,
        medians[PER_REQUEST].rps / baseline.rps * 100.0,
    );
    Ok(out)
}

type Measured = (Vec<Vec<Run>>, Vec<String>);

fn measure_all(binary: &Path, work: &Path, clients: usize) -> Result<Measured, String> {
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); MODES.len()];
    let mut orders = Vec::new();
    for round in 0..ROUNDS {
        let order = crate::bench::rotation(round, MODES.len());
        orders.push(crate::bench::named(&order, |m| MODES[m].name));
        for &mode in &order {
            let name = MODES[mode].name;
            let db = work.join(format!("{name}-{round}.db"));
            let mut server = Server::start(binary, &db, MODES[mode].env)?;
            let measured = measure(server.addr, &format!("{name}-{round}"), clients);
            let stopped = server.stop();
            let run = measured.map_err(|e| format!("{name}: {e}"))?;
            stopped.map_err(|e| format!("{name}: {e}"))?;
            println!(
                "    round {} {name}: {:.0} requests/s, p99 {:.2} ms, {} not 202, {:.1} events per transaction",
                round + 1,
                run.rps,
                run.p99_ms,
                run.refused,
                run.events_per_commit
            );
            results[mode].push(run);
        }
    }
    Ok((results, orders))
}

/// Warm-up, then the measured load; the server's metrics around it.
fn measure(addr: SocketAddr, prefix: &str, clients: usize) -> Result<Run, String> {
    load(addr, &format!("{prefix}-warm"), WARM_UP, clients)?;
    let before = commits_and_stored(addr)?;
    let (mut latencies, refused, elapsed) = load(addr, prefix, MEASURE, clients)?;
    let after = commits_and_stored(addr)?;
    let commits = after.0 - before.0;
    let events_per_commit = if commits > 0.0 {
        (after.1 - before.1) / commits
    } else {
        0.0
    };
    latencies.sort_unstable();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .ok_or("no request was acknowledged")?;
    Ok(Run {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p99_ms: p99.as_secs_f64() * 1e3,
        refused,
        events_per_commit,
    })
}

/// `clients` threads posting for `duration`: the latencies of the `202`s, the count of
/// other answers, and the time it took.
fn load(
    addr: SocketAddr,
    prefix: &str,
    duration: Duration,
    clients: usize,
) -> Result<(Vec<Duration>, usize, Duration), String> {
    let started = Instant::now();
    let until = started + duration;
    let clients: Vec<_> = (0..clients)
        .map(|c| {
            let prefix = format!("{prefix}-{c}");
            thread::spawn(move || client(addr, &prefix, until))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut refused = 0;
    for client in clients {
        let (ok, other) = client
            .join()
            .map_err(|_| "a client thread panicked".to_owned())??;
        latencies.extend(ok);
        refused += other;
    }
    Ok((latencies, refused, started.elapsed()))
}
fn client(
    addr: SocketAddr,
    prefix: &str,
    until: Instant,
) -> Result<(Vec<Duration>, usize), String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut latencies = Vec::new();
    let mut refused = 0;
    let mut n = 0u64;
    while Instant::now() < until {
        let body = format!(r#"{{"id":"{prefix}-{n}","satellite":"bench","value":1.5}}"#);
        n += 1;
        let request = format!(
            "POST /telemetry HTTP/1.1\r\nhost: loopback\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        writer
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let (status, _) = crate::http::read_response(&mut reader)?;
        if status == 202 {
            latencies.push(sent.elapsed());
        } else {
            refused += 1;
        }
    }
    Ok((latencies, refused))
}

/// `telemetry_commits_total` and `telemetry_events_stored_total` from `/metrics`.
fn commits_and_stored(addr: SocketAddr) -> Result<(f64, f64), String> {
    let (_, metrics) = crate::http::get(addr, "/metrics", IO_TIMEOUT)?;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok((
        value("telemetry_commits_total"),
        value("telemetry_events_stored_total"),
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn build() -> Result<PathBuf, String> {
    let args = ["build", "--release", "--quiet", "-p", "telemetry-axum"];
    println!("==> cargo {}", args.join(" "));
    let status = Command::new("cargo")
        .args(args)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo {} failed", args.join(" ")));
    }
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("release/telemetry-axum"))
}

/// A `telemetry-axum` process on 127.0.0.1, its log drained on a thread.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(binary: &Path, db: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_PATH", db)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .rsplit("listening on ")
                    .next()
                    .filter(|_| line.contains("listening on "))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(START_BOUND) {
            Ok(addr) => Ok(Self { child, addr }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("telemetry-axum did not start listening".into())
            }
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(&mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_BOUND;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("exit {status}")),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("still running after SIGTERM; killed".into());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}
