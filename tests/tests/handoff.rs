//! In-place restart with real processes and real signals (`handoff-probe`): `SIGHUP`
//! starts the binary found at the service's path, passes it the listening socket, and
//! the old process stops once the successor is ready. One process per scenario.
//!
//! The service runs from a path of its own ([`Deploy`]), so that a test can replace
//! "the binary" as a deployment does: with a script that sets the probe's behaviour
//! (`PROBE_*`) and runs it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use e2e_tests::{Child, Deploy, Orphan, Signal, Source};

const PROBE: &str = env!("CARGO_BIN_EXE_handoff-probe");
/// Generous bounds: they only stop a hung child from hanging CI.
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);
const IO: Duration = Duration::from_secs(5);

/// Starts the service from its path; returns it and the address it serves.
fn start(deploy: &Deploy, env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut child = Child::spawn_command(deploy.command(env)).expect("start the service");
    let addr = listening_addr(&mut child);
    child.wait_for_line(Source::Stdout, "ready pid=", START);
    (child, addr)
}

fn listening_addr(child: &mut Child) -> SocketAddr {
    let line = child.wait_for_line(Source::Stdout, "listening on ", START);
    line.trim_start_matches("listening on ")
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Who answers a connection now: `(pid, version)`.
fn ask(addr: SocketAddr) -> std::io::Result<(u32, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, IO)?;
    stream.set_read_timeout(Some(IO))?;
    let mut line = String::new();
    stream.read_to_string(&mut line)?;
    let mut pid = None;
    let mut version = None;
    for field in line.split_whitespace() {
        if let Some(p) = field.strip_prefix("pid=") {
            pid = p.parse().ok();
        } else if let Some(v) = field.strip_prefix("version=") {
            version = Some(v.to_owned());
        }
    }
    match (pid, version) {
        (Some(pid), Some(version)) => Ok((pid, version)),
        _ => Err(std::io::Error::other(format!("unexpected answer {line:?}"))),
    }
}

/// A number from a log field `name=N` in `line`.
fn field(line: &str, name: &str) -> u32 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

/// Waits until `predicate` holds, polling; panics after `timeout`.
fn eventually(what: &str, timeout: Duration, mut predicate: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !predicate() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Who answered each connection, and the errors.
type Answers = (Vec<(u32, String)>, Vec<String>);

/// Connects again and again until stopped, one connection at a time.
struct Clients {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Answers>,
}

impl Clients {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut answers = Vec::new();
            let mut errors = Vec::new();
            // Bounded in count as well as by the flag.
            for _ in 0..5_000 {
                if flag.load(Ordering::Acquire) {
                    break;
                }
                match ask(addr) {
                    Ok(answer) => answers.push(answer),
                    Err(error) => errors.push(error.to_string()),
                }
                thread::sleep(Duration::from_millis(2));
            }
            (answers, errors)
        });
        Self { stop, thread }
    }

    fn stop(self) -> Answers {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("clients")
    }
}

#[test]
fn sighup_hands_the_listener_to_the_binary_now_at_the_path() {
    e2e_tests::adopt_orphans();
    let deploy = Deploy::new("success", PROBE);
    let (mut old, addr) = start(&deploy, &[]);
    let old_pid = old.pid();
    assert_eq!(ask(addr).expect("served").0, old_pid);
    assert_eq!(deploy.pid_in_file(), old_pid, "written once ready");

    deploy.replace(&[("PROBE_VERSION", "2"), ("PROBE_READY_DELAY_MS", "300")]);
    let clients = Clients::start(addr);
    old.signal(Signal::SIGHUP);
    let status = old.wait(EXIT);
    // Keep connecting a little after the old process has gone.
    thread::sleep(Duration::from_millis(200));
    let (answers, errors) = clients.stop();

    assert_eq!(status.code(), Some(0), "{}", old.output());
    let line = old.wait_for_line(Source::Stdout, "ready pid=", START);
    let successor = field(
        &old.wait_for_line(Source::Stdout, "version=2", START),
        "pid",
    );
    assert_ne!(successor, old_pid, "{line}");
    let mut successor = Orphan::new(successor);
    assert!(errors.is_empty(), "no connection failed: {errors:?}");
    assert!(
        answers.iter().any(|(pid, _)| *pid == old_pid)
            && answers
                .iter()
                .any(|(pid, v)| *pid == successor.pid() && v == "2"),
        "both processes answered: {answers:?}"
    );
    assert_eq!(
        ask(addr).expect("served"),
        (successor.pid(), "2".to_owned())
    );
    assert_eq!(
        deploy.pid_in_file(),
        successor.pid(),
        "the successor took over"
    );

    let output = old.output();
    assert!(
        output.contains("received SIGHUP; restarting in place"),
        "{output}"
    );
    assert!(
        output.contains(&format!("stopped accepting pid={old_pid} trigger=handoff")),
        "{output}"
    );
    let report = old
        .lines(Source::Stderr)
        .into_iter()
        .find(|l| l.contains("graceful shutdown complete"))
        .unwrap_or_else(|| panic!("no report\n{output}"))
        .to_owned();
    assert!(
        report.contains("trigger_kind=\"handoff\"") || report.contains("trigger_kind=handoff"),
        "{report}"
    );
    assert!(
        report.contains(&format!("successor pid {}", successor.pid())),
        "{report}"
    );

    successor.signal(Signal::SIGTERM);
    assert_eq!(successor.wait(EXIT), 0, "{}", old.output());
}

#[test]
fn a_successor_that_exits_before_ready_leaves_the_old_process_serving_and_a_later_sighup_retries() {
    e2e_tests::adopt_orphans();
    let deploy = Deploy::new("exits", PROBE);
    let (mut old, addr) = start(&deploy, &[]);
    let old_pid = old.pid();

    deploy.replace(&[("PROBE_EXIT_BEFORE_READY", "3")]);
    old.signal(Signal::SIGHUP);
    let failed = old.wait_for_line(Source::Stderr, "in-place restart failed", START);
    assert!(failed.contains("exit status: 3"), "{failed}");
    assert_eq!(ask(addr).expect("still served").0, old_pid);
    assert_eq!(deploy.pid_in_file(), old_pid);

    deploy.replace(&[("PROBE_VERSION", "3")]);
    old.signal(Signal::SIGHUP);
    assert_eq!(old.wait(EXIT).code(), Some(0), "{}", old.output());
    let successor = field(
        &old.wait_for_line(Source::Stdout, "version=3", START),
        "pid",
    );
    let mut successor = Orphan::new(successor);
    assert_eq!(
        ask(addr).expect("served"),
        (successor.pid(), "3".to_owned())
    );
    successor.signal(Signal::SIGTERM);
    assert_eq!(successor.wait(EXIT), 0);
}

#[test]
fn a_successor_not_ready_in_time_is_killed_and_the_old_process_keeps_serving() {
    e2e_tests::adopt_orphans();
    let deploy = Deploy::new("timeout", PROBE);
    let (mut old, addr) = start(&deploy, &[("SHUTDOWN_HANDOFF_TIMEOUT", "1")]);
    let old_pid = old.pid();

    deploy.replace(&[("PROBE_NEVER_READY", "1")]);
    old.signal(Signal::SIGHUP);
    let started = old.wait_for_line(Source::Stderr, "successor started", START);
    let successor = Orphan::new(field(&started, "successor"));
    let failed = old.wait_for_line(Source::Stderr, "in-place restart failed", START);
    assert!(failed.contains("not ready within 1s; killed"), "{failed}");
    eventually("the successor is gone", IO, || !successor.is_alive());
    assert_eq!(ask(addr).expect("still served").0, old_pid);
    assert_eq!(deploy.pid_in_file(), old_pid);

    old.signal(Signal::SIGTERM);
    assert_eq!(old.wait(EXIT).code(), Some(0), "{}", old.output());
}

#[test]
fn sighup_during_a_restart_is_logged_and_ignored() {
    e2e_tests::adopt_orphans();
    let deploy = Deploy::new("twice", PROBE);
    let (mut old, addr) = start(&deploy, &[]);

    deploy.replace(&[("PROBE_VERSION", "2"), ("PROBE_READY_DELAY_MS", "1500")]);
    old.signal(Signal::SIGHUP);
    old.wait_for_line(Source::Stderr, "successor started", START);
    old.signal(Signal::SIGHUP);
    old.wait_for_line(Source::Stderr, "a restart is already under way", START);
    assert_eq!(old.wait(EXIT).code(), Some(0), "{}", old.output());

    let started = old
        .lines(Source::Stderr)
        .iter()
        .filter(|l| l.contains("successor started"))
        .count();
    assert_eq!(started, 1, "one restart at a time\n{}", old.output());
    let successor = field(
        &old.wait_for_line(Source::Stdout, "version=2", START),
        "pid",
    );
    let mut successor = Orphan::new(successor);
    assert_eq!(ask(addr).expect("served").0, successor.pid());
    successor.signal(Signal::SIGTERM);
    assert_eq!(successor.wait(EXIT), 0);
}

#[test]
fn sigterm_during_a_restart_stops_the_successor_and_drains_as_usual() {
    e2e_tests::adopt_orphans();
    let deploy = Deploy::new("sigterm", PROBE);
    let (mut old, _addr) = start(&deploy, &[]);

    deploy.replace(&[("PROBE_NEVER_READY", "1")]);
    old.signal(Signal::SIGHUP);
    let started = old.wait_for_line(Source::Stderr, "successor started", START);
    let successor = Orphan::new(field(&started, "successor"));
    old.wait_for_line(Source::Stdout, "never ready", START);
    old.signal(Signal::SIGTERM);
    let status = old.wait(EXIT);

    assert_eq!(status.code(), Some(0), "{}", old.output());
    let output = old.output();
    assert!(output.contains("stopping the successor"), "{output}");
    assert!(output.contains("successor stopped"), "{output}");
    assert!(
        output.contains(&format!(
            "stopped accepting pid={} trigger=signal",
            old.pid()
        )),
        "{output}"
    );
    assert!(
        !successor.is_alive(),
        "the successor was stopped and reaped"
    );
}

#[test]
fn sighup_before_the_service_is_ready_is_ignored() {
    let deploy = Deploy::new("early", PROBE);
    let mut command = Command::new(deploy.binary());
    command.env("PROBE_READY_DELAY_MS", "1000");
    let mut child = Child::spawn_command(command).expect("start");
    child.wait_for_line(Source::Stderr, "SIGHUP handler registered", START);
    child.signal(Signal::SIGHUP);
    child.wait_for_line(
        Source::Stderr,
        "SIGHUP ignored: this process is not ready yet",
        START,
    );
    child.wait_for_line(Source::Stdout, "ready pid=", START);
    child.signal(Signal::SIGTERM);
    assert_eq!(child.wait(EXIT).code(), Some(0), "{}", child.output());
}

#[test]
fn socket_activation_serves_the_socket_passed_in_listen_fds_and_hands_it_over() {
    use command_fds::{CommandFdExt, FdMapping};

    e2e_tests::adopt_orphans();
    let deploy = Deploy::new("activation", PROBE);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // As systemd does: the socket at descriptor 3, and LISTEN_PID set in the child to
    // its own pid (here by the shell, whose pid `exec` keeps).
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\"")
        .arg(deploy.binary())
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "probe")
        .env("BIND_ADDR", "127.0.0.1:1")
        .current_dir(deploy.dir());
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: listener.into(),
            child_fd: 3,
        }])
        .expect("map the socket");
    let mut old = Child::spawn_command(command).expect("start");
    drop(old.wait_for_line(Source::Stderr, "serving a passed socket", START));
    assert_eq!(
        listening_addr(&mut old),
        addr,
        "the passed socket, not BIND_ADDR"
    );
    old.wait_for_line(Source::Stdout, "ready pid=", START);
    assert_eq!(ask(addr).expect("served").0, old.pid());
    assert!(old.output().contains("source=systemd"), "{}", old.output());

    deploy.replace(&[("PROBE_VERSION", "2")]);
    old.signal(Signal::SIGHUP);
    assert_eq!(old.wait(EXIT).code(), Some(0), "{}", old.output());
    let successor = field(
        &old.wait_for_line(Source::Stdout, "version=2", START),
        "pid",
    );
    let mut successor = Orphan::new(successor);
    assert_eq!(
        ask(addr).expect("served"),
        (successor.pid(), "2".to_owned())
    );
    successor.signal(Signal::SIGTERM);
    assert_eq!(successor.wait(EXIT), 0);
}

#[test]
fn sockets_meant_for_another_process_are_ignored() {
    let deploy = Deploy::new("other", PROBE);
    let mut command = Command::new(deploy.binary());
    command.env("LISTEN_FDS", "1").env("LISTEN_PID", "1");
    let mut child = Child::spawn_command(command).expect("start");
    let addr = listening_addr(&mut child);
    child.wait_for_line(Source::Stdout, "ready pid=", START);
    assert_eq!(
        ask(addr).expect("served").0,
        child.pid(),
        "bound BIND_ADDR instead"
    );
    child.signal(Signal::SIGTERM);
    assert_eq!(child.wait(EXIT).code(), Some(0), "{}", child.output());
}

#[test]
fn bad_settings_exit_2_naming_the_variable() {
    for (variable, value) in [
        ("SHUTDOWN_HANDOFF_TIMEOUT", "abc"),
        ("SHUTDOWN_HANDOFF_TIMEOUT", "-1"),
        ("PID_FILE", ""),
    ] {
        let mut child = Child::spawn(PROBE, &[(variable, value)]).expect("start");
        let status = child.wait(EXIT);
        assert_eq!(status.code(), Some(2), "{}", child.output());
        let output = child.output();
        assert!(
            output.contains(&format!("{variable}=\"{value}\"")),
            "{output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
    let mut child =
        Child::spawn(PROBE, &[("LISTEN_FDS", "x"), ("LISTEN_PID", "1")]).expect("start");
    assert_eq!(child.wait(EXIT).code(), Some(2), "{}", child.output());
    assert!(
        child.output().contains("LISTEN_FDS=\"x\""),
        "{}",
        child.output()
    );
}
