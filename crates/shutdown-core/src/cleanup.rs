//! The cleanup registry: named tasks run in reverse order of registration, each under
//! its own timeout, each outcome recorded.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use tokio::time::Instant;

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What a cleanup task returns: `()` or `Result<(), E>` where `E: Display`.
///
/// An `Err` is recorded in the report as [`CleanupStatus::Failed`] with the error's
/// message.
pub trait CleanupResult: Send + 'static {
    /// The outcome, with the error rendered as text.
    fn into_result(self) -> Result<(), String>;
}

impl CleanupResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> CleanupResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// What [`Shutdown::register_cleanup`](crate::Shutdown::register_cleanup) accepts:
///
/// - a closure `FnOnce() -> R`, run on a thread of its own so that blocking calls
///   (closing a file, a synchronous client) cannot stall the runtime, and so that one
///   that hangs past its timeout is abandoned instead of holding up process exit;
/// - a closure `FnOnce() -> impl Future<Output = R>` (for example `|| async { ... }`),
///   run as a tokio task and aborted at its timeout;
///
/// where `R` is `()` or `Result<(), E: Display>`. The `Marker` parameter only tells the
/// two apart and is inferred. The trait is sealed: these closures are all it takes.
///
/// ```compile_fail
/// struct Mine;
/// impl<M> shutdown_core::IntoCleanup<M> for Mine {}
/// ```
pub trait IntoCleanup<Marker>: sealed::IntoBody<Marker> {}

impl<T: sealed::IntoBody<M>, M> IntoCleanup<M> for T {}

/// The conversion behind [`IntoCleanup`], out of users' reach: a trait of a private
/// module can be neither named nor implemented outside the crate.
mod sealed {
    use std::fmt;
    use std::future::Future;

    use super::{BoxFuture, CleanupResult};

    /// A cleanup task, ready to run.
    pub enum CleanupBody {
        Blocking(Box<dyn FnOnce() -> Result<(), String> + Send>),
        Async(Box<dyn FnOnce() -> BoxFuture + Send>),
    }

    impl fmt::Debug for CleanupBody {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                CleanupBody::Blocking(_) => "Blocking",
                CleanupBody::Async(_) => "Async",
            })
        }
    }

    /// Marks a cleanup task that is a plain closure.
    #[derive(Debug)]
    pub enum Blocking {}

    /// Marks a cleanup task that is a closure returning a future.
    #[derive(Debug)]
    pub enum Async {}

    pub trait IntoBody<Marker>: Send + 'static {
        fn into_body(self) -> CleanupBody;
    }

    impl<F, R> IntoBody<(Blocking, R)> for F
    where
        F: FnOnce() -> R + Send + 'static,
        R: CleanupResult,
    {
        fn into_body(self) -> CleanupBody {
            CleanupBody::Blocking(Box::new(move || self().into_result()))
        }
    }

    impl<F, Fut> IntoBody<(Async, Fut)> for F
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: CleanupResult,
    {
        fn into_body(self) -> CleanupBody {
            CleanupBody::Async(Box::new(move || {
                Box::pin(async move { self().await.into_result() })
            }))
        }
    }
}

use sealed::CleanupBody;

/// A registered cleanup task, waiting for its turn.
#[derive(Debug)]
pub(crate) struct CleanupTask {
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    body: CleanupBody,
}

/// How one cleanup task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CleanupStatus {
    /// It returned `()` or `Ok(())` within its timeout.
    Completed,
    /// It returned an error, recorded as text.
    Failed(String),
    /// It panicked; the panic message, when it had one.
    Panicked(String),
    /// It was still running at its timeout and was abandoned (async tasks are aborted;
    /// a blocking closure's thread is left to finish on its own).
    TimedOut,
}

impl CleanupStatus {
    /// `true` for [`CleanupStatus::Completed`].
    pub fn is_success(&self) -> bool {
        matches!(self, CleanupStatus::Completed)
    }

    /// A short label for logs and metrics: `completed`, `failed`, `panicked`, `timed_out`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CleanupStatus::Completed => "completed",
            CleanupStatus::Failed(_) => "failed",
            CleanupStatus::Panicked(_) => "panicked",
            CleanupStatus::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for CleanupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CleanupStatus::Completed => f.write_str("completed"),
            CleanupStatus::Failed(error) => write!(f, "failed: {error}"),
            CleanupStatus::Panicked(message) => write!(f, "panicked: {message}"),
            CleanupStatus::TimedOut => f.write_str("timed out"),
        }
    }
}

/// One cleanup task's line in the [`ShutdownReport`](crate::ShutdownReport).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupOutcome {
    /// The name it was registered under.
    pub name: String,
    /// How it ended.
    pub status: CleanupStatus,
    /// How long it ran (its timeout, when it timed out).
    pub duration: Duration,
}

impl CleanupTask {
    pub(crate) fn new<M>(name: String, timeout: Duration, cleanup: impl IntoCleanup<M>) -> Self {
        Self {
            name,
            timeout,
            body: cleanup.into_body(),
        }
    }

    /// Runs the task under its timeout. Never panics, whatever the task does.
    pub(crate) async fn run(self) -> CleanupOutcome {
        let started = Instant::now();
        let status = match self.body {
            CleanupBody::Blocking(f) => run_blocking(f, self.timeout).await,
            CleanupBody::Async(f) => run_async(f, self.timeout).await,
        };
        CleanupOutcome {
            name: self.name,
            status,
            duration: started.elapsed(),
        }
    }
}

/// Runs `f` on a detached thread of its own and waits for it on the blocking pool, for
/// at most `timeout` of real time. A closure that hangs is abandoned with its thread,
/// which cannot hold up process exit or the runtime's shutdown; and while it runs, the
/// waiter on the blocking pool keeps tokio's paused test clock from jumping to the
/// timeout.
async fn run_blocking(
    f: Box<dyn FnOnce() -> Result<(), String> + Send>,
    timeout: Duration,
) -> CleanupStatus {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("shutdown-cleanup".into())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f));
            // The receiver is gone only when the timeout has already been recorded.
            let _ = tx.send(outcome);
        });
    if let Err(error) = spawned {
        return CleanupStatus::Failed(format!("could not start a cleanup thread: {error}"));
    }
    match tokio::task::spawn_blocking(move || rx.recv_timeout(timeout)).await {
        Ok(Ok(Ok(Ok(())))) => CleanupStatus::Completed,
        Ok(Ok(Ok(Err(error)))) => CleanupStatus::Failed(error),
        Ok(Ok(Err(panic))) => CleanupStatus::Panicked(panic_message(panic.as_ref())),
        Ok(Err(RecvTimeoutError::Timeout)) => CleanupStatus::TimedOut,
        Ok(Err(RecvTimeoutError::Disconnected)) => {
            CleanupStatus::Panicked("cleanup thread ended without a result".into())
        }
        Err(join) => {
            CleanupStatus::Failed(format!("waiting for the cleanup thread failed: {join}"))
        }
    }
}

async fn run_async(f: Box<dyn FnOnce() -> BoxFuture + Send>, timeout: Duration) -> CleanupStatus {
    // Building the future may itself panic; so may polling it. A task catches both.
    let mut task = tokio::spawn(async move { f().await });
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(Ok(()))) => CleanupStatus::Completed,
        Ok(Ok(Err(error))) => CleanupStatus::Failed(error),
        Ok(Err(join)) if join.is_panic() => {
            CleanupStatus::Panicked(panic_message(join.into_panic().as_ref()))
        }
        Ok(Err(_)) => CleanupStatus::Failed("cleanup task was cancelled".into()),
        Err(_) => {
            task.abort();
            CleanupStatus::TimedOut
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic without a message".to_owned()
    }
}
