#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::error::Error;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::task::Poll;

use shutdown_core::{Shutdown, Trigger};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// What a second signal does while the shutdown is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SecondSignal {
    /// Exit at once with `128 +` the signal's number (`130` for `SIGINT`, `143` for
    /// `SIGTERM`). The default.
    #[default]
    Exit,
    /// Exit at once with this code, whatever the signal.
    ExitWith(i32),
    /// Log it and carry on with the graceful shutdown.
    Ignore,
}

/// Which signals to listen to and what a second one does. [`install`] uses the
/// defaults: `SIGTERM` and `SIGINT` (Windows: all four console events), and
/// [`SecondSignal::Exit`].
///
/// ```no_run
/// # async fn run(shutdown: shutdown_core::Shutdown) -> Result<(), shutdown_signal::InstallError> {
/// use shutdown_signal::{SecondSignal, Signals};
///
/// Signals::new()
///     .with_sigquit(true)
///     .with_second_signal(SecondSignal::ExitWith(1))
///     .install(&shutdown)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Signals {
    sigquit: bool,
    second: SecondSignal,
}

impl Signals {
    /// `SIGTERM` and `SIGINT`; a second signal exits with `128 + signo`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also treat `SIGQUIT` as a graceful stop request (Unix only; ignored elsewhere).
    /// Off by default, so that `SIGQUIT` keeps its usual meaning to the process
    /// manager.
    pub fn with_sigquit(mut self, enabled: bool) -> Self {
        self.sigquit = enabled;
        self
    }

    /// Sets what a second signal does.
    pub fn with_second_signal(mut self, second: SecondSignal) -> Self {
        self.second = second;
        self
    }

    /// Registers the handlers now (so that a signal sent after this returns is never
    /// lost) and spawns the task that listens to them. The first signal triggers
    /// `shutdown` with [`Trigger::Signal`]; later ones act as [`SecondSignal`] says.
    ///
    /// Must be called from within a tokio runtime with I/O enabled.
    pub fn install(self, shutdown: &Shutdown) -> Result<SignalListener, InstallError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(InstallError {
                signal: None,
                source: io::Error::other("not called from within a tokio runtime"),
            });
        }
        let mut streams = platform::register(self.sigquit)?;
        let names: Vec<&str> = streams.iter().map(|s| s.name).collect();
        info!(signals = %names.join(", "), "signal handlers registered");
        let shutdown = shutdown.clone();
        let second = self.second;
        let task = tokio::spawn(async move {
            let mut received = 0u32;
            while let Some((name, number)) = next_signal(&mut streams).await {
                received += 1;
                if received == 1 {
                    info!(
                        signal = name,
                        "received signal; shutting down gracefully (send it again to exit at once)"
                    );
                    shutdown.trigger(Trigger::Signal(name));
                    continue;
                }
                let code = match second {
                    SecondSignal::Exit => 128 + number,
                    SecondSignal::ExitWith(code) => code,
                    SecondSignal::Ignore => {
                        warn!(
                            signal = name,
                            "received signal again; still shutting down gracefully"
                        );
                        continue;
                    }
                };
                error!(
                    signal = name,
                    exit_code = code,
                    in_flight = shutdown.in_flight(),
                    "received signal again; exiting at once without finishing the shutdown"
                );
                std::process::exit(code);
            }
        });
        Ok(SignalListener { task })
    }
}

/// Registers the default handlers and starts listening: shorthand for
/// `Signals::new().install(shutdown)`.
///
/// ```
/// use shutdown_core::{Shutdown, Trigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shutdown_signal::InstallError> {
/// let shutdown = Shutdown::default();
/// shutdown_signal::install(&shutdown)?;
/// assert!(shutdown.is_ready());
///
/// // SIGTERM or SIGINT would do this; so may the application itself.
/// shutdown.trigger(Trigger::Signal("SIGTERM"));
/// let report = shutdown.run().await;
/// assert_eq!(report.drain.trigger, Trigger::Signal("SIGTERM"));
/// # Ok(())
/// # }
/// ```
pub fn install(shutdown: &Shutdown) -> Result<SignalListener, InstallError> {
    Signals::new().install(shutdown)
}

/// The task listening for signals. Dropping it leaves the task running; call
/// [`stop`](Self::stop) to stop listening (the handlers stay registered with the
/// operating system, as tokio never unregisters them).
#[derive(Debug)]
pub struct SignalListener {
    task: JoinHandle<()>,
}

impl SignalListener {
    /// Stops listening.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// A signal handler could not be registered.
#[derive(Debug)]
pub struct InstallError {
    signal: Option<&'static str>,
    source: io::Error,
}

impl InstallError {
    /// The signal whose handler failed, when the failure was specific to one.
    pub fn signal(&self) -> Option<&'static str> {
        self.signal
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Some(signal) => write!(
                f,
                "could not register a handler for {signal}: {}",
                self.source
            ),
            None => write!(f, "could not register signal handlers: {}", self.source),
        }
    }
}

impl Error for InstallError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

struct Stream {
    name: &'static str,
    /// Added to 128 for the exit code of a second signal.
    number: i32,
    inner: platform::Inner,
}

/// The next signal on any stream, or `None` if every stream has closed.
async fn next_signal(streams: &mut [Stream]) -> Option<(&'static str, i32)> {
    poll_fn(|cx| {
        let mut open = 0;
        for stream in streams.iter_mut() {
            match stream.inner.poll_recv(cx) {
                Poll::Ready(Some(())) => return Poll::Ready(Some((stream.name, stream.number))),
                Poll::Ready(None) => {}
                Poll::Pending => open += 1,
            }
        }
        if open == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(unix)]
mod platform {
    use tokio::signal::unix::{SignalKind, signal};

    use super::{InstallError, Stream};

    pub(super) type Inner = tokio::signal::unix::Signal;

    pub(super) fn register(sigquit: bool) -> Result<Vec<Stream>, InstallError> {
        let mut wanted = vec![
            ("SIGTERM", 15, SignalKind::terminate()),
            ("SIGINT", 2, SignalKind::interrupt()),
        ];
        if sigquit {
            wanted.push(("SIGQUIT", 3, SignalKind::quit()));
        }
        wanted
            .into_iter()
            .map(|(name, number, kind)| {
                signal(kind)
                    .map(|inner| Stream {
                        name,
                        number,
                        inner,
                    })
                    .map_err(|source| InstallError {
                        signal: Some(name),
                        source,
                    })
            })
            .collect()
    }
}

#[cfg(windows)]
mod platform {
    use std::task::{Context, Poll};

    use tokio::signal::windows;

    use super::{InstallError, Stream};

    pub(super) enum Inner {
        CtrlC(windows::CtrlC),
        CtrlBreak(windows::CtrlBreak),
        CtrlClose(windows::CtrlClose),
        CtrlShutdown(windows::CtrlShutdown),
    }

    impl Inner {
        pub(super) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
            match self {
                Inner::CtrlC(s) => s.poll_recv(cx),
                Inner::CtrlBreak(s) => s.poll_recv(cx),
                Inner::CtrlClose(s) => s.poll_recv(cx),
                Inner::CtrlShutdown(s) => s.poll_recv(cx),
            }
        }
    }

    pub(super) fn register(_sigquit: bool) -> Result<Vec<Stream>, InstallError> {
        let error = |name| {
            move |source| InstallError {
                signal: Some(name),
                source,
            }
        };
        Ok(vec![
            Stream {
                name: "ctrl-c",
                number: 2,
                inner: Inner::CtrlC(windows::ctrl_c().map_err(error("ctrl-c"))?),
            },
            Stream {
                name: "ctrl-break",
                number: 2,
                inner: Inner::CtrlBreak(windows::ctrl_break().map_err(error("ctrl-break"))?),
            },
            Stream {
                name: "ctrl-close",
                number: 15,
                inner: Inner::CtrlClose(windows::ctrl_close().map_err(error("ctrl-close"))?),
            },
            Stream {
                name: "ctrl-shutdown",
                number: 15,
                inner: Inner::CtrlShutdown(
                    windows::ctrl_shutdown().map_err(error("ctrl-shutdown"))?,
                ),
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_outside_a_runtime_is_an_error_not_a_panic() {
        let shutdown = Shutdown::default();
        let err = install(&shutdown).expect_err("no runtime");
        assert_eq!(err.signal(), None);
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }
}
