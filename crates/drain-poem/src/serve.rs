//! [`serve`] and [`serve_server`]: run a poem server through the whole shutdown
//! sequence.

use poem::listener::{Acceptor, Listener};
use poem::{IntoEndpoint, Server};
use shutdown_core::{ServeError, Shutdown, ShutdownReport};
use tokio::sync::oneshot;
use tracing::info;

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
/// It is [`Shutdown::run_server`] around poem's own server:
///
/// 1. serves, with the listener open, until [`Shutdown::drain`] has ended: through the
///    pre-stop delay and the drain, new requests reach the application, where
///    [`DrainLayer`](crate::DrainLayer) answers them with `503` instead of a refused
///    connection;
/// 2. tells poem to stop: the listener closes, idle keep-alive connections close,
///    and connections still busy (a request past the drain deadline, an endless
///    stream, a client that stalls) are dropped after
///    [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout)
///    (default 1 s; passed to poem as `Some(timeout)`, never `None`). Should poem not
///    return [`STOP_GRACE`](shutdown_core::STOP_GRACE) after that, the server is
///    abandoned, with a warning;
/// 3. runs [`Shutdown::run`]: background tasks are cancelled and awaited, cleanup tasks
///    run (the server has stopped by then), and the report is returned.
///
/// After a handoff (`shutdown-handoff`) the acceptor, wrapped in a [`HandoffAcceptor`](crate::HandoffAcceptor),
/// stops accepting at once; requests on the open connections are served normally with
/// `Connection: close` through the handoff grace, then poem closes what is left.
///
/// Apply [`DrainLayer`](crate::DrainLayer) to `app` yourself: this function does not
/// add it. Install the signal handlers (`shutdown-signal`) before calling it.
///
/// # Errors
///
/// [`ServeError`] when the server fails (with poem 3, only [`serve_server`] with a
/// [`Listener`] that cannot bind). The shutdown is then triggered
/// ([`Trigger::TaskFailed`](shutdown_core::Trigger::TaskFailed), task `"server"`) and
/// run, so cleanup tasks still run; the error carries the report.
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
    let acceptor = crate::HandoffAcceptor::new(acceptor, shutdown);
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
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    info!("serving; the listener stays open until the drain has ended");
    let running = server.run_with_graceful_shutdown(
        app,
        stopped,
        Some(shutdown.config().server_stop_timeout()),
    );
    shutdown
        .run_server(running, move || {
            let _ = stop.send(());
        })
        .await
}
