//! In-place restart of the demos: `SIGHUP` starts the binary now at the service's path
//! with the listening socket, and the old process hands over once the successor is
//! ready. Each demo runs from a path of its own ([`Deploy`]) so that a test can replace
//! "the binary" as a deployment does; the successor is not the test's child (it is the
//! old process's), so the test adopts it ([`e2e_tests::adopt_orphans`]) to read its
//! exit code. Both processes write to the test's stderr pipe: the successor's lines
//! arrive on the old process's [`Child`].
//!
//! Run by `telemetry_scenarios!` against each demo, like the other scenarios.

use std::net::TcpStream;

use e2e_tests::{Deploy, Orphan};

use super::*;

/// `SHUTDOWN_HANDOFF_GRACE` of these tests: how long the old process serves its open
/// connections (with `Connection: close`) after the handoff.
const GRACE_SECS: &str = "1";
/// Load on the old process before the `SIGHUP`, and on the successor alone after the
/// old process has exited.
const LOAD_AROUND: Duration = Duration::from_millis(700);
/// Writers on keep-alive connections, and writers opening a connection per request.
const KEEP_ALIVE_WRITERS: usize = 3;
const PER_REQUEST_WRITERS: usize = 3;

/// A demo deployed at a path of its own, with its database.
struct Deployed {
    deploy: Deploy,
    db: TempDb,
}

impl Deployed {
    fn new(demo: Demo, test: &str) -> Self {
        Self {
            deploy: Deploy::new(test, demo.path()),
            db: TempDb::new(demo, test),
        }
    }

    /// Starts the demo from its path (`BIND_ADDR=127.0.0.1:0`, its database,
    /// `PID_FILE`, a short handoff grace, then `env`) and waits until it is ready.
    fn start(&self, env: &[(&str, &str)]) -> Service {
        let mut all = vec![
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_PATH", self.db.path()),
            ("SHUTDOWN_HANDOFF_GRACE", GRACE_SECS),
        ];
        all.extend_from_slice(env);
        let child = Child::spawn_command(self.deploy.command(&all)).expect("start the demo");
        Service::ready(child)
    }

    /// Replaces the binary with the demo itself, run with `env` set.
    fn replace(&self, env: &[(&str, &str)]) {
        self.deploy.replace(env);
    }

    /// Replaces the binary with the demo, started `secs` seconds late (a slow start).
    /// The `sleep` closes the passed socket (3) and ready pipe (4), so that if the
    /// script is killed while it sleeps, no descriptor of the service outlives it.
    fn replace_slow(&self, secs: u32) {
        self.deploy
            .replace_with(&format!("sleep {secs} 3>&- 4>&-"), &[]);
    }
}

impl Service {
    /// A demo started from a command: waits until it listens and has said it is ready.
    fn ready(mut child: Child) -> Self {
        let line = child.wait_for_line(Source::Stderr, "listening on ", WAIT);
        let addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        child.wait_for_line(Source::Stderr, "shutdown_handoff::handoff: ready", WAIT);
        Self { child, addr }
    }

    /// The successor of a restart, once it is ready: the old process's log line names
    /// it.
    fn successor(&mut self) -> Orphan {
        let line = self.log_line("successor ready; handing over");
        Orphan::new(
            field(&line, "successor")
                .parse()
                .unwrap_or_else(|e| panic!("successor pid in {line}: {e}")),
        )
    }

    /// The old process's report of a handoff, once it has exited.
    fn handoff_report(&mut self) -> String {
        self.log_line("graceful shutdown complete trigger=handed over")
    }
}

/// `POST /telemetry` of unique ids (`c<index>-<n>`), each on a new connection, until
/// `stop` or the cap. No retries: each request gets one attempt.
fn per_request_writer(addr: SocketAddr, index: usize, stop: &AtomicBool) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for n in 0..WRITER_CAP {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let at = SystemTime::now();
        let mut conn = match Conn::open(addr) {
            Ok(conn) => conn,
            Err(error) => {
                outcomes.push(Outcome::ConnectFailed {
                    refused: error.kind() == std::io::ErrorKind::ConnectionRefused,
                    error: error.to_string(),
                    at,
                });
                continue;
            }
        };
        let id = format!("c{index}-{n}");
        match conn.request("POST", "/telemetry", &event(&id)) {
            Ok(response) => outcomes.push(Outcome::Answered {
                id,
                status: response.status(),
                retry_after: response.header("retry-after").is_some(),
                close: is_close(&response),
                answered: SystemTime::now(),
            }),
            Err(error) => outcomes.push(Outcome::Lost {
                id,
                error: error.to_string(),
                sent: at,
            }),
        }
    }
    outcomes
}

/// Write load on `addr`: [`KEEP_ALIVE_WRITERS`] on keep-alive connections (a new one
/// after `Connection: close`), [`PER_REQUEST_WRITERS`] with a connection per request.
struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<thread::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for index in 0..KEEP_ALIVE_WRITERS {
            let stop = Arc::clone(&stop);
            writers.push(thread::spawn(move || writer(addr, index, &stop)));
        }
        for index in 0..PER_REQUEST_WRITERS {
            let stop = Arc::clone(&stop);
            writers.push(thread::spawn(move || {
                per_request_writer(addr, index, &stop)
            }));
        }
        Self { stop, writers }
    }

    fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        Tally::of(self.writers.into_iter().flat_map(join).collect())
    }
}

/// The outcomes of a load, sorted out.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    acknowledged: HashSet<String>,
    /// When each `202` came back.
    acknowledged_at: Vec<SystemTime>,
    /// Everything but a `202`: a refused or failed connect, a request without a whole
    /// response, any other status (a `503` among them).
    failures: Vec<String>,
    /// `503` answers.
    unavailable: usize,
}

impl Tally {
    fn of(outcomes: Vec<Outcome>) -> Self {
        let mut tally = Self {
            sent: outcomes.len(),
            ..Self::default()
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Answered {
                    id,
                    status: 202,
                    answered,
                    ..
                } => {
                    tally.acknowledged.insert(id);
                    tally.acknowledged_at.push(answered);
                }
                Outcome::Answered { id, status, .. } => {
                    tally.unavailable += usize::from(status == 503);
                    tally.failures.push(format!("{id}: status {status}"));
                }
                Outcome::ConnectFailed { refused, error, .. } => tally
                    .failures
                    .push(format!("connect failed (refused={refused}): {error}")),
                Outcome::Lost { id, error, .. } => {
                    tally.failures.push(format!("{id}: no response: {error}"));
                }
            }
        }
        tally
    }

    /// `202`s that came back before `t`, and after it.
    fn acknowledged_around(&self, t: SystemTime) -> (usize, usize) {
        let before = self.acknowledged_at.iter().filter(|at| **at < t).count();
        (before, self.acknowledged_at.len() - before)
    }

    fn assert_no_failure(&self, output: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed ({} answered 503), e.g. {:#?}\n{output}",
            self.failures.len(),
            self.sent,
            self.unavailable,
            &self.failures[..self.failures.len().min(20)],
        );
    }

    /// Every acknowledged id is stored, and nothing else is.
    fn assert_stored(&self, db: &TempDb) {
        let stored = db.ids();
        let missing: Vec<&String> = self.acknowledged.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged but not stored, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        let unexpected: Vec<&String> = stored.difference(&self.acknowledged).collect();
        assert!(
            unexpected.is_empty(),
            "{} stored but never acknowledged, e.g. {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(10)]
        );
    }
}

/// Stops a successor with `SIGTERM`; it must exit 0.
fn stop_successor(successor: &mut Orphan, old: &Service) {
    successor.signal(Signal::SIGTERM);
    assert_eq!(successor.wait(WAIT), 0, "{}", old.output());
}

/// Under write load (keep-alive clients and a connection per request, no retries),
/// `SIGHUP` restarts the demo in place: no request fails, none gets a `503`; the old
/// process exits 0 with a handoff report (nothing interrupted, nothing rejected), the
/// pid file names the successor, and every acknowledged id is in SQLite once both
/// processes have exited. Both processes wrote to the database during the overlap.
pub(super) fn an_upgrade_under_write_load_fails_no_request_and_loses_no_write(demo: Demo) {
    upgrade_under_write_load(demo, "durable");
}

/// The same with `ACK_MODE=buffered` and no periodic flush: what the old process
/// acknowledged is only in its buffer until it exits, so only its flush after the
/// handoff drain can store it.
pub(super) fn an_upgrade_under_write_load_buffered_writes_the_old_buffer_before_exit(demo: Demo) {
    upgrade_under_write_load(demo, "buffered");
}

fn upgrade_under_write_load(demo: Demo, ack_mode: &str) {
    e2e_tests::adopt_orphans();
    let deployed = Deployed::new(demo, &format!("upgrade-{ack_mode}"));
    // Room for everything the load can send (6 writers of at most `WRITER_CAP`).
    let mut old = deployed.start(&[
        ("ACK_MODE", ack_mode),
        ("FLUSH_INTERVAL_MS", "600000"),
        ("BUFFER_CAPACITY", "1000000"),
    ]);
    let old_pid = old.child.pid();
    assert_eq!(deployed.deploy.pid_in_file(), old_pid, "written once ready");

    let load = Load::start(old.addr);
    thread::sleep(LOAD_AROUND);
    let signalled = SystemTime::now();
    old.signal(Signal::SIGHUP);
    let mut successor = old.successor();
    let code = old.exit_code();
    let exited = SystemTime::now();
    thread::sleep(LOAD_AROUND);
    let tally = load.stop();
    let (before, _) = tally.acknowledged_around(signalled);
    let (_, after) = tally.acknowledged_around(exited);
    println!(
        "upgrade, {} ({ack_mode}): {} requests, {} acknowledged ({before} before SIGHUP, \
         {after} after the old process exited), {} failed, {} answered 503",
        demo.binary,
        tally.sent,
        tally.acknowledged.len(),
        tally.failures.len(),
        tally.unavailable
    );

    tally.assert_no_failure(&old.output());
    assert_eq!(code, 0, "{}", old.output());
    assert!(
        before > 0 && after > 0,
        "the load must span the restart: {before} acknowledged before the SIGHUP, {after} after the old process exited"
    );
    let report = old.handoff_report();
    assert!(
        report.contains(&format!("successor pid {}", successor.pid())),
        "{report}"
    );
    assert_eq!(field(&report, "interrupted"), "0", "{report}");
    assert_eq!(field(&report, "rejected"), "0", "{report}");
    if ack_mode == "buffered" {
        let flushed = old.log_line("write-behind buffer flushed after the drain");
        let events: usize = field(&flushed, "events").parse().expect("events=N");
        assert!(
            events >= before,
            "the old process's last flush wrote what it acknowledged: {flushed}"
        );
    }
    assert_eq!(
        deployed.deploy.pid_in_file(),
        successor.pid(),
        "the successor took over the pid file"
    );

    stop_successor(&mut successor, &old);
    tally.assert_stored(&deployed.db);
}

/// A new binary that fails to start (its database cannot be opened: exit 2 after it
/// took the socket) leaves the old process serving, under write load, with no request
/// failed; the pid file keeps the old pid. A later `SIGHUP`, with a good binary, hands
/// over.
pub(super) fn a_successor_that_fails_to_start_leaves_the_old_process_serving(demo: Demo) {
    e2e_tests::adopt_orphans();
    let deployed = Deployed::new(demo, "fails");
    let mut old = deployed.start(&[]);
    let old_pid = old.child.pid();

    let missing = deployed.deploy.dir().join("no-such-dir/telemetry.db");
    deployed.replace(&[("DATABASE_PATH", missing.to_str().expect("UTF-8 path"))]);
    let load = Load::start(old.addr);
    thread::sleep(Duration::from_millis(200));
    old.signal(Signal::SIGHUP);
    let failed = old.log_line("in-place restart failed");
    thread::sleep(Duration::from_millis(300));
    let tally = load.stop();
    assert!(failed.contains("exit status: 2"), "{failed}");
    tally.assert_no_failure(&old.output());
    assert_eq!(deployed.deploy.pid_in_file(), old_pid, "still the old pid");
    assert_eq!(old.post_event("after-failure").status(), 202);

    deployed.replace(&[]);
    old.signal(Signal::SIGHUP);
    let mut successor = old.successor();
    assert_eq!(old.exit_code(), 0, "{}", old.output());
    assert_eq!(old.post_event("by-successor").status(), 202);
    assert_eq!(deployed.deploy.pid_in_file(), successor.pid());
    stop_successor(&mut successor, &old);

    let stored = deployed.db.ids();
    for id in ["after-failure", "by-successor"] {
        assert!(stored.contains(id), "{id} stored");
    }
    assert!(tally.acknowledged.is_subset(&stored));
}

/// A `SIGHUP` while a restart is under way (a new binary slow to start) is logged and
/// ignored: one successor is started, and it takes over.
pub(super) fn sighup_during_a_restart_is_ignored(demo: Demo) {
    e2e_tests::adopt_orphans();
    let deployed = Deployed::new(demo, "twice");
    let mut old = deployed.start(&[]);

    deployed.replace_slow(1);
    old.signal(Signal::SIGHUP);
    old.log_line("successor started");
    old.signal(Signal::SIGHUP);
    old.log_line("SIGHUP ignored: a restart is already under way");
    assert_eq!(old.post_event("during-restart").status(), 202);
    let mut successor = old.successor();
    assert_eq!(old.exit_code(), 0, "{}", old.output());

    let started = old
        .child
        .lines(Source::Stderr)
        .iter()
        .filter(|l| l.contains("successor started"))
        .count();
    assert_eq!(started, 1, "one restart at a time\n{}", old.output());
    assert_eq!(old.post_event("by-successor").status(), 202);
    stop_successor(&mut successor, &old);
    let expected: HashSet<String> = ["during-restart", "by-successor"].map(String::from).into();
    assert_eq!(deployed.db.ids(), expected);
}

/// `SIGTERM` while the successor starts: the successor is stopped (it served nothing)
/// and the old process drains as usual: a request in flight completes, new requests
/// get `503` + `Retry-After`, the report's trigger is the signal, exit 0; then the
/// socket is closed (a connection is refused): no process of the service is left.
pub(super) fn sigterm_during_a_restart_stops_the_successor_and_drains_as_usual(demo: Demo) {
    e2e_tests::adopt_orphans();
    let deployed = Deployed::new(demo, "sigterm");
    let mut old = deployed.start(&[("SHUTDOWN_TIMEOUT", "30")]);
    let addr = old.addr;
    assert_eq!(old.post_event("before").status(), 202);

    deployed.replace_slow(5);
    old.signal(Signal::SIGHUP);
    let started = old.log_line("successor started");
    let successor = Orphan::new(field(&started, "successor").parse().expect("successor pid"));
    let slow = get_in_background(addr, "/slow?ms=1500");
    old.log_line("slow request started");
    old.signal(Signal::SIGTERM);
    old.wait_draining();
    let rejected = old.post_event("during-drain");
    let code = old.exit_code();

    let output = old.output();
    assert_eq!(code, 0, "{output}");
    assert_eq!(rejected.status(), 503, "{}", rejected.text());
    assert!(rejected.header("retry-after").is_some());
    let slow = join(slow).unwrap_or_else(|e| panic!("slow request: {e}\n{output}"));
    assert_eq!(slow.status(), 200, "{output}");
    assert!(output.contains("stopping the successor"), "{output}");
    assert!(output.contains("successor stopped"), "{output}");
    let report = old.report();
    assert!(report.contains("trigger_kind=\"signal\""), "{report}");
    assert!(
        !successor.is_alive(),
        "the successor was stopped and reaped"
    );
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect_err("nothing listens any more");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        deployed.db.ids(),
        HashSet::from(["before".to_owned()]),
        "the 503 stored nothing"
    );
}

/// Socket activation as systemd does it: the test binds a socket and passes it as
/// descriptor 3 (`LISTEN_FDS=1`, `LISTEN_FDNAMES=http`, `LISTEN_PID` the demo's pid);
/// the demo serves it instead of binding `BIND_ADDR`, and a `SIGHUP` hands that socket
/// to the successor.
pub(super) fn socket_activation_serves_the_passed_socket_and_hands_it_over(demo: Demo) {
    use command_fds::{CommandFdExt, FdMapping};

    e2e_tests::adopt_orphans();
    let deployed = Deployed::new(demo, "activation");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // LISTEN_PID is set by the shell to its own pid, which `exec` keeps.
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\"")
        .arg(deployed.deploy.binary())
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "http")
        .env("BIND_ADDR", "127.0.0.1:1")
        .env("DATABASE_PATH", deployed.db.path())
        .env("SHUTDOWN_HANDOFF_GRACE", GRACE_SECS)
        .current_dir(deployed.deploy.dir());
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: listener.into(),
            child_fd: 3,
        }])
        .expect("map the socket");
    let mut old = Service::ready(Child::spawn_command(command).expect("start the demo"));
    assert_eq!(old.addr, addr, "the passed socket, not BIND_ADDR");
    let passed = old.log_line("serving a passed socket");
    assert!(passed.contains("source=systemd"), "{passed}");
    assert_eq!(old.post_event("by-first").status(), 202);

    let load = Load::start(addr);
    thread::sleep(Duration::from_millis(300));
    old.signal(Signal::SIGHUP);
    let mut successor = old.successor();
    assert_eq!(old.exit_code(), 0, "{}", old.output());
    thread::sleep(Duration::from_millis(300));
    let tally = load.stop();
    tally.assert_no_failure(&old.output());
    assert_eq!(old.post_event("by-successor").status(), 202);
    stop_successor(&mut successor, &old);

    let stored = deployed.db.ids();
    assert!(stored.contains("by-first") && stored.contains("by-successor"));
    assert!(tally.acknowledged.is_subset(&stored));
}
