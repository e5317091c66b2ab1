//! A real `redis-server` for tests (Debian's package `redis-server`): started on a free
//! port of 127.0.0.1 without persistence, killed when dropped.
//!
//! A machine without `redis-server` fails the test with the command that installs it:
//! the tests that need Redis never skip silently (`.ci/run` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis::{Connection, Msg};

/// Bound on the start of a server and on each command the helpers send.
const WAIT: Duration = Duration::from_secs(10);
/// A subscriber's thread ends after this long without a message.
const SUBSCRIBER_IDLE: Duration = Duration::from_secs(120);

/// A port of 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"))
}

/// A `redis-server` child process on 127.0.0.1.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let mut last = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            match Self::try_start(free_port()) {
                Ok(server) => return server,
                Err(error) => last = error,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Starts a server on `port` (one a client was already told about) and waits until
    /// it answers `PING`.
    pub fn start_on(port: u16) -> Self {
        Self::try_start(port).unwrap_or_else(|error| panic!("{error}"))
    }

    fn try_start(port: u16) -> Result<Self, String> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed; these tests need a real Redis: install \
                 Debian's package (`apt-get install redis-server`; `.ci/run` does it)"
            ),
            Err(error) => panic!("starting redis-server: {error}"),
        };
        let mut server = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                server.child = None;
                return Err(format!(
                    "redis-server on port {port} exited at start: {status}"
                ));
            }
            if server
                .try_connect()
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
                .is_ok()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {WAIT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn try_connect(&self) -> redis::RedisResult<Connection> {
        let conn =
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))?;
        conn.set_read_timeout(Some(WAIT))?;
        conn.set_write_timeout(Some(WAIT))?;
        Ok(conn)
    }

    /// A new connection; every read and write on it is bounded.
    pub fn connect(&self) -> Connection {
        self.try_connect()
            .unwrap_or_else(|error| panic!("connecting to redis-server: {error}"))
    }

    /// The ids of the connected clients, from `CLIENT LIST`, other than the connection
    /// that asks.
    pub fn client_ids(&self) -> Vec<u64> {
        let mut conn = self.connect();
        let own: u64 = redis::cmd("CLIENT")
            .arg("ID")
            .query(&mut conn)
            .unwrap_or_else(|error| panic!("CLIENT ID: {error}"));
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut conn)
            .unwrap_or_else(|error| panic!("CLIENT LIST: {error}"));
        list.lines()
            .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
            .filter(|id| *id != own)
            .collect()
    }

    /// How many times `command` (lower case, e.g. `quit`) has run, from
    /// `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connect())
            .unwrap_or_else(|error| panic!("INFO commandstats: {error}"));
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// A connection subscribed to `channel`, once Redis has confirmed the subscription.
    pub fn subscribe(&self, channel: &str) -> Subscriber {
        let mut conn = self.connect();
        redis::cmd("SUBSCRIBE")
            .arg(channel)
            .exec(&mut conn)
            .unwrap_or_else(|error| panic!("SUBSCRIBE {channel}: {error}"));
        // redis-rs skips the next message after a read that timed out (it takes it for
        // the late reply to a command): a thread reads without giving up early, until
        // the server closes the connection or nothing has come for a long time.
        conn.set_read_timeout(Some(SUBSCRIBER_IDLE))
            .unwrap_or_else(|error| panic!("setting the read timeout: {error}"));
        let (tx, messages) = mpsc::channel();
        thread::spawn(move || {
            while let Ok(value) = conn.recv_response() {
                let payload = Msg::from_value(&value).and_then(|m| m.get_payload::<String>().ok());
                if let Some(payload) = payload {
                    if tx.send(payload).is_err() {
                        return;
                    }
                }
            }
        });
        Subscriber { messages }
    }

    /// Stops the server (`SIGSTOP`): connections stay open, nothing is answered, like a
    /// host that hangs.
    pub fn freeze(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Resumes a frozen server (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("the server is running");
        let pid = i32::try_from(child.id()).expect("a pid fits in i32");
        kill(Pid::from_raw(pid), signal).unwrap_or_else(|error| panic!("{signal}: {error}"));
    }

    /// Kills the server (`SIGKILL`: its clients see their connections reset) and waits
    /// for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connection subscribed to a channel.
#[derive(Debug)]
pub struct Subscriber {
    messages: mpsc::Receiver<String>,
}

impl Subscriber {
    /// The payload of the next message, waiting at most `timeout`; `None` when none came.
    pub fn next(&mut self, timeout: Duration) -> Option<String> {
        self.messages.recv_timeout(timeout).ok()
    }

    /// Every message that arrives until none has come for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> Vec<String> {
        std::iter::from_fn(|| self.next(quiet)).collect()
    }
}
