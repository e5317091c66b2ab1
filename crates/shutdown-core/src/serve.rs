//! [`Shutdown::run_server`]: one way for every adapter to drive its server through the
//! sequence, and the [`ServeError`] they all return.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::report::millis;
use crate::{Shutdown, ShutdownReport, Trigger};

/// How much longer than
/// [`ShutdownConfig::server_stop_timeout`](crate::ShutdownConfig::server_stop_timeout),
/// rounded up to whole seconds, [`Shutdown::run_server`] waits for a server it has told
/// to stop before abandoning it: time for a server that enforces the stop bound itself
/// (actix-web counts it in whole seconds and checks its workers once a second) to
/// report back.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// The name under which a server failure is recorded:
/// [`Trigger::TaskFailed`]`{ task: "server", .. }`.
pub const SERVER_TASK: &str = "server";

impl Shutdown {
    /// Drives a server through the shutdown sequence and returns the report: what each
    /// adapter's `serve` does, for servers of any framework.
    ///
    /// `server` serves when polled and ends when the server has stopped; `stop` tells
    /// it to stop (stop accepting, close idle connections, let busy ones finish within
    /// [`ShutdownConfig::server_stop_timeout`](crate::ShutdownConfig::server_stop_timeout),
    /// which adapters pass on to frameworks that take a bound).
    ///
    /// 1. Serves until [`drain`](Self::drain) has ended: through the pre-stop delay and
    ///    the drain the listener stays open, so late clients reach the drain middleware
    ///    and get its `503` rather than a refused connection.
    /// 2. Calls `stop`, and waits for `server` for the stop timeout (rounded up to
    ///    whole seconds) plus [`STOP_GRACE`]; past that the server is abandoned (its
    ///    connections, a never-ending stream or a handler that ignores the request
    ///    token, are dropped with the runtime), with a warning.
    /// 3. Runs the rest of the sequence ([`run`](Self::run): background tasks, cleanup
    ///    after the server has stopped) and returns the report.
    ///
    /// A server that fails, before or while stopping, triggers the shutdown (if nothing
    /// has yet) as [`Trigger::TaskFailed`] named [`SERVER_TASK`]; the sequence still runs,
    /// so the cleanup tasks close what they own, and the error carries its report. A
    /// server that ends without an error before the drain has ended is recorded the same
    /// way, and its report returned.
    ///
    /// ```
    /// use std::io;
    /// use shutdown_core::Shutdown;
    /// use tokio::sync::oneshot;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::default();
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// // A server that serves until it is told to stop.
    /// let server = async move {
    ///     let _ = stopped.await;
    ///     Ok::<(), io::Error>(())
    /// };
    /// shutdown.request_shutdown("example");
    /// let report = shutdown
    ///     .run_server(server, move || {
    ///         let _ = stop.send(());
    ///     })
    ///     .await
    ///     .expect("the server stopped cleanly");
    /// assert_eq!(report.exit_code(), 0);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ServeError`] when `server` ends with an error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops `server` without running the rest of the sequence.
    pub async fn run_server<F>(
        &self,
        server: F,
        stop: impl FnOnce(),
    ) -> Result<ShutdownReport, ServeError>
    where
        F: Future<Output = io::Result<()>>,
    {
        let mut server = pin!(server);
        let early = tokio::select! {
            ended = &mut server => Some(ended),
            _ = self.drain() => None,
        };
        let result = match early {
            Some(ended) => {
                let cause = match &ended {
                    Ok(()) => "stopped before the drain ended".to_owned(),
                    Err(error) => error.to_string(),
                };
                error!(error = %cause, "the server ended on its own; shutting down");
                self.trigger(Trigger::TaskFailed {
                    task: SERVER_TASK.to_owned(),
                    error: cause,
                });
                ended
            }
            None => {
                let stop_timeout = self.config().server_stop_timeout();
                info!(
                    stop_timeout_ms = millis(stop_timeout),
                    "drain ended; stopping the server"
                );
                stop();
                let bound =
                    Duration::from_secs(whole_secs(stop_timeout)).saturating_add(STOP_GRACE);
                match tokio::time::timeout(bound, server).await {
                    Ok(Ok(())) => {
                        info!("server stopped");
                        Ok(())
                    }
                    Ok(Err(error)) => {
                        error!(error = %error, "the server failed while stopping");
                        Err(error)
                    }
                    Err(_) => {
                        warn!(
                            timeout_ms = millis(bound),
                            "the server did not stop in time; its remaining connections are abandoned"
                        );
                        Ok(())
                    }
                }
            }
        };
        let report = self.run().await;
        match result {
            Ok(()) => Ok(report),
            Err(error) => Err(ServeError {
                error,
                report: Box::new(report),
            }),
        }
    }
}

/// A listener of any framework that stops accepting at a handoff: what an adapter's
/// listener wrapper holds (`drain_axum::HandoffListener`, `drain_poem::HandoffAcceptor`).
///
/// Until [`Shutdown::handed_over`] resolves, [`accept`](Self::accept) accepts through the
/// listener; from then on it never returns, so the successor, which shares the socket,
/// accepts every new connection. For any other trigger nothing changes: the listener
/// stays open through the drain.
pub struct AcceptUntilHandoff<L> {
    listener: L,
    handed_over: Pin<Box<dyn Future<Output = ()> + Send>>,
    accepting: bool,
}

impl<L> AcceptUntilHandoff<L> {
    /// `listener`, until a handoff of `shutdown`.
    pub fn new(listener: L, shutdown: &Shutdown) -> Self {
        let shutdown = shutdown.clone();
        Self {
            listener,
            handed_over: Box::pin(async move { shutdown.handed_over().await }),
            accepting: true,
        }
    }

    /// The listener.
    pub fn get_ref(&self) -> &L {
        &self.listener
    }

    /// `false` once handed over.
    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    /// What `accept` gives for the listener, or, from the handoff on, nothing: the
    /// future never resolves. Cancel-safe if `accept`'s future is.
    pub async fn accept<'a, F: Future>(
        &'a mut self,
        accept: impl FnOnce(&'a mut L) -> F,
    ) -> F::Output {
        if self.accepting {
            tokio::select! {
                biased;
                () = &mut self.handed_over => {
                    self.accepting = false;
                    info!("handed over: no longer accepting (the successor does)");
                }
                accepted = accept(&mut self.listener) => return accepted,
            }
        }
        std::future::pending().await
    }
}

impl<L> fmt::Debug for AcceptUntilHandoff<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptUntilHandoff")
            .field("accepting", &self.accepting)
            .finish_non_exhaustive()
    }
}

/// `duration` in whole seconds, rounded up.
pub(crate) fn whole_secs(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// The server failed: an I/O error (binding or reading the listener, the framework's
/// own). The shutdown sequence has run all the same (its cleanup tasks included); its
/// report is here.
#[derive(Debug)]
pub struct ServeError {
    error: io::Error,
    report: Box<ShutdownReport>,
}

impl ServeError {
    /// The server's error.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }

    /// The report of the shutdown that followed the failure.
    pub fn report(&self) -> &ShutdownReport {
        &self.report
    }

    /// The error and the report.
    pub fn into_parts(self) -> (io::Error, ShutdownReport) {
        (self.error, *self.report)
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server failed: {}", self.error)
    }
}

impl Error for ServeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use super::*;
    use crate::ShutdownConfig;

    fn shutdown() -> Shutdown {
        Shutdown::new(
            ShutdownConfig::new()
                .with_drain_timeout(Duration::from_secs(30))
                .with_server_stop_timeout(Duration::from_secs(2)),
        )
    }

    #[test]
    fn stop_timeout_rounds_up_to_whole_seconds() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_secs(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs(Duration::MAX), u64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_is_stopped_only_once_the_drain_has_ended() {
        let shutdown = shutdown();
        let guard = shutdown.try_enter().expect("running");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = {
            let shutdown = shutdown.clone();
            async move {
                let _ = stopped.await;
                assert!(shutdown.is_draining(), "stopped after the drain");
                assert_eq!(shutdown.in_flight(), 0, "and after the last request");
                Ok(())
            }
        };
        let released = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.request_shutdown("test");
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(guard);
                pending::<()>().await;
            }
        };
        let report = tokio::select! {
            report = shutdown.run_server(server, move || {
                let _ = stop.send(());
            }) => report,
            () = released => unreachable!(),
        };
        let report = report.expect("a clean stop");
        assert_eq!(report.drain.drained(), 1);
        assert_eq!(report.exit_code(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_does_not_stop_is_abandoned_after_the_grace() {
        let shutdown = shutdown();
        shutdown.request_shutdown("test");
        let started = tokio::time::Instant::now();
        let report = shutdown
            .run_server(pending(), || {})
            .await
            .expect("abandoned, not failed");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2) + STOP_GRACE,
            "the stop timeout plus the grace"
        );
        let shutdown = Shutdown::new(
            ShutdownConfig::new().with_server_stop_timeout(Duration::from_millis(1200)),
        );
        shutdown.request_shutdown("test");
        let started = tokio::time::Instant::now();
        shutdown
            .run_server(pending(), || {})
            .await
            .expect("abandoned");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2) + STOP_GRACE,
            "rounded up to whole seconds"
        );
        assert!(report.is_clean());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_server_triggers_the_shutdown_and_still_runs_the_cleanup() {
        let shutdown = shutdown();
        let cleaned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        shutdown.register_cleanup("database", {
            let cleaned = cleaned.clone();
            move || cleaned.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        let error = shutdown
            .run_server(async { Err(io::Error::other("address in use")) }, || {
                unreachable!("a failed server is not stopped")
            })
            .await
            .expect_err("the server failed");
        assert_eq!(error.to_string(), "the server failed: address in use");
        assert_eq!(error.io_error().kind(), io::ErrorKind::Other);
        assert!(cleaned.load(std::sync::atomic::Ordering::SeqCst));
        let (_, report) = error.into_parts();
        assert_eq!(
            report.drain.trigger,
            Trigger::TaskFailed {
                task: SERVER_TASK.to_owned(),
                error: "address in use".to_owned(),
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_ends_on_its_own_is_recorded_as_a_failure() {
        let shutdown = shutdown();
        let report = shutdown
            .run_server(async { Ok(()) }, || unreachable!("it has already stopped"))
            .await
            .expect("no error to return");
        assert!(matches!(
            report.drain.trigger,
            Trigger::TaskFailed { ref task, .. } if task == SERVER_TASK
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_trigger_is_kept_when_the_server_then_fails() {
        let shutdown = shutdown();
        shutdown.request_shutdown("deploy");
        let guard = shutdown.try_enter();
        let (fail, failed) = tokio::sync::oneshot::channel::<()>();
        let server = async move {
            let _ = failed.await;
            Err(io::Error::other("accept loop died"))
        };
        let trigger = async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = fail.send(());
            drop(guard);
            pending::<()>().await;
        };
        let error = tokio::select! {
            result = shutdown.run_server(server, || {}) => result.expect_err("failed"),
            () = trigger => unreachable!(),
        };
        assert_eq!(
            error.report().drain.trigger,
            Trigger::Requested("deploy".to_owned())
        );
    }
}
