//! [`serve`]: runs a poem server through the whole shutdown sequence.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

use poem::listener::{Acceptor, Listener};
use poem::{IntoEndpoint, Server};
use shutdown_core::{Shutdown, ShutdownReport, Trigger};
use tracing::{error, info, warn};

/// How much longer than [`ShutdownConfig::server_stop_timeout`] the helper waits for
/// poem to return before it abandons the server.
///
/// [`ShutdownConfig::server_stop_timeout`]: shutdown_core::ShutdownConfig::server_stop_timeout
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// Serves `app` on `acceptor` until the shutdown, then runs the rest of the sequence and
/// returns its report.
///
/// `acceptor` is already bound, so the caller knows the real address (port `0` works):
/// a [`TcpAcceptor`](poem::listener::TcpAcceptor) from
/// `TcpListener::bind(addr).into_acceptor().await?` (its
/// [`local_addr`](poem::listener::Acceptor::local_addr)), or from a tokio or std
/// listener with `TcpAcceptor::from_tokio` / `from_std`; TLS acceptors work the same.
///
/// In order:
///
/// 1. serves, with the listener open, until [`Shutdown::drain`] has ended: through the
///    pre-stop delay and the drain, new requests reach the application, where
///    [`Drain`](crate::Drain) answers them with `503` instead of a refused connection;
/// 2. tells poem to stop: the listener closes, idle keep-alive connections close,
///    and connections still busy (a request past the drain deadline, an endless
///    stream, a client that stalls) are dropped after
///    [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout)
///    (default 1 s; passed to poem as `Some(timeout)`, never `None`). Should poem not
///    return [`STOP_GRACE`] after that, the server is abandoned, with a warning;
/// 3. runs [`Shutdown::run`]: background tasks are cancelled and awaited, cleanup tasks
///    run (the server has stopped by then), and the report is returned.
///
/// Apply [`Drain`](crate::Drain) to `app` yourself: this function does not add it.
/// Install the signal handlers (`shutdown-signal`) before calling it.
///
/// # Errors
///
/// [`ServeError`] when the server fails (with poem 3, only
/// [`serve_server`] with a [`Listener`] that cannot bind). The shutdown is then
/// triggered ([`Trigger::TaskFailed`]) and run, so cleanup tasks still run; the error
/// carries the report.
///
/// # Cancel safety
///
/// Dropping the future stops accepting and drops the server, without running the
/// shutdown sequence.
pub async fn serve<A, E>(
    acceptor: A,
    app: E,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError>
where
    A: Acceptor + 'static,
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    serve_server(Server::new_with_acceptor(acceptor), app, shutdown).await
}

/// Like [`serve`], for a [`Server`] you configured (name, idle timeout, HTTP/2
/// settings), built on an acceptor or on a [`Listener`] that binds when it starts
/// (then the address is not known in advance, and a bind failure is a [`ServeError`]).
///
/// ```no_run
/// use poem::listener::{Acceptor, Listener, TcpListener};
/// use poem::{Route, Server};
/// use shutdown_core::Shutdown;
///
/// # async fn run(shutdown: Shutdown, app: Route) -> Result<(), Box<dyn std::error::Error>> {
/// let acceptor = TcpListener::bind("0.0.0.0:8080").into_acceptor().await?;
/// let server = Server::new_with_acceptor(acceptor).name("ingest");
/// let report = drain_poem::serve_server(server, app, &shutdown).await?;
/// std::process::exit(report.exit_code());
/// # }
/// ```
///
/// # Errors
///
/// See [`serve`].
pub async fn serve_server<L, A, E>(
    server: Server<L, A>,
    app: E,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError>
where
    L: Listener,
    L::Acceptor: 'static,
    A: Acceptor + 'static,
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let stop_timeout = shutdown.config().server_stop_timeout();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.drain().await;
            info!(
                timeout_ms = millis(stop_timeout),
                "drain ended; stopping the server"
            );
        }
    };
    let running = server.run_with_graceful_shutdown(app, signal, Some(stop_timeout));
    let abandon = async {
        shutdown.drain().await;
        tokio::time::sleep(stop_timeout.saturating_add(STOP_GRACE)).await;
    };
    let outcome = tokio::select! {
        outcome = running => outcome,
        () = abandon => {
            warn!(
                timeout_ms = millis(stop_timeout.saturating_add(STOP_GRACE)),
                "the server did not stop in time; abandoned"
            );
            Ok(())
        }
    };

    match outcome {
        Ok(()) => {
            // poem returns only after the signal, so the shutdown is under way; this is
            // for a server that stopped on its own all the same.
            if shutdown.request_shutdown("the poem server stopped") {
                warn!("the poem server stopped before the shutdown");
            }
            Ok(shutdown.run().await)
        }
        Err(source) => {
            error!(error = %source, "the poem server failed");
            shutdown.trigger(Trigger::TaskFailed {
                task: "poem server".to_owned(),
                error: source.to_string(),
            });
            let report = Box::new(shutdown.run().await);
            Err(ServeError { source, report })
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The server failed: an I/O error from poem (binding the listener). The shutdown
/// sequence has run; its report is here.
#[derive(Debug)]
pub struct ServeError {
    source: io::Error,
    report: Box<ShutdownReport>,
}

impl ServeError {
    /// The I/O error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// The report of the shutdown that followed the failure.
    pub fn report(&self) -> &ShutdownReport {
        &self.report
    }

    /// The I/O error and the report.
    pub fn into_parts(self) -> (io::Error, ShutdownReport) {
        (self.source, *self.report)
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the poem server failed: {}", self.source)
    }
}

impl Error for ServeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}
