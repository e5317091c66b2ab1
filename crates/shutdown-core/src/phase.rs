//! [`Phase`] and [`Trigger`]: where the shutdown is, and what started it.

use std::fmt;

/// The phases of a service's life, in order. A phase never goes back.
///
/// Readiness turns false earlier than [`Phase::Draining`]: from the moment of the
/// [`Trigger`], through the pre-stop delay (see
/// [`Shutdown::is_ready`](crate::Shutdown::is_ready)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Serving. Also during the pre-stop delay that follows a trigger.
    Running = 0,
    /// New requests are turned away; requests in flight are finishing.
    Draining = 1,
    /// Background tasks are cancelled and awaited, then cleanup tasks run.
    CleaningUp = 2,
    /// The sequence is over and the report is ready.
    Finished = 3,
}

impl Phase {
    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            0 => Phase::Running,
            1 => Phase::Draining,
            2 => Phase::CleaningUp,
            _ => Phase::Finished,
        }
    }

    /// The phase's name in lower case, as logs and metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::CleaningUp => "cleaning_up",
            Phase::Finished => "finished",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started the shutdown. Only the first trigger is recorded; later ones are
/// ignored (and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// An operating-system signal, by name (`SIGTERM`, `SIGINT`, `ctrl-c`, ...).
    Signal(&'static str),
    /// A call to [`Shutdown::trigger`](crate::Shutdown::trigger) from the application,
    /// with its reason.
    Requested(String),
    /// A task spawned with [`Shutdown::spawn_supervised`](crate::Shutdown::spawn_supervised)
    /// returned an error or panicked.
    TaskFailed {
        /// The task's name.
        task: String,
        /// The error, or the panic message.
        error: String,
    },
    /// An in-place restart: a successor process has taken over the listening sockets
    /// and serves new connections, so this process only finishes what it has.
    Handoff {
        /// The successor's process id.
        successor: u32,
    },
}

impl Trigger {
    /// A short label for logs and metrics: `signal`, `requested`, `task_failed` or
    /// `handoff`.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Signal(_) => "signal",
            Trigger::Requested(_) => "requested",
            Trigger::TaskFailed { .. } => "task_failed",
            Trigger::Handoff { .. } => "handoff",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Signal(name) => write!(f, "signal {name}"),
            Trigger::Requested(reason) => write!(f, "requested: {reason}"),
            Trigger::TaskFailed { task, error } => write!(f, "task {task:?} failed: {error}"),
            Trigger::Handoff { successor } => write!(f, "handed over to successor pid {successor}"),
        }
    }
}
