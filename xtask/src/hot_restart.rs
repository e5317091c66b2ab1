//! `cargo xtask hot-restart`: one demo instance on 127.0.0.1 under steady write load,
//! restarted [`RESTARTS`] times in place (`SIGHUP`: the successor takes the listening
//! socket), next to the same load on an instance restarted by `SIGTERM`, wait for the
//! exit, start again on the same port.
//!
//! The load: [`KEEP_ALIVE_CLIENTS`] clients on keep-alive connections (a new
//! connection after `Connection: close` or an error) and [`PER_REQUEST_CLIENTS`]
//! opening a connection per request, each posting unique ids one at a time with no
//! retries. Printed for each way of restarting: requests sent, acknowledged (`202`),
//! failed (no connection, or no whole response), `503`, lost (acknowledged but not in
//! SQLite once every process has exited), the p99 latency of the requests sent in the
//! second after each restart's signal and outside those seconds, and the processes
//! that exited 0. The target for the restart in place is 0 failed, 0 `503`, 0 lost and
//! every exit clean; the command exits non-zero when it is not met. The `SIGTERM`
//! figures are for comparison.
//!
//! Options: `--bin <package>` (default `telemetry-axum`), `--ack-mode <durable|buffered>`
//! (default: the demo's, `durable`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Restarts per run.
const RESTARTS: usize = 5;
const KEEP_ALIVE_CLIENTS: usize = 4;
const PER_REQUEST_CLIENTS: usize = 4;
/// Load before the first restart.
const WARM_UP: Duration = Duration::from_secs(1);
/// Load between a new process's readiness and the next restart (or the end).
const BETWEEN: Duration = Duration::from_millis(1500);
/// The requests sent this long after a restart's signal are "around the restart".
const AROUND: Duration = Duration::from_secs(1);
/// A client's pause after a failed request, so that a refused port is not hammered.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(10);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a process's start (to ready) and on its exit.
const START_BOUND: Duration = Duration::from_secs(30);
const EXIT_BOUND: Duration = Duration::from_secs(60);
/// Bound on the whole run's load, whatever happens.
const MAX_LOAD: Duration = Duration::from_secs(90);

struct Options {
    bin: String,
    ack_mode: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        bin: "telemetry-axum".into(),
        ack_mode: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bin" => options.bin = value.clone(),
            "--ack-mode" => options.ack_mode = Some(value.clone()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

pub fn run(args: &[String]) -> ExitCode {
    crate::run_checked("hot-restart", parse(args), hot_restart)
}

/// How a run restarts its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `SIGHUP`: the restart in place.
    InPlace,
    /// `SIGTERM`, wait for the exit, start again.
    StopStart,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Self::InPlace => "`SIGHUP` (in place)",
            Self::StopStart => "`SIGTERM` + start",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::InPlace => "sighup",
            Self::StopStart => "sigterm",
        }
    }
}

fn hot_restart(options: &Options) -> Result<bool, String> {
    let binary = crate::build_debug(&options.bin)?;
    let work = std::env::temp_dir().join(format!("hot-restart-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let mut figures = Vec::new();
    for way in [Way::InPlace, Way::StopStart] {
        println!(
            "==> {}: {} restarts under load ({KEEP_ALIVE_CLIENTS} keep-alive clients, {PER_REQUEST_CLIENTS} with a connection per request)",
            way.label(),
            RESTARTS
        );
        let figure = measure(way, &binary, &work, options)?;
        println!("    {}", figure.summary());
        figures.push(figure);
    }

    println!("\n{}", table(options, &figures));
    let in_place = &figures[0];
    let met = in_place.sent > 0
        && in_place.failed == 0
        && in_place.unavailable == 0
        && in_place.lost == 0
        && in_place.clean_exits == in_place.processes;
    if met {
        let _ = fs::remove_dir_all(&work);
        println!("hot restart: target met (0 failed, 0 503, 0 lost, every exit clean)");
    } else {
        println!(
            "hot restart: target NOT met for the restart in place; logs kept in {}",
            work.display()
        );
    }
    Ok(met)
}

/// The figures of one run.
#[derive(Debug)]
struct Figures {
    way: Way,
    sent: usize,
    acknowledged: usize,
    failed: usize,
    unavailable: usize,
    lost: usize,
    /// p99 of the requests sent within [`AROUND`] of each restart's signal, ms.
    p99_around: Vec<f64>,
    /// p99 of the other requests, ms.
    p99_steady: f64,
    /// From each restart's signal to the new process's readiness (pid file), ms.
    takeover_ms: Vec<f64>,
    processes: usize,
    clean_exits: usize,
}

impl Figures {
    fn summary(&self) -> String {
        format!(
            "sent {}, acknowledged {}, failed {}, 503 {}, lost {}; p99 steady {:.1} ms, around each restart {}; exited 0: {} of {}",
            self.sent,
            self.acknowledged,
            self.failed,
            self.unavailable,
            self.lost,
            self.p99_steady,
            ms_list(&self.p99_around),
            self.clean_exits,
            self.processes
        )
    }
}

fn ms_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join(" / ")
        + " ms"
}

/// The markdown table for `docs/performance.md`.
fn table(options: &Options, figures: &[Figures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`{}` (debug build, `ACK_MODE={}`), {RESTARTS} restarts, {KEEP_ALIVE_CLIENTS} keep-alive clients + {PER_REQUEST_CLIENTS} opening a connection per request, no retries:\n",
        options.bin,
        options.ack_mode.as_deref().unwrap_or("durable")
    );
    let _ = writeln!(
        out,
        "| restarted by | sent | acknowledged | failed | `503` | lost | p99 steady | p99 in the second after each signal | signal to new process ready | exited 0 |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.1} ms | {} | {} | {} of {} |",
            f.way.label(),
            f.sent,
            f.acknowledged,
            f.failed,
            f.unavailable,
            f.lost,
            f.p99_steady,
            ms_list(&f.p99_around),
            ms_list(&f.takeover_ms),
            f.clean_exits,
            f.processes
        );
    }
    out
}

/// One run: start, load, restart [`RESTARTS`] times, stop, count.
fn measure(way: Way, binary: &Path, work: &Path, options: &Options) -> Result<Figures, String> {
    let db = work.join(format!("{}.db", way.name()));
    let pid_file = work.join(format!("{}.pid", way.name()));
    let log_path = work.join(format!("{}.log", way.name()));
    let log = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let addr = free_port()?;
    let instance = Instance {
        binary,
        addr,
        db: &db,
        pid_file: &pid_file,
        log: &log,
        ack_mode: options.ack_mode.as_deref(),
    };

    let mut children = vec![instance.start()?];
    let mut pids = vec![wait_for_new_pid(&pid_file, None)?];
    let load = Load::start(addr, way.name());
    let mut signals = Vec::new();
    let mut takeover_ms = Vec::new();
    let result = (|| {
        thread::sleep(WARM_UP);
        for restart in 1..=RESTARTS {
            let current = *pids.last().ok_or("no process")?;
            let signalled = Instant::now();
            match way {
                Way::InPlace => signal("-HUP", current)?,
                Way::StopStart => {
                    signal("-TERM", current)?;
                    let child = children.last_mut().ok_or("no child")?;
                    wait_child(child)?;
                    children.push(instance.start()?);
                }
            }
            let next = wait_for_new_pid(&pid_file, Some(current))?;
            let took = signalled.elapsed();
            println!(
                "    restart {restart}: pid {current} -> {next} in {:.0} ms",
                took.as_secs_f64() * 1e3
            );
            signals.push(signalled);
            takeover_ms.push(took.as_secs_f64() * 1e3);
            pids.push(next);
            thread::sleep(BETWEEN);
        }
        Ok::<(), String>(())
    })();
    let requests = load.stop();
    // Stop whatever serves now, then wait for every process of the run.
    if let Some(&last) = pids.last() {
        let _ = signal("-TERM", last);
    }
    for child in &mut children {
        let _ = wait_child(child);
    }
    for &pid in &pids {
        wait_gone(pid)?;
    }
    result?;

    let stored = stored_ids(&db)?;
    let log_text =
        fs::read_to_string(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let reports: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("graceful shutdown complete"))
        .collect();
    let clean_exits = reports
        .iter()
        .filter(|l| l.trim_end().ends_with("exit_code=0"))
        .count();

    let mut figures = Figures {
        way,
        sent: requests.len(),
        acknowledged: 0,
        failed: 0,
        unavailable: 0,
        lost: 0,
        p99_around: Vec::new(),
        p99_steady: 0.0,
        takeover_ms,
        processes: pids.len(),
        clean_exits,
    };
    let mut steady = Vec::new();
    let mut around: Vec<Vec<Duration>> = vec![Vec::new(); signals.len()];
    for request in &requests {
        match &request.outcome {
            Outcome::Answered(202) => {
                figures.acknowledged += 1;
                if !stored.contains(&request.id) {
                    figures.lost += 1;
                }
            }
            Outcome::Answered(503) => figures.unavailable += 1,
            Outcome::Answered(_) | Outcome::Failed(_) => figures.failed += 1,
        }
        if let Outcome::Answered(_) = request.outcome {
            match signals
                .iter()
                .position(|&s| request.sent >= s && request.sent < s + AROUND)
            {
                Some(restart) => around[restart].push(request.latency),
                None => steady.push(request.latency),
            }
        }
    }
    figures.p99_steady = p99_ms(steady);
    figures.p99_around = around.into_iter().map(p99_ms).collect();
    let failures: Vec<&str> = requests
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(error) => Some(error.as_str()),
            Outcome::Answered(_) => None,
        })
        .take(3)
        .collect();
    if !failures.is_empty() {
        println!("    failures, e.g.: {failures:?}");
    }
    Ok(figures)
}

fn p99_ms(mut latencies: Vec<Duration>) -> f64 {
    latencies.sort_unstable();
    let index = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
    latencies
        .get(index)
        .map_or(0.0, |latency| latency.as_secs_f64() * 1e3)
}

/// A free port on 127.0.0.1 (bound, then released): the stop-and-start run binds it
/// again at each start.
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))
}

/// How the run starts a process of the demo.
struct Instance<'a> {
    binary: &'a Path,
    addr: SocketAddr,
    db: &'a Path,
    pid_file: &'a Path,
    log: &'a fs::File,
    ack_mode: Option<&'a str>,
}

impl Instance<'_> {
    /// Starts the demo, its logs (and its successors') appended to the run's log.
    fn start(&self) -> Result<Child, String> {
        let stderr = self.log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut command = Command::new(self.binary);
        command
            .env("BIND_ADDR", self.addr.to_string())
            .env("DATABASE_PATH", self.db)
            .env("PID_FILE", self.pid_file)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(mode) = self.ack_mode {
            command.env("ACK_MODE", mode);
        }
        command
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))
    }
}

/// Waits until the pid file names a process other than `previous`: the new process
/// is ready.
fn wait_for_new_pid(pid_file: &Path, previous: Option<u32>) -> Result<u32, String> {
    let deadline = Instant::now() + START_BOUND;
    loop {
        let pid = fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pid.filter(|pid| Some(*pid) != previous) {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no new process ready within {START_BOUND:?} (pid file {})",
                pid_file.display()
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn signal(signal: &str, pid: u32) -> Result<(), String> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {signal} {pid} failed"))
    }
}

/// Waits (bounded) for a child of this process to exit; kills it past the bound.
fn wait_child(child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + EXIT_BOUND;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "process {} still running after {EXIT_BOUND:?}; killed",
                    child.id()
                ));
            }
            Err(e) => return Err(format!("waiting for process {}: {e}", child.id())),
        }
    }
}

/// Waits (bounded) until process `pid` has exited: gone, or a zombie (a successor is
/// not this process's child, so its exit code is read from its report in the log).
fn wait_gone(pid: u32) -> Result<(), String> {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let deadline = Instant::now() + EXIT_BOUND;
    loop {
        let running = fs::read_to_string(&stat).is_ok_and(|text| {
            // The state follows the command name, which is in parentheses.
            text.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        });
        if !running {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = signal("-KILL", pid);
            return Err(format!(
                "process {pid} still running after {EXIT_BOUND:?}; killed"
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Every id in the run's database, read once every process has exited.
fn stored_ids(db: &Path) -> Result<HashSet<String>, String> {
    let error = |e: rusqlite::Error| format!("{}: {e}", db.display());
    let conn = rusqlite::Connection::open(db).map_err(error)?;
    let mut select = conn.prepare("SELECT id FROM telemetry").map_err(error)?;
    let ids = select
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(error)?
        .collect::<Result<HashSet<String>, _>>()
        .map_err(error)?;
    Ok(ids)
}

/// What became of one request.
#[derive(Debug)]
enum Outcome {
    /// A whole response with this status.
    Answered(u16),
    /// No connection, or no whole response (reset, end of stream, timeout).
    Failed(String),
}

#[derive(Debug)]
struct Request {
    id: String,
    sent: Instant,
    latency: Duration,
    outcome: Outcome,
}

/// The client threads.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<Vec<Request>>>,
}

impl Load {
    fn start(addr: SocketAddr, run: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let clients = (0..KEEP_ALIVE_CLIENTS + PER_REQUEST_CLIENTS)
            .map(|index| {
                let stop = Arc::clone(&stop);
                let keep_alive = index < KEEP_ALIVE_CLIENTS;
                let prefix = format!("{run}-{index}");
                thread::spawn(move || {
                    client(addr, &prefix, keep_alive, || {
                        stop.load(Ordering::Relaxed) || started.elapsed() > MAX_LOAD
                    })
                })
            })
            .collect();
        Self { stop, clients }
    }

    fn stop(self) -> Vec<Request> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .flat_map(|client| client.join().unwrap_or_default())
            .collect()
    }
}

/// Posts unique ids one at a time until `done`, with no retries: on a keep-alive
/// connection (a new one after `Connection: close` or an error), or on a new
/// connection for each request.
fn client(
    addr: SocketAddr,
    prefix: &str,
    keep_alive: bool,
    done: impl Fn() -> bool,
) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut connection: Option<BufReader<TcpStream>> = None;
    let mut n = 0u64;
    while !done() {
        let id = format!("{prefix}-{n}");
        n += 1;
        let sent = Instant::now();
        let result = (|| {
            let mut reader = match connection.take() {
                Some(reader) => reader,
                None => BufReader::new(connect(addr)?),
            };
            let body = format!(r#"{{"id":"{id}","satellite":"hot-restart","value":1.5}}"#);
            let close = if keep_alive {
                ""
            } else {
                "connection: close\r\n"
            };
            let request = format!(
                "POST /telemetry HTTP/1.1\r\nhost: loopback\r\ncontent-type: application/json\r\n{close}content-length: {}\r\n\r\n{body}",
                body.len()
            );
            reader
                .get_mut()
                .write_all(request.as_bytes())
                .map_err(|e| format!("sending: {e}"))?;
            let (status, closing) = crate::http::read_response(&mut reader)?;
            if keep_alive && !closing {
                connection = Some(reader);
            }
            Ok::<u16, String>(status)
        })();
        let latency = sent.elapsed();
        let failed = result.is_err();
        requests.push(Request {
            id,
            sent,
            latency,
            outcome: match result {
                Ok(status) => Outcome::Answered(status),
                Err(error) => Outcome::Failed(error),
            },
        });
        if failed {
            thread::sleep(PAUSE_AFTER_FAILURE);
        }
    }
    requests
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connecting: {e}"))?;
    let set = |stream: &TcpStream| -> std::io::Result<()> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)
    };
    set(&stream).map_err(|e| format!("connecting: {e}"))?;
    Ok(stream)
}
