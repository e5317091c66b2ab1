//! [`serve`] and [`serve_server`]: run an `HttpServer` under a [`Shutdown`] handle.

use std::fmt;
use std::future::ready;
use std::net::TcpListener;

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory};
use actix_web::{Error, HttpServer};
use shutdown_core::{ServeError, Shutdown, ShutdownReport};
use tracing::info;

/// Serves the application made by `factory` on `listener` until the shutdown is over,
/// and returns the report. Shorthand for [`serve_server`] with `HttpServer::new(factory)`.
///
/// `factory` is actix's application factory: it is called once per worker thread.
///
/// # Errors
///
/// As [`serve_server`].
pub async fn serve<F, I, S, B>(
    listener: TcpListener,
    factory: F,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    serve_server(listener, HttpServer::new(factory), shutdown).await
}

/// Serves `server` (configured as you like: workers, keep-alive, timeouts) on
/// `listener` until the shutdown is over, and returns the report.
///
/// - actix's own signal handling is turned off (`HttpServer::disable_signals`): it
///   would stop the server on `SIGTERM` with no drain, and at once on `SIGINT`.
///   Install `shutdown-signal` on `shutdown` instead, before calling this.
/// - The listener stays open while the service drains: new requests reach the
///   [`DrainLayer`](crate::DrainLayer) middleware and get `503` with `Retry-After`, not a refused
///   connection.
/// - When the drain ends (the last request has finished, or `SHUTDOWN_TIMEOUT` has
///   passed), the server is stopped gracefully (`ServerHandle::stop(true)`): the
///   listener closes and the workers finish writing their responses and close their
///   connections. That is bounded by
///   [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout),
///   rounded up to whole seconds, which is set as the server's `shutdown_timeout`
///   (replacing yours; actix counts it in seconds and checks its workers once a
///   second): past it the workers drop what is left, a handler still running past the
///   drain deadline included. The helper waits at most that plus
///   [`STOP_GRACE`](shutdown_core::STOP_GRACE), then moves on regardless (a worker
///   thread blocked by a synchronous handler cannot hold the process). This is
///   [`Shutdown::run_server`] around actix's server.
/// - Then background tasks are cancelled and the cleanup tasks run ([`Shutdown::run`]),
///   after the server has stopped; the report is returned.
/// - After a handoff (`shutdown-handoff`) the server stops accepting
///   (`ServerHandle::pause`, which actix's accept thread applies a moment later): the
///   successor accepts; requests on the open connections are served normally with
///   `Connection: close` through the handoff grace.
///
/// Run it on the runtime of `#[actix_web::main]` or `#[tokio::main]`; the future is not
/// `Send` in general (neither are actix's application factories).
///
/// # Errors
///
/// [`ServeError`] when the listener's address cannot be read, when actix refuses the
/// listener, or when the server fails to start or stops on its own with an error. The
/// shutdown is then triggered
/// ([`Trigger::TaskFailed`](shutdown_core::Trigger::TaskFailed), task `"server"`) and
/// run all the same, so that the cleanup tasks close what they own; the error carries
/// the report.
pub async fn serve_server<F, I, S, B>(
    listener: TcpListener,
    server: HttpServer<F, I, S, B>,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    // actix counts the stop bound in whole seconds: rounded up.
    let stop = shutdown.config().server_stop_timeout();
    let stop_secs = stop
        .as_secs()
        .saturating_add(u64::from(stop.subsec_nanos() > 0));
    // `HttpServer::listen` unwraps the address: read it first.
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return shutdown.run_server(ready(Err(error)), || {}).await,
    };
    let server = match server
        .disable_signals()
        .shutdown_timeout(stop_secs)
        .listen(listener)
    {
        Ok(server) => server.run(),
        Err(error) => return shutdown.run_server(ready(Err(error)), || {}).await,
    };
    let handle = server.handle();
    info!(%addr, "serving; the listener stays open until the drain has ended");
    // At a handoff the successor accepts: stop accepting at once.
    let paused = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.handed_over().await;
            handle.pause().await;
            info!("handed over: no longer accepting (the successor does)");
            std::future::pending::<()>().await;
        }
    };
    let server = async move {
        tokio::select! {
            served = server => served,
            () = paused => Ok(()),
        }
    };
    shutdown
        .run_server(server, move || {
            // Sends the command now; the server's own future reports the end.
            drop(handle.stop(true));
        })
        .await
}
