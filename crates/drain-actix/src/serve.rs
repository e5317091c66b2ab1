//! [`serve`] and [`serve_server`]: run an `HttpServer` under a [`Shutdown`] handle.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory};
use actix_web::{Error, HttpServer};
use shutdown_core::{Shutdown, ShutdownReport};
use tracing::{error, info, warn};

/// Added to the server's stop bound: actix checks its workers once a second, and a
/// worker that reaches its own `shutdown_timeout` at a check still has to close its
/// connections and report back.
pub const STOP_MARGIN: Duration = Duration::from_millis(500);

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
///   [`Drain`](crate::Drain) middleware and get `503` with `Retry-After`, not a refused
///   connection.
/// - When the drain ends (the last request has finished, or `SHUTDOWN_TIMEOUT` has
///   passed), the server is stopped gracefully (`ServerHandle::stop(true)`): the
///   listener closes and the workers finish writing their responses and close their
///   connections. That is bounded by
///   [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout),
///   rounded up to whole seconds, which is set as the server's `shutdown_timeout`
///   (replacing yours; actix counts it in seconds and checks its workers once a
///   second): past it the workers drop what is left, a handler still running past the
///   drain deadline included. The helper waits at most that plus [`STOP_MARGIN`], then
///   moves on regardless (a worker thread blocked by a synchronous handler cannot hold
///   the process).
/// - Then background tasks are cancelled and the cleanup tasks run ([`Shutdown::run`]),
///   after the server has stopped; the report is returned.
///
/// Run it on the runtime of `#[actix_web::main]` or `#[tokio::main]`; the future is not
/// `Send` in general (neither are actix's application factories).
///
/// # Errors
///
/// [`ServeError`] when the listener's address cannot be read, when actix refuses the
/// listener, or when the server fails to start or stops on its own with an error. The
/// shutdown is then triggered and run all the same, so that the cleanup tasks close
/// what they own; [`Shutdown::run`] returns its report at once.
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
    let stop_secs = whole_secs(shutdown.config().server_stop_timeout());
    // `HttpServer::listen` unwraps the address: read it first.
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return Err(fail(shutdown, ServeError::Listener(error)).await),
    };
    let server = match server
        .disable_signals()
        .shutdown_timeout(stop_secs)
        .listen(listener)
    {
        Ok(server) => server,
        Err(error) => return Err(fail(shutdown, ServeError::Listener(error)).await),
    };
    let mut server = server.run();
    let handle = server.handle();
    info!(%addr, "serving; the listener stays open until the drain has ended");

    tokio::select! {
        result = &mut server => match result {
            Ok(()) => {
                warn!("the server stopped before the drain ended");
                shutdown.request_shutdown("the HTTP server stopped");
            }
            Err(error) => return Err(fail(shutdown, ServeError::Server(error)).await),
        },
        _ = shutdown.drain() => {
            info!(stop_timeout_s = stop_secs, "drain ended; stopping the server");
            let bound = Duration::from_secs(stop_secs).saturating_add(STOP_MARGIN);
            let stop = async {
                let (result, ()) = tokio::join!(&mut server, handle.stop(true));
                result
            };
            match tokio::time::timeout(bound, stop).await {
                Ok(Ok(())) => info!("server stopped"),
                Ok(Err(error)) => return Err(fail(shutdown, ServeError::Server(error)).await),
                Err(_) => warn!(
                    timeout_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                    "the server did not stop in time; its remaining connections are abandoned"
                ),
            }
        }
    }
    Ok(shutdown.run().await)
}

/// Triggers and runs the shutdown after a failure, so that cleanup still happens.
async fn fail(shutdown: &Shutdown, error: ServeError) -> ServeError {
    error!(error = %error, "serving failed; shutting down");
    shutdown.request_shutdown(error.to_string());
    shutdown.run().await;
    error
}

/// `duration` in whole seconds, rounded up: the unit of `HttpServer::shutdown_timeout`.
fn whole_secs(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// Why [`serve`] or [`serve_server`] could not serve. The shutdown has run all the same.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The listener could not be served: its address could not be read, or actix could
    /// not make it non-blocking. Nothing was served.
    Listener(io::Error),
    /// The server failed to start (its accept loop or workers), or stopped with an
    /// error.
    Server(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Listener(error) => write!(f, "cannot serve the listener: {error}"),
            ServeError::Server(error) => write!(f, "the HTTP server failed: {error}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Listener(error) | ServeError::Server(error) => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_timeout_rounds_up_to_whole_seconds() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_secs(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn errors_name_what_failed() {
        let error = ServeError::Listener(io::Error::other("bad fd"));
        assert_eq!(error.to_string(), "cannot serve the listener: bad fd");
        assert!(std::error::Error::source(&error).is_some());
    }
}
