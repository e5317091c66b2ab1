//! End-to-end tests of the telemetry demo services (`examples/telemetry-*`): each test
//! starts a built demo binary as a child process with a temporary SQLite database and
//! `BIND_ADDR=127.0.0.1:0`, talks HTTP/1.1 to it on loopback, sends it real signals,
//! and opens its database after it has exited. The Redis scenarios start a real
//! `redis-server` each (Debian's package; the test fails, saying how to install it,
//! when it is missing).
//!
//! The scenarios are written once, as functions taking a [`Demo`]; the
//! `telemetry_scenarios!` list at the bottom runs them all against each demo binary.
//! The in-place restart's scenarios (`SIGHUP`) are in `telemetry/handoff.rs`.
//!
//! The demos are other packages, so Cargo does not build them for this test: build
//! them first, with the same profile and `CARGO_TARGET_DIR`
//! (`cargo build -p telemetry-axum -p telemetry-actix -p telemetry-poem`). A missing
//! binary fails the test with the command that builds it.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e_tests::http::{self, Conn, Response};
use e2e_tests::long_lived::{SseClient, SseEnd, WsClient, WsEnd};
use e2e_tests::{Child, Signal, Source};
use test_support::redis::{RedisServer, free_port};

// A directory without `main.rs`: not a test target of its own.
#[path = "telemetry/handoff.rs"]
mod handoff;
use handoff::{
    a_successor_that_fails_to_start_leaves_the_old_process_serving,
    an_upgrade_under_write_load_buffered_writes_the_old_buffer_before_exit,
    an_upgrade_under_write_load_fails_no_request_and_loses_no_write,
    sighup_during_a_restart_is_ignored,
    sigterm_during_a_restart_stops_the_successor_and_drains_as_usual,
    socket_activation_serves_the_passed_socket_and_hands_it_over,
};

/// Bound on waiting for a log line or an exit: only stops a hung demo from hanging CI.
const WAIT: Duration = Duration::from_secs(30);

/// A demo binary: `telemetry-axum`, `telemetry-actix` or `telemetry-poem`.
#[derive(Debug, Clone, Copy)]
struct Demo {
    binary: &'static str,
}

impl Demo {
    /// The binary, next to this test's executable: `<target>/<profile>/deps/telemetry-*`
    /// is this test, `<target>/<profile>/<binary>` the demo.
    fn path(self) -> String {
        let exe = std::env::current_exe().expect("path of the test executable");
        let profile = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test executable is in <target>/<profile>/deps");
        let path = profile.join(format!("{}{}", self.binary, std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "{} not found: build it before running these tests, with the same profile \
             and CARGO_TARGET_DIR: `cargo build -p {}`",
            path.display(),
            self.binary
        );
        path.to_str().expect("a UTF-8 path").to_owned()
    }
}

/// A database path unique to this process, test and demo; removed (with SQLite's side
/// files) when dropped.
#[derive(Debug)]
struct TempDb(PathBuf);

impl TempDb {
    fn new(demo: Demo, test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "e2e-{}-{test}-{}-{}.db",
            demo.binary,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let db = Self(path);
        db.remove();
        db
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }

    fn remove(&self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
        for spill in self.spill_files() {
            let _ = std::fs::remove_file(spill);
        }
    }

    /// The spill files beside the database: `<db>.spill`, `<db>.<n>.spill`.
    fn spill_files(&self) -> Vec<PathBuf> {
        let dir = self.0.parent().expect("a directory");
        let name = self
            .0
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| {
                        path.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(name) && n.ends_with(".spill"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Takes the database's write lock from another connection, as another process
    /// would; held until [`DbLock::release`] or drop.
    fn lock(&self) -> DbLock {
        let conn = rusqlite::Connection::open(&self.0).expect("open the demo's database");
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("lock the demo's database");
        DbLock(conn)
    }

    /// Every stored id, read after the service has exited.
    fn ids(&self) -> HashSet<String> {
        let conn = rusqlite::Connection::open(&self.0).expect("open the demo's database");
        let mut select = conn
            .prepare("SELECT id FROM telemetry")
            .expect("the telemetry table exists");
        select
            .query_map([], |row| row.get::<_, String>(0))
            .expect("select ids")
            .collect::<Result<_, _>>()
            .expect("read ids")
    }

    /// The stored row of `id`: satellite, value, received_at.
    fn row(&self, id: &str) -> Option<(String, f64, i64)> {
        let conn = rusqlite::Connection::open(&self.0).expect("open the demo's database");
        conn.query_row(
            "SELECT satellite, value, received_at FROM telemetry WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .ok()
    }
}

/// Another connection holding a database's write lock.
struct DbLock(rusqlite::Connection);

impl DbLock {
    fn release(self) {
        self.0
            .execute_batch("COMMIT")
            .expect("unlock the demo's database");
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A demo started and listening.
#[derive(Debug)]
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    /// Starts `demo` on `db` with `BIND_ADDR=127.0.0.1:0` and `env`, and waits until
    /// it listens.
    fn start(demo: Demo, db: &TempDb, env: &[(&str, &str)]) -> Self {
        let mut all = vec![("BIND_ADDR", "127.0.0.1:0"), ("DATABASE_PATH", db.path())];
        all.extend_from_slice(env);
        let mut child = Child::spawn(&demo.path(), &all).expect("start the demo");
        let line = child.wait_for_line(Source::Stderr, "listening on ", WAIT);
        let addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        child.wait_for_line(Source::Stderr, "signal handlers registered", WAIT);
        Self { child, addr }
    }

    fn signal(&self, signal: Signal) {
        self.child.signal(signal);
    }

    fn log_line(&mut self, needle: &str) -> String {
        self.child.wait_for_line(Source::Stderr, needle, WAIT)
    }

    fn wait_draining(&mut self) {
        self.log_line("draining in-flight requests");
    }

    fn exit_code(&mut self) -> i32 {
        let status = self.child.wait(WAIT);
        assert_eq!(
            status.signal(),
            None,
            "killed by a signal\n{}",
            self.output()
        );
        status
            .code()
            .unwrap_or_else(|| panic!("no exit code: {status:?}\n{}", self.output()))
    }

    /// The shutdown report's line; call after the exit.
    fn report(&mut self) -> String {
        self.log_line("graceful shutdown complete")
    }

    fn output(&self) -> String {
        self.child.output()
    }

    fn post_event(&self, id: &str) -> Response {
        http::Conn::open(self.addr)
            .and_then(|mut conn| conn.request("POST", "/telemetry", &event(id)))
            .unwrap_or_else(|e| panic!("POST {id}: {e}\n{}", self.output()))
    }

    fn get(&self, path: &str) -> Response {
        http::get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.output()))
    }
}

fn event(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","satellite":"sat-7","value":42.5}}"#).into_bytes()
}

/// The value of `name=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[start..].split_whitespace().next().unwrap_or("")
}

fn is_close(response: &Response) -> bool {
    response
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

fn get_in_background(
    addr: SocketAddr,
    path: &str,
) -> thread::JoinHandle<std::io::Result<Response>> {
    let path = path.to_owned();
    thread::spawn(move || http::get(addr, &path))
}

fn join<T>(handle: thread::JoinHandle<T>) -> T {
    handle.join().expect("client thread panicked")
}

/// The time of a log line of `tracing-subscriber`'s default format, which starts with
/// an RFC 3339 UTC timestamp (`2026-01-31T12:00:00.123456Z`).
fn log_time(line: &str) -> SystemTime {
    let parse = || -> Option<SystemTime> {
        let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
        let (date, time) = stamp.split_once('T')?;
        let mut date = date.split('-').map(|n| n.parse::<i64>().ok());
        let (y, m, d) = (date.next()??, date.next()??, date.next()??);
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut hms = hms.split(':').map(|n| n.parse::<u64>().ok());
        let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
        // Days from 1970-01-01 to y-m-d (Howard Hinnant's days_from_civil).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
        let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
        Some(UNIX_EPOCH + Duration::new(days * 86_400 + h * 3600 + mi * 60 + s, nanos))
    };
    parse().unwrap_or_else(|| panic!("no timestamp at the start of {line:?}"))
}

// ----- zero loss under load -----------------------------------------------------------

/// Writer threads of the load test.
const WRITERS: usize = 8;
/// Bound on the requests of one writer.
const WRITER_CAP: usize = 5_000;
/// How long the `/slow` request keeps the drain open.
const SLOW_MS: u64 = 3_000;
/// Load before SIGTERM.
const LOAD_BEFORE_SIGNAL: Duration = Duration::from_millis(500);
/// Load after SIGTERM: the writers stop while the drain is still held open by `/slow`.
const LOAD_AFTER_SIGNAL: Duration = Duration::from_millis(1_000);

/// What happened to one request of the load test.
#[derive(Debug)]
enum Outcome {
    /// An HTTP response.
    Answered {
        id: String,
        status: u16,
        retry_after: bool,
        close: bool,
        answered: SystemTime,
    },
    /// The connection could not be opened (nothing was sent).
    ConnectFailed {
        refused: bool,
        error: String,
        at: SystemTime,
    },
    /// The request was written (maybe partly) and no whole response came back: a
    /// reset, an EOF, a timeout. The event may or may not have been accepted.
    Lost {
        id: String,
        error: String,
        sent: SystemTime,
    },
}

/// POSTs unique ids on keep-alive connections until `stop`, the cap, or a refused
/// connection (the listener is gone for good); reconnects after `Connection: close`
/// or an error.
fn writer(addr: SocketAddr, index: usize, stop: &AtomicBool) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut conn: Option<Conn> = None;
    for n in 0..WRITER_CAP {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut open = match conn.take() {
            Some(open) => open,
            None => {
                let at = SystemTime::now();
                match Conn::open(addr) {
                    Ok(open) => open,
                    Err(error) => {
                        let refused = error.kind() == std::io::ErrorKind::ConnectionRefused;
                        outcomes.push(Outcome::ConnectFailed {
                            refused,
                            error: error.to_string(),
                            at,
                        });
                        if refused {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        let id = format!("w{index}-{n}");
        let sent = SystemTime::now();
        match open.request("POST", "/telemetry", &event(&id)) {
            Ok(response) => {
                let close = is_close(&response);
                outcomes.push(Outcome::Answered {
                    id,
                    status: response.status(),
                    retry_after: response.header("retry-after").is_some(),
                    close,
                    answered: SystemTime::now(),
                });
                if !close {
                    conn = Some(open);
                }
            }
            Err(error) => outcomes.push(Outcome::Lost {
                id,
                error: error.to_string(),
                sent,
            }),
        }
    }
    outcomes
}

/// Under concurrent write load on loopback, SIGTERM while a slow request keeps the
/// drain open. Asserts:
///
/// - every id answered `202` is in SQLite after the exit, and nothing else is (no id
///   answered `503` is stored);
/// - every response received before the signal is a `202`; later ones are `202`
///   (admitted before the drain began) or `503` with `Retry-After` and
///   `Connection: close`;
/// - no request is left without a response and no connection fails while the server
///   is running or draining. What is counted: a connect that fails (`refused` or
///   other) and a request that gets no whole response (reset, EOF, timeout: `lost`).
///   Either is a failure if it began before the drain ended, as the service logged it
///   (`all requests completed`, by wall-clock time): the listener must stay open and
///   answer until then. The writers stop while the drain is still open, so none
///   should begin later; one that does (a thread descheduled for a second) meets the
///   closed listener, which is expected then, and is only counted;
/// - the slow request gets its `200`, and the exit code is 0.
///
/// With `ACK_MODE=buffered` the flush period is longer than the test, so every
/// acknowledged event is written by the flusher's last flush, after the drain and
/// before the database is closed (the log line `write-behind buffer flushed after the
/// drain events=N` is checked). With `durable`, every one is committed before its
/// `202`.
fn zero_loss_under_load(demo: Demo) {
    zero_loss_under_load_in(demo, "buffered");
}

fn zero_loss_under_load_durable(demo: Demo) {
    zero_loss_under_load_in(demo, "durable");
}

fn zero_loss_under_load_in(demo: Demo, ack_mode: &str) {
    let db = TempDb::new(demo, &format!("zero-loss-{ack_mode}"));
    // No periodic flush during the test: every acknowledged event is still only in
    // memory when the drain ends, so that only the flush after the drain can store it.
    // The buffer's bound is raised to match: with no flush, the default bound would
    // fill (and answer 503) before the signal on a fast machine.
    let mut service = Service::start(
        demo,
        &db,
        &[
            ("SHUTDOWN_TIMEOUT", "30"),
            ("FLUSH_INTERVAL_MS", "600000"),
            ("BUFFER_CAPACITY", "1000000"),
            ("ACK_MODE", ack_mode),
        ],
    );
    let addr = service.addr;
    let slow = get_in_background(addr, &format!("/slow?ms={SLOW_MS}"));
    service.log_line("slow request started");

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|index| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || writer(addr, index, &stop))
        })
        .collect();
    thread::sleep(LOAD_BEFORE_SIGNAL);
    let signalled = SystemTime::now();
    service.signal(Signal::SIGTERM);
    thread::sleep(LOAD_AFTER_SIGNAL);
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = writers.into_iter().flat_map(join).collect();

    let slow = join(slow).unwrap_or_else(|e| panic!("slow request: {e}\n{}", service.output()));
    let code = service.exit_code();
    let drain_ended = log_time(&service.log_line("all requests completed"));
    let report = service.report();
    let final_flush = (ack_mode == "buffered")
        .then(|| service.log_line("write-behind buffer flushed after the drain"));
    let stored = db.ids();

    let mut acknowledged = HashSet::new();
    let mut rejected = HashSet::new();
    let mut lost_ids = HashSet::new();
    let (mut before_signal, mut late) = (0, 0);
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Answered {
                id,
                status,
                retry_after,
                close,
                answered,
            } => {
                if *answered < signalled {
                    before_signal += 1;
                }
                match status {
                    202 => {
                        acknowledged.insert(id.clone());
                    }
                    503 => {
                        rejected.insert(id.clone());
                        if !retry_after || !close {
                            failures.push(format!(
                                "{id}: 503 without Retry-After or Connection: close"
                            ));
                        }
                    }
                    other => failures.push(format!("{id}: unexpected status {other}")),
                }
                if *status != 202 && *answered < signalled {
                    failures.push(format!("{id}: {status} answered before the signal"));
                }
            }
            Outcome::ConnectFailed { refused, error, at } => {
                if *at < drain_ended {
                    failures.push(format!(
                        "connect failed during the drain (refused={refused}): {error}"
                    ));
                } else {
                    late += 1;
                }
            }
            Outcome::Lost { id, error, sent } => {
                lost_ids.insert(id.clone());
                if *sent < drain_ended {
                    failures.push(format!("{id}: no response during the drain: {error}"));
                } else {
                    late += 1;
                }
            }
        }
    }

    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    let unexpected: Vec<&String> = stored
        .iter()
        .filter(|id| !acknowledged.contains(*id) && !lost_ids.contains(*id))
        .collect();
    println!(
        "zero loss, {} ({ack_mode}): {} requests ({before_signal} answered before SIGTERM): {} acknowledged (202), \
         {} rejected (503 + Retry-After), {} failures (refused, reset or unanswered during the \
         drain), {late} failed after the drain ended (listener closed); {} stored; {} acknowledged but missing; exit {code}",
        demo.binary,
        outcomes.len(),
        acknowledged.len(),
        rejected.len(),
        failures.len(),
        stored.len(),
        missing.len(),
    );

    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:#?}\n{}",
        failures.len(),
        &failures[..failures.len().min(20)],
        service.output()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged but not stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        unexpected.is_empty(),
        "{} stored but never acknowledged, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    assert_eq!(code, 0, "{}", service.output());
    assert_eq!(slow.status(), 200, "{}", service.output());
    assert_eq!(field(&report, "interrupted"), "0", "{report}");
    if let Some(final_flush) = final_flush {
        assert_eq!(
            field(&final_flush, "events"),
            acknowledged.len().to_string(),
            "the flush after the drain wrote every acknowledged event: {final_flush}"
        );
    }
    assert!(
        before_signal > 0 && !rejected.is_empty(),
        "the load must span the signal: {before_signal} requests before it, {} rejected",
        rejected.len()
    );
}

// ----- the contract -------------------------------------------------------------------

/// Events are acknowledged, readable from the buffer and from the store, validated
/// (400 with a JSON error, 413 over 64 KiB), stored once per id, and survive a
/// restart; `/metrics` has the shutdown metrics.
fn the_ingest_contract_and_a_restart(demo: Demo) {
    let db = TempDb::new(demo, "contract");
    let mut service = Service::start(demo, &db, &[("FLUSH_INTERVAL_MS", "50")]);

    let accepted = service.post_event("e-1");
    assert_eq!(accepted.status(), 202, "{}", accepted.text());
    assert_eq!(accepted.header("content-type"), Some("application/json"));
    let read = service.get("/telemetry/e-1");
    assert_eq!(read.status(), 200);
    let body = read.text();
    for part in [
        r#""id":"e-1""#,
        r#""satellite":"sat-7""#,
        r#""value":42.5"#,
        r#""received_at":"#,
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    let mut conn = Conn::open(service.addr).expect("connect");
    let duplicate = conn
        .request(
            "POST",
            "/telemetry",
            br#"{"id":"e-1","satellite":"other","value":1}"#,
        )
        .expect("duplicate");
    assert_eq!(duplicate.status(), 202, "a repeated id is acknowledged");
    for (body, needle) in [
        (
            &br#"{"id":"bad-1","value":1}"#[..],
            "missing field `satellite`",
        ),
        (
            br#"{"id":"bad-2","satellite":"s","value":"x"}"#,
            "invalid type",
        ),
        (b"not json", "invalid event"),
        (
            br#"{"id":"","satellite":"s","value":1}"#,
            "1 to 128 characters",
        ),
    ] {
        let response = conn.request("POST", "/telemetry", body).expect("invalid");
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        assert!(
            response.text().starts_with(r#"{"error":"#) && response.text().contains(needle),
            "{}",
            response.text()
        );
    }
    let mut large = br#"{"id":"big","satellite":"s","value":1}"#.to_vec();
    large.resize(70 * 1024, b' ');
    let too_large = Conn::open(service.addr)
        .and_then(|mut conn| conn.request("POST", "/telemetry", &large))
        .unwrap_or_else(|e| panic!("70 KiB POST: {e}\n{}", service.output()));
    assert_eq!(too_large.status(), 413, "{}", too_large.text());
    assert_eq!(service.get("/telemetry/nope").status(), 404);
    assert_eq!(service.get("/health/live").status(), 200);
    assert_eq!(service.get("/health/ready").status(), 200);
    let metrics = service.get("/metrics");
    assert_eq!(metrics.status(), 200);
    for name in ["in_flight_requests", "requests_interrupted"] {
        assert!(metrics.text().contains(name), "{name}:\n{}", metrics.text());
    }

    // Stored by the flusher while running: readable from the store.
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = service.get("/metrics").text();
        if metrics.contains("telemetry_events_buffered 0") {
            break;
        }
        assert!(Instant::now() < deadline, "never flushed:\n{metrics}");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        service.get("/telemetry/e-1").status(),
        200,
        "from the store"
    );

    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    assert_eq!(db.ids(), HashSet::from(["e-1".to_owned()]));
    let (satellite, value, received_at) = db.row("e-1").expect("stored");
    assert_eq!(
        (satellite.as_str(), value),
        ("sat-7", 42.5),
        "the first event is kept"
    );
    assert!(
        received_at > 1_600_000_000_000,
        "milliseconds since the epoch"
    );

    let mut restarted = Service::start(demo, &db, &[]);
    let read = restarted.get("/telemetry/e-1");
    assert_eq!(read.status(), 200, "read back after a restart");
    assert!(read.text().contains(r#""satellite":"sat-7""#));
    restarted.signal(Signal::SIGINT);
    assert_eq!(restarted.exit_code(), 0, "{}", restarted.output());
}

/// A slow request in flight at SIGTERM completes with 200; during the drain new
/// requests get 503 + `Retry-After` + `Connection: close`, readiness 503, liveness and
/// metrics 200; the logs end with the report; exit 0.
fn a_slow_request_completes_while_new_ones_get_503(demo: Demo) {
    let db = TempDb::new(demo, "slow");
    let mut service = Service::start(demo, &db, &[("SHUTDOWN_TIMEOUT", "30")]);
    assert_eq!(service.post_event("before").status(), 202);
    let slow = get_in_background(service.addr, "/slow?ms=1500");
    service.log_line("slow request started");
    service.signal(Signal::SIGTERM);
    service.wait_draining();

    let rejected = service.post_event("during");
    assert_eq!(rejected.status(), 503, "{}", service.output());
    assert_eq!(rejected.header("retry-after"), Some("10"));
    assert!(is_close(&rejected), "Connection: close");
    assert_eq!(service.get("/telemetry/before").status(), 503);
    assert_eq!(service.get("/health/ready").status(), 503);
    assert_eq!(service.get("/health/live").status(), 200);
    let metrics = service.get("/metrics");
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.text().contains("in_flight_requests 1"),
        "{}",
        metrics.text()
    );

    let slow = join(slow).unwrap_or_else(|e| panic!("slow request: {e}\n{}", service.output()));
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.text(), r#"{"slept_ms":1500}"#);
    assert!(
        is_close(&slow),
        "a response during the drain closes its connection"
    );
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    let report = service.report();
    assert_eq!(field(&report, "drained"), "1", "{report}");
    assert_eq!(field(&report, "rejected"), "2", "{report}");
    let logs = service.child.lines(Source::Stderr);
    assert!(
        logs.last()
            .is_some_and(|l| l.contains("graceful shutdown complete")),
        "the logs end with the report: {logs:#?}"
    );
    assert_eq!(db.ids(), HashSet::from(["before".to_owned()]));
}

/// A stream started before SIGTERM is delivered whole.
fn a_stream_started_before_shutdown_is_delivered_whole(demo: Demo) {
    let db = TempDb::new(demo, "stream");
    let mut service = Service::start(demo, &db, &[("SHUTDOWN_TIMEOUT", "30")]);
    let mut conn = Conn::open(service.addr).expect("connect");
    conn.send("GET", "/stream?chunks=6&interval_ms=200", b"")
        .expect("send");
    let head = conn.read_head().expect("head");
    assert_eq!(head.status, 200);
    let mut body = conn
        .read_chunk()
        .expect("first chunk")
        .expect("not the end");

    service.signal(Signal::SIGTERM);
    service.wait_draining();
    body.extend(
        conn.read_body(&head)
            .unwrap_or_else(|e| panic!("rest of the stream: {e}\n{}", service.output())),
    );
    let expected: String = (0..6).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&body), expected);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    assert_eq!(field(&service.report(), "drained"), "1");
}

/// With `SHUTDOWN_TIMEOUT=1` and a 10 s request, the process exits 3 after about a
/// second, and the events acknowledged before are still written.
fn the_drain_deadline_interrupts_and_exits_3(demo: Demo) {
    let db = TempDb::new(demo, "deadline");
    let mut service = Service::start(demo, &db, &[("SHUTDOWN_TIMEOUT", "1")]);
    assert_eq!(service.post_event("kept").status(), 202);
    let slow = get_in_background(service.addr, "/slow?ms=10000");
    service.log_line("slow request started");
    let signalled = Instant::now();
    service.signal(Signal::SIGTERM);
    let code = service.exit_code();
    let took = signalled.elapsed();

    assert_eq!(code, 3, "{}", service.output());
    assert!(
        took < Duration::from_secs(8),
        "waited for the handler: {took:?}"
    );
    let report = service.report();
    assert_eq!(field(&report, "interrupted"), "1", "{report}");
    assert!(service.output().contains("drain timeout"));
    assert_eq!(db.ids(), HashSet::from(["kept".to_owned()]));
    let _ = join(slow);
}

/// A second signal during the drain exits at once with 128 + its number.
fn a_second_signal_exits_at_once(demo: Demo, signal: Signal, expected: i32) {
    let db = TempDb::new(demo, "second-signal");
    let mut service = Service::start(demo, &db, &[("SHUTDOWN_TIMEOUT", "60")]);
    let slow = get_in_background(service.addr, "/slow?ms=60000");
    service.log_line("slow request started");
    service.signal(signal);
    service.wait_draining();
    let signalled = Instant::now();
    service.signal(signal);
    assert_eq!(service.exit_code(), expected, "{}", service.output());
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(
        service.output().contains("exiting at once"),
        "{}",
        service.output()
    );
    let _ = join(slow);
}

fn a_second_sigint_exits_130(demo: Demo) {
    a_second_signal_exits_at_once(demo, Signal::SIGINT, 130);
}

fn a_second_sigterm_exits_143(demo: Demo) {
    a_second_signal_exits_at_once(demo, Signal::SIGTERM, 143);
}

/// A bad variable exits 2 at start with a message naming it and its value, without a
/// panic; so does an address already in use.
fn bad_configuration_exits_2_naming_the_variable(demo: Demo) {
    let db = TempDb::new(demo, "bad-config");
    let cases = [
        ("SHUTDOWN_TIMEOUT", "abc"),
        ("SHUTDOWN_TIMEOUT", "1e999"),
        ("SHUTDOWN_DELAY", "-5"),
        ("FLUSH_INTERVAL_MS", "abc"),
        ("FLUSH_INTERVAL_MS", "0"),
        ("BIND_ADDR", "not-an-address"),
        ("BIND_ADDR", "127.0.0.1:99999"),
        ("REDIS_URL", "http://localhost:6379"),
        ("ACK_MODE", "fast"),
        ("BUFFER_CAPACITY", "0"),
        ("COMMIT_BATCH", "abc"),
        ("COMMIT_WINDOW_MS", "5000"),
        ("DATABASE_BUSY_TIMEOUT_MS", "-1"),
        ("SHUTDOWN_HANDOFF_TIMEOUT", "abc"),
        ("SHUTDOWN_HANDOFF_GRACE", "soon"),
        ("PID_FILE", ""),
    ];
    for (variable, value) in cases {
        let mut child = Child::spawn(
            &demo.path(),
            &[("DATABASE_PATH", db.path()), (variable, value)],
        )
        .expect("start the demo");
        let status = child.wait(WAIT);
        let output = child.output();
        assert_eq!(status.code(), Some(2), "{variable}={value}\n{output}");
        assert!(
            output.contains(&format!("{variable}=\"{value}\"")),
            "{variable}={value}: the message names the variable and the value\n{output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut child = Child::spawn(
        &demo.path(),
        &[("DATABASE_PATH", db.path()), ("BIND_ADDR", &addr)],
    )
    .expect("start the demo");
    let status = child.wait(WAIT);
    assert_eq!(status.code(), Some(2), "{}", child.output());
    assert!(child.output().contains("BIND_ADDR"), "{}", child.output());
}

// ----- Redis ---------------------------------------------------------------------------
//
// Each scenario starts its own `redis-server` (Debian's package) on a free loopback
// port and kills it when done; without `redis-server` the test fails saying how to
// install it.

/// The value of the Prometheus sample `name` (no labels) in `/metrics`.
fn metric(service: &Service, name: &str) -> f64 {
    let text = service.get("/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
}

/// How many of the service's log lines so far contain `needle`.
fn count_lines(service: &Service, needle: &str) -> usize {
    service
        .child
        .lines(Source::Stderr)
        .into_iter()
        .filter(|line| line.contains(needle))
        .count()
}

/// The names of the cleanup tasks in the order they ran; call after the exit.
fn cleanups(service: &Service) -> Vec<String> {
    service
        .child
        .lines(Source::Stderr)
        .into_iter()
        .filter(|l| l.contains("running cleanup task"))
        .map(|l| field(l, "task").to_owned())
        .collect()
}

/// The id of each message received, in order.
fn published_ids(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .map(|message| {
            let json: serde_json::Value = serde_json::from_str(message)
                .unwrap_or_else(|e| panic!("{e}: not JSON: {message}"));
            json["id"].as_str().expect("an id").to_owned()
        })
        .collect()
}

/// With `REDIS_URL`, each accepted event reaches a subscriber of channel `telemetry`;
/// SIGTERM closes the connection in the `redis` cleanup task, before the database's:
/// Redis counts one `QUIT` and its client list shrinks back.
fn redis_receives_each_event_and_sigterm_closes_the_connection(demo: Demo) {
    let server = RedisServer::start();
    let mut subscriber = server.subscribe("telemetry");
    let others = server.client_ids();
    let db = TempDb::new(demo, "redis");
    let mut service = Service::start(demo, &db, &[("REDIS_URL", &server.url())]);
    service.log_line("connected to Redis");
    assert_eq!(
        server.client_ids().len(),
        others.len() + 1,
        "the demo's connection is in the client list"
    );

    assert_eq!(service.post_event("r-1").status(), 202);
    assert_eq!(service.post_event("r-2").status(), 202);
    assert_eq!(service.post_event("r-1").status(), 202, "a duplicate");
    let received: Vec<String> = (0..2)
        .map(|_| {
            subscriber
                .next(WAIT)
                .unwrap_or_else(|| panic!("no message\n{}", service.output()))
        })
        .collect();
    assert_eq!(published_ids(&received), ["r-1", "r-2"]);
    let first: serde_json::Value = serde_json::from_str(&received[0]).expect("JSON");
    assert_eq!(first["satellite"], "sat-7");
    assert_eq!(first["value"], 42.5);

    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    assert_eq!(
        cleanups(&service),
        ["redis", "database"],
        "Redis closes before the database"
    );
    assert_eq!(count_lines(&service, "Redis connection closed"), 1);
    assert_eq!(server.calls("quit"), 1, "the cleanup said goodbye");
    assert_eq!(server.client_ids(), others, "the client list shrank back");
    assert_eq!(
        subscriber.next(Duration::from_millis(200)),
        None,
        "the duplicate is not published"
    );
    assert_eq!(db.ids().len(), 2);
}

/// Redis killed in the middle of a write load: no request fails or waits for it, every
/// acknowledged event is stored, the failure is logged once and counted.
fn redis_stopped_mid_load_fails_no_request(demo: Demo) {
    let mut server = RedisServer::start();
    let db = TempDb::new(demo, "redis-mid-load");
    let mut service = Service::start(demo, &db, &[("REDIS_URL", &server.url())]);
    service.log_line("connected to Redis");
    let addr = service.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|index| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || writer(addr, index, &stop))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    server.kill();
    thread::sleep(Duration::from_millis(1_000));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = writers.into_iter().flat_map(join).collect();

    let mut acknowledged = HashSet::new();
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Answered {
                id, status: 202, ..
            } => {
                acknowledged.insert(id.clone());
            }
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:#?}\n{}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(10)],
        service.output()
    );
    assert!(metric(&service, "telemetry_redis_published_total") > 0.0);
    assert!(
        metric(&service, "telemetry_redis_failed_total") > 0.0,
        "publishing failed after the kill"
    );

    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    assert_eq!(
        count_lines(&service, "publishing to Redis failed"),
        1,
        "logged once, not per event\n{}",
        service.output()
    );
    let stored = db.ids();
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged but not stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    println!(
        "redis stopped mid-load, {}: {} requests, all acknowledged and stored",
        demo.binary,
        outcomes.len()
    );
}

/// A Redis that is not there at start fails nothing (logged once); once it is started,
/// publishing begins without a restart of the service.
fn redis_started_late_publishing_resumes(demo: Demo) {
    let port = free_port();
    let db = TempDb::new(demo, "redis-late");
    let url = format!("redis://127.0.0.1:{port}");
    let mut service = Service::start(demo, &db, &[("REDIS_URL", &url)]);
    service.log_line("cannot connect to Redis");
    assert_eq!(service.post_event("early").status(), 202);

    let server = RedisServer::start_on(port);
    let mut subscriber = server.subscribe("telemetry");
    let deadline = Instant::now() + WAIT;
    let mut posted = Vec::new();
    let received = loop {
        assert!(
            Instant::now() < deadline,
            "publishing did not resume\n{}",
            service.output()
        );
        let id = format!("late-{}", posted.len());
        assert_eq!(service.post_event(&id).status(), 202);
        posted.push(id);
        if let Some(message) = subscriber.next(Duration::from_millis(100)) {
            break message;
        }
    };
    assert!(
        posted.contains(&published_ids(&[received])[0]),
        "an event posted once Redis was up"
    );
    service.log_line("Redis is back; publishing again");

    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    assert_eq!(
        count_lines(&service, "cannot connect to Redis"),
        1,
        "logged once, not per event\n{}",
        service.output()
    );
    assert_eq!(server.calls("quit"), 1);
    assert_eq!(db.ids().len(), 1 + posted.len());
}

// ----- durability: faults that are not a graceful shutdown -----------------------------

/// How long the write load runs before the SIGKILL.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1_000);

/// Starts [`WRITERS`] writer threads on `addr`; stop them with `stop`.
fn start_writers(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<Outcome>>> {
    (0..WRITERS)
        .map(|index| {
            let stop = Arc::clone(stop);
            thread::spawn(move || writer(addr, index, &stop))
        })
        .collect()
}

/// `POST /telemetry` of `id` on a thread of its own; its status.
fn post_in_background(addr: SocketAddr, id: &str) -> thread::JoinHandle<std::io::Result<u16>> {
    let body = event(id);
    thread::spawn(move || {
        Conn::open(addr)
            .and_then(|mut conn| conn.request("POST", "/telemetry", &body))
            .map(|response| response.status())
    })
}

impl Service {
    /// Waits until `/metrics` has the line `line`.
    fn wait_for_metric(&self, line: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let metrics = self.get("/metrics").text();
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} in /metrics:\n{metrics}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ACK_MODE=durable` (the default): under concurrent write load on loopback, SIGKILL
/// (what the kubelet sends when the grace period runs out, and what the OOM killer
/// sends without warning). Afterwards every id answered `202` is in SQLite; an id
/// stored without a `202` can only be one whose request got no response (in flight at
/// the kill).
fn sigkill_under_write_load_loses_no_acknowledged_write(demo: Demo) {
    let db = TempDb::new(demo, "sigkill");
    let mut service = Service::start(demo, &db, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(service.addr, &stop);
    thread::sleep(LOAD_BEFORE_KILL);
    service.signal(Signal::SIGKILL);
    let status = service.child.wait(WAIT);
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = writers.into_iter().flat_map(join).collect();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGKILL as i32),
        "{}",
        service.output()
    );

    let mut acknowledged = HashSet::new();
    let mut unanswered = HashSet::new();
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Answered {
                id, status: 202, ..
            } => {
                acknowledged.insert(id.clone());
            }
            Outcome::Answered { id, status, .. } => {
                failures.push(format!("{id}: {status} while serving"));
            }
            Outcome::Lost { id, .. } => {
                unanswered.insert(id.clone());
            }
            Outcome::ConnectFailed { .. } => {}
        }
    }
    let stored = db.ids();
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    let unexpected: Vec<&String> = stored
        .iter()
        .filter(|id| !acknowledged.contains(*id) && !unanswered.contains(*id))
        .collect();
    println!(
        "SIGKILL under load, {}: {} acknowledged (202), {} unanswered at the kill, {} stored; {} acknowledged but missing",
        demo.binary,
        acknowledged.len(),
        unanswered.len(),
        stored.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged but not stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        unexpected.is_empty(),
        "{} stored but never sent, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        acknowledged.len() >= 100,
        "the load must run before the kill: {} acknowledged",
        acknowledged.len()
    );
}

/// `ACK_MODE=buffered`: 20 events acknowledged, then another connection holds the
/// database's lock across the whole shutdown (as another process would). The last
/// flush fails, the events are spilled beside the database, the process exits 4
/// naming how many and where; the next start replays them before it serves, and
/// removes the spill file.
fn a_database_locked_across_the_shutdown_loses_nothing_once_the_spill_is_replayed(demo: Demo) {
    let db = TempDb::new(demo, "locked-shutdown");
    let mut service = Service::start(
        demo,
        &db,
        &[
            ("ACK_MODE", "buffered"),
            ("FLUSH_INTERVAL_MS", "600000"),
            ("DATABASE_BUSY_TIMEOUT_MS", "200"),
        ],
    );
    let ids: HashSet<String> = (0..20).map(|i| format!("locked-{i}")).collect();
    for id in &ids {
        assert_eq!(service.post_event(id).status(), 202);
    }
    let lock = db.lock();
    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 4, "{}", service.output());
    let failed = service.log_line("cleanup task did not complete");
    let spill = PathBuf::from(format!("{}.spill", db.path()));
    assert!(
        failed.contains("20 acknowledged events could not be written to the database"),
        "{failed}"
    );
    assert!(
        failed.contains(&format!("spilled to {}", spill.display())),
        "{failed}"
    );
    assert_eq!(db.spill_files(), std::slice::from_ref(&spill));
    lock.release();
    assert!(db.ids().is_empty(), "not in the database yet");

    let mut restarted = Service::start(demo, &db, &[]);
    let replayed = restarted.log_line("spilled events replayed");
    assert_eq!(field(&replayed, "events"), "20", "{replayed}");
    assert!(db.spill_files().is_empty(), "removed once replayed");
    assert_eq!(restarted.get("/telemetry/locked-7").status(), 200);
    restarted.signal(Signal::SIGTERM);
    assert_eq!(restarted.exit_code(), 0, "{}", restarted.output());
    assert_eq!(db.ids(), ids);
}

/// `ACK_MODE=durable`, under write load: another connection holds the database's lock
/// for a while mid-run. The commits that cannot get it answer `503` + `Retry-After`;
/// once it is released, `202` again. Afterwards the stored ids are exactly the
/// acknowledged ones: nothing answered `503` was stored, nothing answered `202` is
/// missing.
fn a_failed_commit_answers_503_and_acknowledges_nothing_that_is_not_stored(demo: Demo) {
    let db = TempDb::new(demo, "commit-fails");
    let mut service = Service::start(demo, &db, &[("DATABASE_BUSY_TIMEOUT_MS", "100")]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(service.addr, &stop);
    thread::sleep(Duration::from_millis(300));
    let lock = db.lock();
    thread::sleep(Duration::from_millis(700));
    lock.release();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = writers.into_iter().flat_map(join).collect();
    let metrics = service.get("/metrics").text();
    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());

    let mut acknowledged = HashSet::new();
    let mut refused = HashSet::new();
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Answered {
                id, status: 202, ..
            } => {
                acknowledged.insert(id.clone());
            }
            Outcome::Answered {
                id,
                status: 503,
                retry_after,
                ..
            } => {
                refused.insert(id.clone());
                if !retry_after {
                    failures.push(format!("{id}: 503 without Retry-After"));
                }
            }
            other => failures.push(format!("{other:?}")),
        }
    }
    let stored = db.ids();
    println!(
        "commit failures, {}: {} acknowledged, {} refused (503), {} stored",
        demo.binary,
        acknowledged.len(),
        refused.len(),
        stored.len()
    );
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(!refused.is_empty(), "the lock made commits fail");
    assert!(!acknowledged.is_empty());
    assert!(
        metrics.contains(r#"telemetry_events_refused_total{reason="failed"}"#),
        "{metrics}"
    );
    let stored_refused: Vec<&String> = refused.intersection(&stored).collect();
    assert!(
        stored_refused.is_empty(),
        "answered 503 but stored: {stored_refused:?}"
    );
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "answered 202 but not stored: {missing:?}"
    );
    assert_eq!(stored.len(), acknowledged.len());
}

/// `BUFFER_CAPACITY=2` with the database locked. Durable: two events wait for their
/// transaction, the third is answered `503` + `Retry-After: 1` at once; once the lock
/// is released the two get `202` and the third is accepted when sent again. Buffered:
/// two events are acknowledged, the flushes fail, the third is answered `503`; once the
/// lock is released the flusher empties the buffer and the third is accepted. Nothing
/// refused is stored, nothing acknowledged is missing.
fn a_full_buffer_answers_503_with_retry_after(demo: Demo) {
    let db = TempDb::new(demo, "full-durable");
    let mut service = Service::start(
        demo,
        &db,
        &[
            ("BUFFER_CAPACITY", "2"),
            ("DATABASE_BUSY_TIMEOUT_MS", "20000"),
        ],
    );
    let lock = db.lock();
    let waiting: Vec<_> = ["d-1", "d-2"]
        .into_iter()
        .map(|id| post_in_background(service.addr, id))
        .collect();
    service.wait_for_metric("telemetry_events_buffered 2");
    let full = service.post_event("d-3");
    assert_eq!(full.status(), 503, "{}", full.text());
    assert_eq!(full.header("retry-after"), Some("1"));
    assert!(full.text().contains("too many events"), "{}", full.text());
    assert!(
        db.ids().is_empty(),
        "nothing committed while locked (a reader is not blocked in WAL mode)"
    );
    lock.release();
    for post in waiting {
        let status = join(post).unwrap_or_else(|e| {
            panic!(
                "POST: {e}
{}",
                service.output()
            )
        });
        assert_eq!(status, 202);
    }
    assert_eq!(service.post_event("d-3").status(), 202, "room again");
    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    let expected: HashSet<String> = ["d-1", "d-2", "d-3"].map(String::from).into();
    assert_eq!(db.ids(), expected);

    let db = TempDb::new(demo, "full-buffered");
    let mut service = Service::start(
        demo,
        &db,
        &[
            ("ACK_MODE", "buffered"),
            ("BUFFER_CAPACITY", "2"),
            ("FLUSH_INTERVAL_MS", "50"),
            ("DATABASE_BUSY_TIMEOUT_MS", "100"),
        ],
    );
    let lock = db.lock();
    assert_eq!(service.post_event("b-1").status(), 202);
    assert_eq!(service.post_event("b-2").status(), 202);
    let full = service.post_event("b-3");
    assert_eq!(full.status(), 503, "{}", full.text());
    assert_eq!(full.header("retry-after"), Some("1"));
    service.log_line("flush failed; retrying at the next tick");
    assert_eq!(service.post_event("b-3").status(), 503, "still full");
    lock.release();
    service.wait_for_metric("telemetry_events_buffered 0");
    assert_eq!(service.post_event("b-3").status(), 202);
    service.signal(Signal::SIGTERM);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    let expected: HashSet<String> = ["b-1", "b-2", "b-3"].map(String::from).into();
    assert_eq!(db.ids(), expected);
}

// ----- long-lived connections ----------------------------------------------------------

/// SSE streams and WebSocket sessions of each long-lived scenario.
const LONG_LIVED: usize = 3;

/// Opens an SSE stream on `/events` and reads its first tick.
fn open_events(service: &Service) -> SseClient {
    let mut sse = SseClient::open(service.addr, "/events?interval_ms=100")
        .unwrap_or_else(|e| panic!("GET /events: {e}\n{}", service.output()));
    assert_eq!(sse.head().status, 200, "{}", service.output());
    assert!(
        sse.head()
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        sse.head()
    );
    let first = sse
        .next_event()
        .unwrap_or_else(|end| panic!("no first tick: {end:?}\n{}", service.output()));
    assert_eq!((first.event.as_str(), first.data.as_str()), ("tick", "0"));
    sse
}

/// Opens a WebSocket on `/ws` and checks that it echoes.
fn open_ws(service: &Service) -> WsClient {
    let (mut ws, response) = WsClient::open(service.addr, "/ws")
        .unwrap_or_else(|e| panic!("GET /ws: {e}\n{}", service.output()));
    assert_eq!(response.status(), 101);
    let echo = ws
        .echo("hello")
        .unwrap_or_else(|e| panic!("echo: {e}\n{}", service.output()));
    assert_eq!(echo.into_text().expect("text").as_str(), "hello");
    ws
}

/// Reads an SSE stream to its end: the ticks, then the `shutdown` event with `retry:`
/// and the chunked terminator. Panics on anything else.
fn sse_ends_with_shutdown(mut sse: SseClient, retry_ms: u64) {
    loop {
        match sse.next_event() {
            Ok(event) if event.event == "tick" => continue,
            Ok(event) => {
                assert_eq!(event.event, "shutdown", "{event:?}");
                assert_eq!(event.retry, Some(retry_ms), "{event:?}");
                match sse.next_event() {
                    Err(SseEnd::Complete) => return,
                    other => panic!("after the shutdown event: {other:?}"),
                }
            }
            Err(end) => panic!("the stream ended without a shutdown event: {end:?}"),
        }
    }
}

/// Reads a WebSocket to its end: Close 1001, answered, then a clean close.
fn ws_ends_with_going_away(ws: WsClient) {
    match ws.wait_end() {
        WsEnd::Closed(Some((code, _))) => assert_eq!(code, 1001, "Going Away"),
        other => panic!("the session did not end with Close 1001 and a clean close: {other:?}"),
    }
}

/// SSE streams and WebSockets open at SIGTERM (`SHUTDOWN_TIMEOUT=30`) end cleanly at the
/// start of the drain: every SSE client gets the `shutdown` event with `retry:` and a
/// complete response, every WebSocket client a Close 1001 and a clean close; nothing is
/// reset, the report counts them drained and closed by the drain, nothing interrupted,
/// and the process exits 0 long before the timeout.
fn long_lived_connections_end_cleanly_at_the_drain(demo: Demo) {
    let db = TempDb::new(demo, "long_lived");
    let mut service = Service::start(
        demo,
        &db,
        &[("SHUTDOWN_TIMEOUT", "30"), ("SHUTDOWN_RETRY_AFTER", "3")],
    );
    let streams: Vec<SseClient> = (0..LONG_LIVED).map(|_| open_events(&service)).collect();
    let sockets: Vec<WsClient> = (0..LONG_LIVED).map(|_| open_ws(&service)).collect();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|sse| thread::spawn(move || sse_ends_with_shutdown(sse, 3000)))
        .chain(
            sockets
                .into_iter()
                .map(|ws| thread::spawn(move || ws_ends_with_going_away(ws))),
        )
        .collect();

    let signalled = Instant::now();
    service.signal(Signal::SIGTERM);
    let code = service.exit_code();
    let took = signalled.elapsed();
    for reader in readers {
        reader
            .join()
            .unwrap_or_else(|_| panic!("a client did not end cleanly\n{}", service.output()));
    }
    assert_eq!(code, 0, "{}", service.output());
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM, with a 30 s timeout"
    );
    let report = service.report();
    let n = (2 * LONG_LIVED).to_string();
    assert_eq!(field(&report, "interrupted"), "0", "{report}");
    assert_eq!(field(&report, "drained"), n, "{report}");
    assert_eq!(field(&report, "streams_closed_by_drain"), n, "{report}");
}

/// A WebSocket opened during `SHUTDOWN_DELAY` works (the `101` keeps its upgrade) and
/// is closed with 1001 when the drain begins; a handshake during the drain gets the
/// `503` with `Retry-After`.
fn a_websocket_opened_during_the_pre_stop_delay_works(demo: Demo) {
    let db = TempDb::new(demo, "ws_delay");
    let mut service = Service::start(
        demo,
        &db,
        &[("SHUTDOWN_TIMEOUT", "30"), ("SHUTDOWN_DELAY", "1")],
    );
    // Keeps the drain open after the delay, for the handshake that must get a 503.
    let slow = get_in_background(service.addr, "/slow?ms=3000");
    service.log_line("slow request started");
    service.signal(Signal::SIGTERM);
    service.log_line("still serving during the pre-stop delay");

    let (mut ws, response) = WsClient::open(service.addr, "/ws")
        .unwrap_or_else(|e| panic!("handshake during the delay: {e}\n{}", service.output()));
    assert_eq!(response.status(), 101);
    let upgrade = response
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(upgrade.contains("upgrade"), "Connection: {upgrade:?}");
    let echo = ws.echo("during the delay").expect("echo");
    assert_eq!(echo.into_text().expect("text").as_str(), "during the delay");
    ws_ends_with_going_away(ws);

    service.wait_draining();
    match WsClient::open(service.addr, "/ws") {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("10")
            );
        }
        Err(other) => panic!("handshake during the drain: {other}\n{}", service.output()),
        Ok(_) => panic!("a handshake during the drain was upgraded"),
    }
    assert_eq!(join(slow).expect("slow request").status(), 200);
    assert_eq!(service.exit_code(), 0, "{}", service.output());
    let report = service.report();
    assert_eq!(field(&report, "streams_closed_by_drain"), "1", "{report}");
    assert_eq!(field(&report, "interrupted"), "0", "{report}");
}

/// Runs every scenario against each demo binary: one line per demo.
macro_rules! telemetry_scenarios {
    ($($module:ident => $binary:literal),* $(,)?) => {$(
        mod $module {
            const DEMO: super::Demo = super::Demo { binary: $binary };
            telemetry_scenarios!(@tests
                zero_loss_under_load,
                zero_loss_under_load_durable,
                sigkill_under_write_load_loses_no_acknowledged_write,
                a_database_locked_across_the_shutdown_loses_nothing_once_the_spill_is_replayed,
                a_failed_commit_answers_503_and_acknowledges_nothing_that_is_not_stored,
                a_full_buffer_answers_503_with_retry_after,
                the_ingest_contract_and_a_restart,
                a_slow_request_completes_while_new_ones_get_503,
                a_stream_started_before_shutdown_is_delivered_whole,
                the_drain_deadline_interrupts_and_exits_3,
                a_second_sigint_exits_130,
                a_second_sigterm_exits_143,
                bad_configuration_exits_2_naming_the_variable,
                redis_receives_each_event_and_sigterm_closes_the_connection,
                redis_stopped_mid_load_fails_no_request,
                redis_started_late_publishing_resumes,
                long_lived_connections_end_cleanly_at_the_drain,
                a_websocket_opened_during_the_pre_stop_delay_works,
                an_upgrade_under_write_load_fails_no_request_and_loses_no_write,
                an_upgrade_under_write_load_buffered_writes_the_old_buffer_before_exit,
                a_successor_that_fails_to_start_leaves_the_old_process_serving,
                sighup_during_a_restart_is_ignored,
                sigterm_during_a_restart_stops_the_successor_and_drains_as_usual,
                socket_activation_serves_the_passed_socket_and_hands_it_over,
            );
        }
    )*};
    (@tests $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            super::$name(DEMO);
        }
    )*};
}

telemetry_scenarios! {
    axum => "telemetry-axum",
    actix => "telemetry-actix",
    poem => "telemetry-poem",
}
