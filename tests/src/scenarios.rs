//! The adapter scenarios, written once and run against each framework's probe binary
//! (`axum-probe`, `actix-probe`, `poem-probe`) through [`adapter_scenarios!`](crate::adapter_scenarios).
//!
//! # The probe contract
//!
//! A probe serves with its adapter's middleware and `serve`/`run` helper, reads its
//! configuration with `ShutdownConfig::from_env()` (exit 2 on a bad value), installs
//! `shutdown-signal`, and logs with `tracing` to stderr. It binds `BIND_ADDR` (default
//! `127.0.0.1:0`) and answers:
//!
//! - `GET /` → `200 ok`;
//! - `GET /slow?ms=N` → prints `slow started` on stdout, sleeps N ms (ignoring
//!   cancellation, like a handler stuck on I/O), then `200 done`;
//! - `GET /stream?chunks=N&interval_ms=M` → a streaming `200` of N lines `chunk i\n`, one
//!   every M ms; `chunks=0` never ends;
//! - `POST /upload` → reads the whole body, `200 received N bytes`;
//! - `/health/live`, `/health/ready`, `/metrics` from the adapter.
//!
//! On stdout it prints `listening on <ip>:<port>` once serving; registers cleanup task
//! `first`, then `second`, each printing `cleanup <name> listener_closed=<bool>` (whether
//! a connection to the server's address is refused by then); and prints
//! `exit_code=<n>` before exiting with the report's exit code.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{self, Conn};
use crate::{Child, Signal, Source};

/// A framework's probe binary and what it can do.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Path of the probe binary (`env!("CARGO_BIN_EXE_<name>")`).
    pub program: &'static str,
    /// Whether a client that disconnects cancels its handler (hyper-based servers) or
    /// the handler runs on (actix-web), holding its guard until it ends or the deadline.
    pub disconnect_cancels_handler: bool,
}

/// Bound on waiting for a log line or an exit: only stops a hung probe from hanging CI.
const WAIT: Duration = Duration::from_secs(20);

/// A probe started and listening.
#[derive(Debug)]
pub struct Running {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Running {
    /// Starts `probe` with extra environment and waits until it listens.
    pub fn start(probe: &Probe, env: &[(&str, &str)]) -> Self {
        let mut child = Child::spawn(probe.program, env).expect("start the probe");
        let line = child.wait_for_line(Source::Stdout, "listening on ", WAIT);
        let addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        child.wait_for_line(Source::Stderr, "signal handlers registered", WAIT);
        Self { child, addr }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.child.signal(Signal::SIGTERM);
    }

    /// Waits for a line on stdout.
    pub fn stdout_line(&mut self, needle: &str) -> String {
        self.child.wait_for_line(Source::Stdout, needle, WAIT)
    }

    /// Waits for a line on stderr (the logs).
    pub fn log_line(&mut self, needle: &str) -> String {
        self.child.wait_for_line(Source::Stderr, needle, WAIT)
    }

    /// Waits until the drain has begun.
    pub fn wait_draining(&mut self) {
        self.log_line("draining in-flight requests");
    }

    /// Waits for the exit; returns the exit code.
    pub fn exit_code(&mut self) -> i32 {
        let status = self.child.wait(WAIT);
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}\n{}", self.child.output()))
    }

    /// The report line, once the process has exited.
    pub fn report(&mut self) -> String {
        self.log_line("graceful shutdown complete")
    }

    /// Everything it printed, for failure messages.
    pub fn output(&self) -> String {
        self.child.output()
    }
}

/// The value of `name=` in a log line.
pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[start..].split_whitespace().next().unwrap_or("")
}

/// Starts `GET path` on its own thread; the handle yields the response or the error.
fn get_in_background(
    addr: SocketAddr,
    path: &str,
) -> thread::JoinHandle<std::io::Result<http::Response>> {
    let path = path.to_owned();
    thread::spawn(move || http::get(addr, &path))
}

fn join<T>(handle: thread::JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|_| panic!("client thread panicked"))
}

/// Scenario 1: A request in flight when shutdown begins completes with 200.
pub fn in_flight_request_completes_with_200(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "30")]);
    let slow = get_in_background(p.addr, "/slow?ms=1500");
    p.stdout_line("slow started");
    p.sigterm();
    p.wait_draining();

    let response =
        join(slow).unwrap_or_else(|e| panic!("slow request failed: {e}\n{}", p.output()));
    assert_eq!(response.status(), 200, "{}", p.output());
    assert_eq!(response.text(), "done");
    assert_eq!(p.exit_code(), 0, "{}", p.output());
    let report = p.report();
    assert_eq!(field(&report, "drained"), "1", "{report}");
    assert_eq!(field(&report, "interrupted"), "0", "{report}");
}

/// Scenario 2: A new request during the drain gets 503 with `Retry-After`, on a new connection
/// and on a keep-alive connection opened before; nothing is refused or reset.
pub fn new_requests_during_the_drain_get_503_with_retry_after(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "30")]);
    let mut keep_alive = Conn::open(p.addr).expect("connect");
    let first = keep_alive.get("/").expect("first request");
    assert_eq!(first.status(), 200);
    assert_ne!(
        first.header("connection"),
        Some("close"),
        "keep-alive before the shutdown"
    );

    let slow = get_in_background(p.addr, "/slow?ms=2000");
    p.stdout_line("slow started");
    p.sigterm();
    p.wait_draining();

    let fresh =
        http::get(p.addr, "/").unwrap_or_else(|e| panic!("new connection: {e}\n{}", p.output()));
    assert_eq!(fresh.status(), 503, "{}", p.output());
    assert_eq!(fresh.header("retry-after"), Some("10"));
    assert_eq!(
        fresh
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    assert_eq!(fresh.text(), shutdown_core::REJECTION_MESSAGE);

    let reused = keep_alive
        .get("/")
        .unwrap_or_else(|e| panic!("keep-alive connection: {e}\n{}", p.output()));
    assert_eq!(reused.status(), 503);
    assert_eq!(reused.header("retry-after"), Some("10"));

    let slow = join(slow).expect("slow request");
    assert_eq!(slow.status(), 200);
    assert_eq!(
        slow.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    assert_eq!(p.exit_code(), 0, "{}", p.output());
    assert_eq!(field(&p.report(), "rejected"), "2");
}

/// Scenario 3: `/health/ready` answers 503 from the first moment of shutdown (through the
/// pre-stop delay, while requests are still served); `/health/live` stays 200.
pub fn readiness_turns_503_at_once_and_liveness_stays_200(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_DELAY", "1")]);
    assert_eq!(
        http::get(p.addr, "/health/ready").expect("ready").status(),
        200
    );
    assert_eq!(
        http::get(p.addr, "/health/live").expect("live").status(),
        200
    );
    // Keeps the drain open after the pre-stop delay, so the server is still there.
    let slow = get_in_background(p.addr, "/slow?ms=3000");
    p.stdout_line("slow started");
    p.sigterm();
    // Core's event, logged once the trigger is recorded (the signal's own line, which
    // also says "shutting down", comes before it).
    p.log_line("shutdown_core::shutdown: shutting down");

    let ready = http::get(p.addr, "/health/ready").expect("ready");
    assert_eq!(ready.status(), 503, "{}", p.output());
    assert_eq!(
        http::get(p.addr, "/health/live").expect("live").status(),
        200
    );
    let served = http::get(p.addr, "/").expect("served during the pre-stop delay");
    assert_eq!(
        served.status(),
        200,
        "still served during the pre-stop delay"
    );
    assert_eq!(
        served
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );

    p.wait_draining();
    assert_eq!(
        http::get(p.addr, "/health/ready").expect("ready").status(),
        503
    );
    assert_eq!(
        http::get(p.addr, "/health/live").expect("live").status(),
        200
    );
    assert_eq!(join(slow).expect("slow request").status(), 200);
    assert_eq!(p.exit_code(), 0, "{}", p.output());
}

/// Scenario 4: A streaming response started before shutdown is delivered whole.
pub fn a_stream_started_before_shutdown_is_delivered_whole(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "30")]);
    let mut conn = Conn::open(p.addr).expect("connect");
    conn.send("GET", "/stream?chunks=6&interval_ms=200", b"")
        .expect("send");
    let head = conn.read_head().expect("head");
    assert_eq!(head.status, 200);
    let mut body = conn
        .read_chunk()
        .expect("first chunk")
        .expect("not the end");

    p.sigterm();
    p.wait_draining();
    body.extend(
        conn.read_body(&head)
            .unwrap_or_else(|e| panic!("rest of the stream: {e}\n{}", p.output())),
    );
    let expected: String = (0..6).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&body), expected);
    assert_eq!(p.exit_code(), 0, "{}", p.output());
    assert_eq!(field(&p.report(), "drained"), "1");
}

/// Scenario 5: With a 1 s deadline and a 10 s handler, the server stops after about 1 s and the
/// report counts 1 interrupted request.
pub fn the_deadline_interrupts_a_long_handler(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "1")]);
    let slow = get_in_background(p.addr, "/slow?ms=10000");
    p.stdout_line("slow started");
    let signalled = Instant::now();
    p.sigterm();
    let code = p.exit_code();
    let took = signalled.elapsed();

    assert_eq!(code, 3, "{}", p.output());
    assert!(
        took < Duration::from_secs(8),
        "the process waited for the 10 s handler ({took:?})"
    );
    let report = p.report();
    assert_eq!(field(&report, "interrupted"), "1", "{report}");
    let drain_ms: u64 = field(&report, "drain_ms").parse().expect("drain_ms");
    assert!((1000..5000).contains(&drain_ms), "drain_ms={drain_ms}");
    let _ = join(slow);
}

/// Scenario 6: Cleanup tasks run after the server stopped, in LIFO order.
pub fn cleanup_runs_after_the_server_stopped_in_lifo_order(probe: &Probe) {
    let mut p = Running::start(probe, &[]);
    p.sigterm();
    assert_eq!(p.exit_code(), 0, "{}", p.output());
    let cleanups: Vec<&str> = p
        .child
        .lines(Source::Stdout)
        .into_iter()
        .filter(|l| l.starts_with("cleanup "))
        .collect();
    assert_eq!(
        cleanups,
        [
            "cleanup second listener_closed=true",
            "cleanup first listener_closed=true"
        ],
        "{}",
        p.output()
    );
}

/// Scenario 7: A POST whose body arrives during the drain gets its 503: the client reads the
/// response; the connection is not reset because of unread input.
pub fn a_post_during_the_drain_gets_its_503(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "30")]);
    let slow = get_in_background(p.addr, "/slow?ms=3000");
    p.stdout_line("slow started");
    p.sigterm();
    p.wait_draining();

    // Written whole before the response is read.
    let mut conn = Conn::open(p.addr).expect("connect");
    let response = conn
        .request("POST", "/upload", &vec![b'x'; 256 * 1024])
        .unwrap_or_else(|e| panic!("256 KiB POST: {e}\n{}", p.output()));
    assert_eq!(response.status(), 503);
    assert_eq!(response.header("retry-after"), Some("10"));

    // Larger than the socket buffers, written while the response is read.
    let mut conn = Conn::open(p.addr).expect("connect");
    let mut writer = conn.writer().expect("writer");
    let size = 4 * 1024 * 1024;
    let sending = thread::spawn(move || {
        use std::io::Write;
        let head = format!("POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: {size}\r\n\r\n");
        writer.write_all(head.as_bytes())?;
        writer.write_all(&vec![b'x'; size])?;
        Ok::<_, std::io::Error>(writer)
    });
    let head = conn
        .read_head()
        .unwrap_or_else(|e| panic!("4 MiB POST: no response: {e}\n{}", p.output()));
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("10"));
    let _ = join(sending);

    assert_eq!(join(slow).expect("slow request").status(), 200);
    assert_eq!(p.exit_code(), 0, "{}", p.output());
}

/// Scenario 8: A client that disconnects mid-request releases its guard, or, where the framework
/// keeps running the handler (actix-web), the guard is held until the deadline: the
/// documented limit.
pub fn a_client_that_disconnects_mid_request(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "2")]);
    let mut conn = Conn::open(p.addr).expect("connect");
    conn.send("GET", "/slow?ms=30000", b"").expect("send");
    p.stdout_line("slow started");
    drop(conn);
    p.sigterm();
    let code = p.exit_code();
    let report = p.report();
    if probe.disconnect_cancels_handler {
        // The handler was cancelled when the server saw the connection close (before
        // or during the drain): nothing was left for the 2 s deadline to interrupt.
        assert_eq!(code, 0, "{}", p.output());
        assert_eq!(field(&report, "interrupted"), "0", "{report}");
    } else {
        assert_eq!(code, 3, "{}", p.output());
        assert_eq!(
            field(&report, "interrupted"),
            "1",
            "the handler outlived its client: {report}"
        );
    }
}

/// Scenario 9: A never-ending streaming response does not hold the process past the deadline.
pub fn a_never_ending_stream_does_not_hold_the_process(probe: &Probe) {
    let mut p = Running::start(probe, &[("SHUTDOWN_TIMEOUT", "1")]);
    let mut conn = Conn::open(p.addr).expect("connect");
    conn.send("GET", "/stream?chunks=0&interval_ms=100", b"")
        .expect("send");
    assert_eq!(conn.read_head().expect("head").status, 200);
    conn.read_chunk().expect("a chunk").expect("not the end");

    let signalled = Instant::now();
    p.sigterm();
    let code = p.exit_code();
    assert_eq!(code, 3, "{}", p.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "held past the deadline"
    );
    assert_eq!(field(&p.report(), "interrupted"), "1");
}

/// Scenario 10: a handoff (a successor has taken over the listening socket) stops
/// accepting at once, serves the requests that still arrive on open connections
/// normally (never `503`) with `Connection: close`, finishes the request in flight, and
/// exits 0 with a report that says it handed over.
pub fn a_handoff_serves_open_connections_normally_and_stops_accepting(probe: &Probe) {
    let mut p = Running::start(
        probe,
        &[
            ("SHUTDOWN_TIMEOUT", "30"),
            ("SHUTDOWN_HANDOFF_GRACE", "1.5"),
        ],
    );
    let mut idle = Conn::open(p.addr).expect("connect");
    assert_eq!(idle.get("/").expect("before the handoff").status(), 200);
    let slow = get_in_background(p.addr, "/slow?ms=1000");
    p.stdout_line("slow started");

    p.child.signal(Signal::SIGHUP);
    p.log_line("handed over: no longer accepting");
    let again = idle
        .get("/")
        .unwrap_or_else(|e| panic!("idle keep-alive connection: {e}\n{}", p.output()));
    assert_eq!(again.status(), 200, "served, not rejected\n{}", p.output());
    assert_eq!(
        again
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close"),
        "the client reconnects, to the successor"
    );
    // A new connection is not served by this process: it is never accepted (the
    // successor, which shares the socket, would accept it; actix pauses its accept
    // loop, which runs on a thread of its own and applies the pause a moment after it
    // is asked to).
    thread::sleep(Duration::from_millis(200));
    match TcpStream::connect_timeout(&p.addr, Duration::from_millis(500)) {
        Err(_) => {}
        Ok(mut stream) => {
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
                .expect("write");
            let mut answer = [0u8; 64];
            let read = stream.read(&mut answer);
            assert!(
                !matches!(read, Ok(n) if n > 0),
                "a new connection got an answer after the handoff: {:?}\n{}",
                read.map(|n| String::from_utf8_lossy(&answer[..n]).into_owned()),
                p.output()
            );
        }
    }

    let slow = join(slow).unwrap_or_else(|e| panic!("slow request: {e}\n{}", p.output()));
    assert_eq!(slow.status(), 200);
    assert_eq!(p.exit_code(), 0, "{}", p.output());
    let report = p.report();
    assert_eq!(field(&report, "trigger_kind"), "\"handoff\"", "{report}");
    assert_eq!(field(&report, "rejected"), "0", "{report}");
    assert_eq!(field(&report, "interrupted"), "0", "{report}");
}

/// Runs every scenario of this module against one probe, as `#[test]` functions.
///
/// ```ignore
/// e2e_tests::adapter_scenarios!(e2e_tests::scenarios::Probe {
///     program: env!("CARGO_BIN_EXE_axum-probe"),
///     disconnect_cancels_handler: true,
/// });
/// ```
#[macro_export]
macro_rules! adapter_scenarios {
    ($probe:expr) => {
        const PROBE: $crate::scenarios::Probe = $probe;
        $crate::adapter_scenarios!(@tests
            in_flight_request_completes_with_200,
            new_requests_during_the_drain_get_503_with_retry_after,
            readiness_turns_503_at_once_and_liveness_stays_200,
            a_stream_started_before_shutdown_is_delivered_whole,
            the_deadline_interrupts_a_long_handler,
            cleanup_runs_after_the_server_stopped_in_lifo_order,
            a_post_during_the_drain_gets_its_503,
            a_client_that_disconnects_mid_request,
            a_never_ending_stream_does_not_hold_the_process,
            a_handoff_serves_open_connections_normally_and_stops_accepting,
        );
    };
    (@tests $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios::$name(&PROBE);
            }
        )*
    };
}
