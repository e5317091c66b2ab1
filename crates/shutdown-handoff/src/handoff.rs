//! [`Handoff`]: the listening sockets of a process, where they came from, and the
//! in-place restart that passes them on.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shutdown_core::Shutdown;
use tracing::{debug, info, warn};

use crate::config::HandoffConfig;
use crate::env::SocketSource;
use crate::error::HandoffError;

/// The listening sockets of a service and its in-place restart: cheap to clone (one
/// reference count), one per process.
///
/// 1. [`from_env`](Self::from_env) reads the configuration and takes the sockets passed
///    to this process, by systemd (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) or by
///    the process it succeeds;
/// 2. [`tcp_listener`](Self::tcp_listener) gives the passed socket of that name, or
///    binds the address as usual;
/// 3. [`install`](Self::install) registers the `SIGHUP` handler (early: before it, a
///    `SIGHUP` would kill the process);
/// 4. [`ready`](Self::ready), once the service is started, writes `PID_FILE` and tells
///    the process it succeeds (or systemd) that it serves. From then on a `SIGHUP`
///    restarts it in place.
///
/// On `SIGHUP` the binary at the path this process was started from (read again from
/// disk, so a replaced binary is what starts) is started with the same arguments,
/// working directory and environment, and with the listening sockets as descriptors
/// `3..` described by `LISTEN_FDS` and `LISTEN_FDNAMES`: it takes them through its own
/// [`from_env`](Self::from_env), the same code path as systemd's sockets. When it calls
/// [`ready`](Self::ready), this process triggers its shutdown with
/// [`Trigger::Handoff`](shutdown_core::Trigger::Handoff). If the successor exits first,
/// or is not ready within `SHUTDOWN_HANDOFF_TIMEOUT`, it is killed (if still running),
/// the reason is logged, and this process keeps serving; a later `SIGHUP` tries again.
/// One restart at a time: a `SIGHUP` during one is logged and ignored. A shutdown
/// triggered during a restart (a `SIGTERM`) kills the successor, which serves nothing
/// before it is ready, and this process drains as usual; the shutdown waits for the
/// successor to be gone (a background task of the [`Shutdown`]).
///
/// ```no_run
/// use shutdown_core::{Shutdown, ShutdownConfig};
/// use shutdown_handoff::Handoff;
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let handoff = Handoff::from_env()?;
///     let listener = handoff.tcp_listener("http", "127.0.0.1:8080".parse()?)?;
///     let shutdown = Shutdown::new(ShutdownConfig::from_env()?);
///     shutdown_signal::install(&shutdown)?;
///     handoff.install(&shutdown)?;
///
///     // ... open the database, build the application ...
///
///     handoff.ready()?;
///     // ... serve `listener`; on `Trigger::Handoff`, stop accepting and drain ...
///     let report = shutdown.run().await;
///     std::process::exit(report.exit_code());
/// }
/// ```
#[derive(Clone)]
pub struct Handoff {
    inner: Arc<Inner>,
}

struct Inner {
    config: HandoffConfig,
    program: Program,
    source: Option<SocketSource>,
    sockets: Mutex<Vec<Socket>>,
    #[cfg(target_os = "linux")]
    ready_pipe: Mutex<Option<std::os::fd::OwnedFd>>,
    ready: AtomicBool,
    installed: AtomicBool,
}

/// A listening socket this process knows, under its name.
struct Socket {
    name: String,
    /// Kept to pass on to a successor; dropped once the shutdown has begun, so that
    /// after the server closes its listener, new connections are refused at once.
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
    /// Given to the application (an inherited socket not taken yet is still passed on).
    taken: bool,
}

/// How this process was started: what a successor is started as.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// `argv[0]`, made absolute against the starting directory when it is a relative
    /// path; left as it is when it is a bare name (found through `PATH` at the restart).
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: PathBuf,
}

impl Program {
    fn current() -> Self {
        let mut args = std::env::args_os();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let path = match args.next() {
            Some(arg0) => {
                let path = PathBuf::from(arg0);
                if path.components().count() > 1 && path.is_relative() {
                    cwd.join(path)
                } else {
                    path
                }
            }
            // No argv[0]: the running image is all there is.
            None => std::env::current_exe().unwrap_or_default(),
        };
        Self {
            path,
            args: args.collect(),
            cwd,
        }
    }
}

impl Handoff {
    /// Reads [`HandoffConfig::from_env`] and takes the sockets passed to this process.
    ///
    /// # Errors
    ///
    /// A malformed variable, or a passed descriptor that is not a listening stream
    /// socket; [`HandoffError::AlreadyTaken`] if another `Handoff` of this process took
    /// them.
    pub fn from_env() -> Result<Self, HandoffError> {
        Self::new(HandoffConfig::from_env()?)
    }

    /// Like [`from_env`](Self::from_env), with a configuration built in code. The
    /// passed sockets are still read from the environment.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn new(config: HandoffConfig) -> Result<Self, HandoffError> {
        let program = Program::current();
        #[cfg(target_os = "linux")]
        {
            let pid = std::process::id();
            let parent = u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(0);
            let passed = crate::env::read(|name| std::env::var_os(name), pid, parent)?;
            let (source, sockets, ready_pipe) = match passed {
                None => (None, Vec::new(), None),
                Some(env) => {
                    let count = i32::try_from(env.names.len()).unwrap_or(i32::MAX);
                    let fds = crate::fds::take(count, env.ready_fd)?;
                    let sockets = env
                        .names
                        .into_iter()
                        .zip(fds.sockets)
                        .map(|(name, fd)| Socket {
                            name,
                            fd: Some(fd),
                            taken: false,
                        })
                        .collect::<Vec<_>>();
                    info!(
                        source = %Source(Some(env.source)),
                        sockets = sockets.len(),
                        "listening sockets passed to this process"
                    );
                    (Some(env.source), sockets, fds.ready)
                }
            };
            Ok(Self::with_parts(
                config, program, source, sockets, ready_pipe,
            ))
        }
        #[cfg(not(target_os = "linux"))]
        {
            if std::env::var_os(crate::env::LISTEN_FDS).is_some() {
                warn!(
                    "LISTEN_FDS is set, but passed sockets are unavailable on this platform; binding as usual"
                );
            }
            Ok(Self::with_parts(config, program, None, Vec::new()))
        }
    }

    fn with_parts(
        config: HandoffConfig,
        program: Program,
        source: Option<SocketSource>,
        sockets: Vec<Socket>,
        #[cfg(target_os = "linux")] ready_pipe: Option<std::os::fd::OwnedFd>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                program,
                source,
                sockets: Mutex::new(sockets),
                #[cfg(target_os = "linux")]
                ready_pipe: Mutex::new(ready_pipe),
                ready: AtomicBool::new(false),
                installed: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HandoffConfig {
        &self.inner.config
    }

    /// Where the passed sockets came from: systemd, the process this one succeeds, or
    /// `None` when nothing was passed (sockets are bound).
    pub fn source(&self) -> Option<SocketSource> {
        self.inner.source
    }

    /// The pid of the process this one succeeds, during an in-place restart.
    pub fn predecessor(&self) -> Option<u32> {
        match self.inner.source {
            Some(SocketSource::Parent(pid)) => Some(pid),
            _ => None,
        }
    }

    /// The listening TCP socket named `name`: the passed socket of that name (in
    /// `LISTEN_FDNAMES`; set `FileDescriptorName=` in a systemd socket unit), else the
    /// first passed socket not taken yet, else `addr` bound now. Non-blocking, ready
    /// for tokio, actix-web or poem. A successor finds it under the same name.
    ///
    /// # Errors
    ///
    /// `name` is empty or holds `:`; the passed socket is not TCP; binding failed.
    pub fn tcp_listener(&self, name: &str, addr: SocketAddr) -> Result<TcpListener, HandoffError> {
        if name.is_empty() || name.contains(':') {
            return Err(HandoffError::env(
                "LISTEN_FDNAMES",
                name,
                "a socket name must be non-empty and hold no ':'",
            ));
        }
        let mut sockets = self.sockets();
        #[cfg(target_os = "linux")]
        {
            let passed = sockets
                .iter()
                .position(|s| !s.taken && s.name == name)
                .or_else(|| sockets.iter().position(|s| !s.taken));
            if let Some(index) = passed {
                let socket = &mut sockets[index];
                let fd = socket
                    .fd
                    .as_ref()
                    .ok_or_else(|| HandoffError::Inherited {
                        fd: -1,
                        source: std::io::Error::other("released at the shutdown"),
                    })?
                    .try_clone()
                    .map_err(|source| HandoffError::Inherited { fd: -1, source })?;
                let listener = TcpListener::from(fd);
                let local = listener
                    .local_addr()
                    .map_err(|source| HandoffError::NotTcp {
                        name: socket.name.clone(),
                        source,
                    })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|source| HandoffError::Bind {
                        addr: local,
                        source,
                    })?;
                info!(
                    name,
                    passed_name = %socket.name,
                    addr = %local,
                    source = %Source(self.inner.source),
                    not_bound = %addr,
                    "serving a passed socket"
                );
                socket.taken = true;
                name.clone_into(&mut socket.name);
                return Ok(listener);
            }
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| HandoffError::Bind { addr, source })?;
        let bound = || -> std::io::Result<SocketAddr> {
            listener.set_nonblocking(true)?;
            listener.local_addr()
        };
        let local = bound().map_err(|source| HandoffError::Bind { addr, source })?;
        #[cfg(target_os = "linux")]
        {
            let fd = listener
                .try_clone()
                .map_err(|source| HandoffError::Bind { addr, source })?;
            sockets.push(Socket {
                name: name.to_owned(),
                fd: Some(fd.into()),
                taken: true,
            });
        }
        #[cfg(not(target_os = "linux"))]
        sockets.push(Socket {
            name: name.to_owned(),
            taken: true,
        });
        debug!(name, addr = %local, "bound a listening socket");
        Ok(listener)
    }

    /// Registers the `SIGHUP` handler and starts the task that restarts this process in
    /// place (see the type's docs). Restarts are refused, with a log line, until
    /// [`ready`](Self::ready). Call it early, from within a tokio runtime, once per
    /// process (later calls do nothing).
    ///
    /// # Errors
    ///
    /// [`HandoffError::Signal`] when the handler cannot be registered or no tokio
    /// runtime runs; [`HandoffError::Unavailable`] on platforms other than Linux.
    pub fn install(&self, shutdown: &Shutdown) -> Result<(), HandoffError> {
        #[cfg(target_os = "linux")]
        {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(HandoffError::Signal(std::io::Error::other(
                    "not called from within a tokio runtime",
                )));
            }
            if self.inner.installed.swap(true, Ordering::AcqRel) {
                warn!("the in-place restart is already installed; ignored");
                return Ok(());
            }
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(HandoffError::Signal)?;
            info!(
                timeout_ms = crate::millis(self.inner.config.timeout()),
                program = %self.inner.program.path.display(),
                "SIGHUP handler registered: in-place restart"
            );
            tokio::spawn(crate::restart::listen(
                self.clone(),
                shutdown.clone(),
                hangup,
            ));
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = shutdown;
            self.inner.installed.store(true, Ordering::Release);
            Err(HandoffError::Unavailable)
        }
    }

    /// Says this process now serves: writes `PID_FILE` (atomically), then tells the
    /// process it succeeds (which then stops accepting and drains) or, when started by
    /// systemd with `Type=notify`, systemd (`READY=1`). Call it once the service is
    /// started (database open, listener taken), right before serving. A `SIGHUP` from
    /// the call on restarts this process, so one sent as soon as the pid file names
    /// it is not refused. Later calls do nothing.
    ///
    /// # Errors
    ///
    /// The pid file cannot be written, or the process this one succeeds cannot be told
    /// (it has gone): the caller should exit, and the old process, if still there,
    /// keeps serving.
    pub fn ready(&self) -> Result<(), HandoffError> {
        // Restarts are accepted before anything announces this process, so that a
        // supervisor that sends `SIGHUP` as soon as the pid file names it (or as soon
        // as the predecessor exits) is not refused as "not ready yet".
        if self.inner.ready.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let announced = self.announce();
        if announced.is_err() {
            self.inner.ready.store(false, Ordering::Release);
        }
        announced
    }

    /// Writes the pid file, then tells the predecessor or systemd.
    fn announce(&self) -> Result<(), HandoffError> {
        if let Some(path) = self.inner.config.pid_file() {
            crate::pid_file::write(path, std::process::id())?;
        }
        #[cfg(target_os = "linux")]
        {
            let pipe = self
                .inner
                .ready_pipe
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match pipe {
                Some(pipe) => {
                    use std::io::Write;
                    std::fs::File::from(pipe)
                        .write_all(crate::env::READY_MESSAGE)
                        .map_err(HandoffError::Ready)?;
                    info!(
                        predecessor = self.predecessor(),
                        "ready; taking over from the previous process"
                    );
                }
                None => {
                    crate::restart::notify(&[sd_notify::NotifyState::Ready]);
                    info!("ready");
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        info!("ready");
        Ok(())
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub(crate) fn program(&self) -> &Program {
        &self.inner.program
    }

    fn sockets(&self) -> MutexGuard<'_, Vec<Socket>> {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Duplicates of the sockets to pass on, with their names.
    #[cfg(target_os = "linux")]
    pub(crate) fn sockets_to_pass(&self) -> std::io::Result<Vec<(String, std::os::fd::OwnedFd)>> {
        self.sockets()
            .iter()
            .filter_map(|s| s.fd.as_ref().map(|fd| (s, fd)))
            .map(|(s, fd)| Ok((s.name.clone(), fd.try_clone()?)))
            .collect()
    }

    /// Drops this process's spare copies of the sockets: the shutdown has begun, no
    /// successor will need them.
    #[cfg(target_os = "linux")]
    pub(crate) fn release_sockets(&self) {
        for socket in self.sockets().iter_mut() {
            socket.fd = None;
        }
    }
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.sockets().iter().map(|s| s.name.clone()).collect();
        f.debug_struct("Handoff")
            .field("config", &self.inner.config)
            .field("source", &self.inner.source)
            .field("sockets", &names)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Logs a [`SocketSource`].
struct Source(Option<SocketSource>);

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("bound"),
            Some(SocketSource::Systemd) => f.write_str("systemd"),
            Some(SocketSource::Parent(pid)) => write!(f, "previous process {pid}"),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A supervisor that sends `SIGHUP` as soon as the pid file names the process must
    /// not be refused as "not ready yet": the process accepts restarts before it
    /// announces itself. The pid file's temporary file is a FIFO here: writing it
    /// blocks until the test opens it, which the test does only once the process
    /// accepts restarts (or after a bound, to fail instead of hanging).
    #[test]
    fn restarts_are_accepted_before_the_pid_file_is_written() {
        let dir = std::env::temp_dir().join(format!("handoff-ready-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let pid_file = dir.join("service.pid");
        let temporary = dir.join(format!("service.pid.{}.tmp", std::process::id()));
        nix::unistd::mkfifo(&temporary, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let config = HandoffConfig::from_lookup(|name| {
            (name == crate::ENV_PID_FILE).then(|| pid_file.clone().into_os_string())
        })
        .expect("config");
        let handoff = Handoff::with_parts(config, Program::current(), None, Vec::new(), None);

        let reader = {
            let handoff = handoff.clone();
            let temporary = temporary.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let bound = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !handoff.is_ready() && std::time::Instant::now() < bound {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                // Until this open, `ready` cannot have written the pid file.
                let ready_before_written = handoff.is_ready();
                let mut fifo = std::fs::File::open(&temporary).expect("open the fifo");
                let mut written = String::new();
                fifo.read_to_string(&mut written).expect("read the fifo");
                (ready_before_written, written)
            })
        };
        // fsync of a FIFO fails: `ready` reports the pid file's error.
        let result = handoff.ready();
        let (ready_before_written, written) = reader.join().expect("reader");

        assert_eq!(written, format!("{}\n", std::process::id()));
        assert!(
            ready_before_written,
            "a SIGHUP sent once the pid file is written restarts the process"
        );
        let error = result.expect_err("a FIFO cannot be synced");
        assert!(error.to_string().starts_with("PID_FILE="), "{error}");
        assert!(
            !handoff.is_ready(),
            "not ready when ready() failed: the caller exits"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
