//! [`HandoffError`]: what could not be set up, naming the input.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use shutdown_core::ConfigError;

/// Why listening sockets could not be obtained, the restart could not be installed, or
/// readiness could not be reported. Every message names the variable, address, file
/// or descriptor at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoffError {
    /// `SHUTDOWN_HANDOFF_TIMEOUT` is malformed.
    Timeout(ConfigError),
    /// An environment variable (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`,
    /// `PID_FILE`, ...) is malformed.
    Env {
        /// The variable.
        variable: &'static str,
        /// Its value (lossily converted when not UTF-8).
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A descriptor passed in `LISTEN_FDS` is not a listening stream socket, or could
    /// not be taken.
    Inherited {
        /// The descriptor number.
        fd: i32,
        /// What is wrong with it.
        source: io::Error,
    },
    /// The inherited sockets were already taken by another [`Handoff`](crate::Handoff)
    /// in this process.
    AlreadyTaken,
    /// Binding the address failed.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// An inherited socket is not a TCP socket.
    NotTcp {
        /// The socket's name (`LISTEN_FDNAMES`).
        name: String,
        /// The error reading its address.
        source: io::Error,
    },
    /// The pid file could not be written.
    PidFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Telling the parent process that this one is ready failed.
    Ready(io::Error),
    /// The `SIGHUP` handler could not be registered (or no tokio runtime is running).
    Signal(io::Error),
    /// In-place restart needs Linux; on this platform it is unavailable (listeners are
    /// bound as usual and everything else works).
    Unavailable,
}

impl HandoffError {
    pub(crate) fn env(variable: &'static str, value: &str, problem: &'static str) -> Self {
        Self::Env {
            variable,
            value: value.to_owned(),
            problem,
        }
    }

    /// `true` for [`HandoffError::Unavailable`]: the platform has no in-place restart,
    /// which a service may log and carry on without.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable)
    }
}

impl From<ConfigError> for HandoffError {
    fn from(error: ConfigError) -> Self {
        Self::Timeout(error)
    }
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(error) => error.fmt(f),
            Self::Env {
                variable,
                value,
                problem,
            } => write!(f, "{variable}={value:?}: {problem}"),
            Self::Inherited { fd, source } => {
                write!(f, "LISTEN_FDS: descriptor {fd} cannot be served: {source}")
            }
            Self::AlreadyTaken => {
                f.write_str("the inherited listening sockets were already taken by another Handoff")
            }
            Self::Bind { addr, source } => write!(f, "binding {addr}: {source}"),
            Self::NotTcp { name, source } => {
                write!(f, "inherited socket {name:?} is not a TCP socket: {source}")
            }
            Self::PidFile { path, source } => {
                write!(
                    f,
                    "PID_FILE={:?}: cannot write it: {source}",
                    path.display()
                )
            }
            Self::Ready(source) => {
                write!(
                    f,
                    "could not tell the parent process this one is ready: {source}"
                )
            }
            Self::Signal(source) => write!(f, "could not register the SIGHUP handler: {source}"),
            Self::Unavailable => f.write_str(
                "in-place restart on SIGHUP is unavailable on this platform (Linux only)",
            ),
        }
    }
}

impl Error for HandoffError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Timeout(error) => Some(error),
            Self::Inherited { source, .. }
            | Self::Bind { source, .. }
            | Self::NotTcp { source, .. }
            | Self::PidFile { source, .. }
            | Self::Ready(source)
            | Self::Signal(source) => Some(source),
            Self::Env { .. } | Self::AlreadyTaken | Self::Unavailable => None,
        }
    }
}
