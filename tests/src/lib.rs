//! A harness for end-to-end tests that run real processes: start a binary with its
//! output captured line by line, wait for a line (always with a timeout), send it a
//! real signal, and wait for its exit (with a timeout, so that a bug fails the test
//! instead of hanging CI).
//!
//! [`http`] is a small blocking HTTP/1.1 client for those tests; [`long_lived`] has SSE
//! and WebSocket clients; [`scenarios`] is the
//! list of adapter scenarios, written once and run against every framework's probe
//! with [`adapter_scenarios!`](crate::adapter_scenarios).

pub mod http;
pub mod long_lived;
pub mod scenarios;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// How long after a child's exit its output is still awaited when another process
/// holds the streams open.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Logs of a probe or bench binary: plain text on standard error at `info`, the
/// stream [`Child`]'s tests read the lines from.
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
}

/// Makes `SIGHUP` trigger [`Trigger::Handoff`](shutdown_core::Trigger::Handoff) as a
/// successor's readiness would (`shutdown-handoff`'s own tests start real successors):
/// the adapter probes' handoff drain, without a second process.
pub fn handoff_on_sighup(shutdown: &shutdown_core::Shutdown) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            eprintln!("SIGHUP: {error}");
            std::process::exit(2);
        }
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if hangup.recv().await.is_some() {
            shutdown.trigger(shutdown_core::Trigger::Handoff { successor: 0 });
        }
    });
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Standard output.
    Stdout,
    /// Standard error (where the probes log).
    Stderr,
}

enum Event {
    Line(Source, String),
    Exited(std::io::Result<ExitStatus>),
}

/// A running child process with its output collected.
#[derive(Debug)]
pub struct Child {
    pid: nix::unistd::Pid,
    events: Receiver<Event>,
    lines: Vec<(Source, String)>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `program` with extra environment variables.
    pub fn spawn(program: &str, env: &[(&str, &str)]) -> std::io::Result<Self> {
        let mut command = Command::new(program);
        command.envs(env.iter().copied());
        Self::spawn_command(command)
    }

    /// Starts `command` (without `RUST_LOG`, with no input), its output captured.
    ///
    /// The exit is reported once both output streams have closed, or at most
    /// [`OUTPUT_GRACE`] after the process has exited: a process it started (an
    /// in-place restart's successor) may keep the streams open, and its lines are
    /// collected after the exit.
    pub fn spawn_command(mut command: Command) -> std::io::Result<Self> {
        command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let pid =
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
        let (tx, events) = mpsc::channel();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr"))?;
        let out_tx = tx.clone();
        let out = thread::spawn(move || forward(stdout, Source::Stdout, &out_tx));
        let err_tx = tx.clone();
        let err = thread::spawn(move || forward(stderr, Source::Stderr, &err_tx));
        thread::spawn(move || {
            let status = child.wait();
            // Every line is forwarded before the exit is reported, unless another
            // process holds the streams open.
            let grace = Instant::now() + OUTPUT_GRACE;
            while !(out.is_finished() && err.is_finished()) && Instant::now() < grace {
                thread::sleep(Duration::from_millis(5));
            }
            let _ = tx.send(Event::Exited(status));
        });
        Ok(Self {
            pid,
            events,
            lines: Vec::new(),
            status: None,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Waits until a line containing `needle` appears on `source`, and returns it.
    /// Panics, with everything the child printed, if it does not appear within
    /// `timeout` or the child exits first.
    pub fn wait_for_line(&mut self, source: Source, needle: &str, timeout: Duration) -> String {
        if let Some((_, line)) = self
            .lines
            .iter()
            .find(|(s, l)| *s == source && l.contains(needle))
        {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline) {
                Some(Event::Line(s, line)) => {
                    let found = s == source && line.contains(needle);
                    self.lines.push((s, line.clone()));
                    if found {
                        return line;
                    }
                }
                Some(Event::Exited(status)) => {
                    self.status = status.ok();
                    panic!(
                        "child exited ({:?}) before printing {needle:?}\n{}",
                        self.status,
                        self.output()
                    );
                }
                None => panic!(
                    "no line with {needle:?} within {timeout:?}\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Sends a real signal to the child.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid, signal).unwrap_or_else(|e| panic!("kill({signal}): {e}"));
    }

    /// Waits for the child to exit, collecting the rest of its output. Kills it and
    /// panics if it is still running after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline) {
                Some(Event::Line(s, line)) => self.lines.push((s, line)),
                Some(Event::Exited(status)) => {
                    let status = status.unwrap_or_else(|e| panic!("waiting for the child: {e}"));
                    self.status = Some(status);
                    return status;
                }
                None => {
                    let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
                    panic!(
                        "child still running after {timeout:?}; killed\n{}",
                        self.output()
                    );
                }
            }
        }
    }

    /// Every line collected so far, from both streams, in arrival order.
    pub fn lines(&self, source: Source) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(s, _)| *s == source)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    /// Everything collected so far, for failure messages.
    pub fn output(&self) -> String {
        self.lines
            .iter()
            .map(|(s, l)| format!("{}: {l}", if *s == Source::Stdout { "out" } else { "err" }))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn next_event(&self, deadline: Instant) -> Option<Event> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.events.recv_timeout(left).ok()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        }
    }
}

fn forward(stream: impl Read, source: Source, tx: &mpsc::Sender<Event>) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if tx.send(Event::Line(source, line)).is_err() {
            break;
        }
    }
}

/// A process this one did not start but adopts when its parent exits (an in-place
/// restart's successor): [`adopt_orphans`] makes this process their reaper, so that
/// [`wait`](Self::wait) can read their exit status once the parent has gone.
#[derive(Debug)]
pub struct Orphan {
    pid: nix::unistd::Pid,
    status: Option<nix::sys::wait::WaitStatus>,
}

/// Makes this process the reaper of its descendants whose parent exits (Linux
/// `PR_SET_CHILD_SUBREAPER`), for [`Orphan::wait`].
pub fn adopt_orphans() {
    nix::sys::prctl::set_child_subreaper(true)
        .unwrap_or_else(|errno| panic!("PR_SET_CHILD_SUBREAPER: {errno}"));
}

impl Orphan {
    /// The process `pid`, a descendant of this one.
    pub fn new(pid: u32) -> Self {
        Self {
            pid: nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
            status: None,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// `true` while the process exists (a zombie included).
    pub fn is_alive(&self) -> bool {
        self.status.is_none() && nix::sys::signal::kill(self.pid, None).is_ok()
    }

    /// Sends it a real signal.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid, signal).unwrap_or_else(|e| panic!("kill({signal}): {e}"));
    }

    /// Waits for its exit and returns its exit code (`128 + n` for death by signal
    /// `n`). Call it once its parent has exited ([`adopt_orphans`] first). Kills it and
    /// panics if it is still running after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        let deadline = Instant::now() + timeout;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status @ WaitStatus::Exited(_, code)) => {
                    self.status = Some(status);
                    return code;
                }
                Ok(status @ WaitStatus::Signaled(_, signal, _)) => {
                    self.status = Some(status);
                    return 128 + signal as i32;
                }
                Ok(_) => {}
                // Not adopted yet: its parent is still running.
                Err(nix::errno::Errno::ECHILD)
                    if nix::sys::signal::kill(self.pid, None).is_ok() => {}
                Err(errno) => panic!("waitpid({}): {errno}", self.pid),
            }
            if Instant::now() >= deadline {
                let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
                panic!(
                    "process {} still running after {timeout:?}; killed",
                    self.pid
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        }
    }
}

/// A service deployed for an in-place restart: a directory of its own holding the
/// service's binary (`service`, a symbolic link to the built program) and its pid file.
/// A test replaces "the binary" as a deployment does, with a script that runs the
/// program with some variables set; a `SIGHUP` then starts what is at the path.
/// Removed when dropped.
#[derive(Debug)]
pub struct Deploy {
    dir: PathBuf,
    program: PathBuf,
}

impl Deploy {
    /// A fresh directory for `test`, with `service` linked to `program`.
    pub fn new(test: &str, program: impl AsRef<Path>) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let program = program.as_ref().to_owned();
        let name = program
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("service");
        let dir = std::env::temp_dir().join(format!(
            "handoff-{}-{name}-{test}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("deploy directory");
        std::os::unix::fs::symlink(&program, dir.join("service")).expect("link the program");
        Self { dir, program }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The service's binary: what it is started as, and what a restart starts.
    pub fn binary(&self) -> PathBuf {
        self.dir.join("service")
    }

    /// Where the service writes its pid (`PID_FILE`).
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("service.pid")
    }

    /// The pid in the pid file.
    pub fn pid_in_file(&self) -> u32 {
        read_pid(&self.pid_file())
    }

    /// Replaces the binary, as a deployment does (written beside, renamed over), with a
    /// script that runs the program with `env` set.
    pub fn replace(&self, env: &[(&str, &str)]) {
        self.replace_with("", env);
    }

    /// Like [`replace`](Self::replace), the script running the shell commands
    /// `prelude` first (`sleep 1`: a binary slow to start). The script runs with the
    /// passed descriptors: a command that outlives it (one killed with the script)
    /// must not keep them, e.g. `sleep 1 3>&- 4>&-`.
    pub fn replace_with(&self, prelude: &str, env: &[(&str, &str)]) {
        let assignments: String = env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
        let script = format!(
            "#!/bin/sh\n{prelude}\n{assignments}exec '{}' \"$@\"\n",
            self.program.display()
        );
        let new = self.dir.join("service.new");
        std::fs::write(&new, script).expect("write the new binary");
        let mut permissions = std::fs::metadata(&new).expect("metadata").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&new, permissions).expect("make it executable");
        std::fs::rename(&new, self.binary()).expect("replace the binary");
    }

    /// A command that starts the service from its path, in its directory, with
    /// `PID_FILE` and `env` set.
    pub fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(self.binary());
        command
            .envs(env.iter().copied())
            .env("PID_FILE", self.pid_file())
            .current_dir(&self.dir);
        command
    }
}

impl Drop for Deploy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pid in a pid file.
pub fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {text:?}: {e}"))
}
