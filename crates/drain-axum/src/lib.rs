#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::future::IntoFuture;
use std::io;
use std::pin::pin;

use axum::Router;
use shutdown_core::{Shutdown, ShutdownReport};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use drain_tower::{DEFAULT_EXEMPT_PATHS, Drain, DrainLayer, GuardedBody, Liveness, Readiness};

/// `/health/live` and `/health/ready` for `shutdown`: merge them into your router before
/// adding the [`DrainLayer`] (they are exempt from it by path).
///
/// Readiness answers `503` from the first moment of the shutdown; liveness stays `200`.
pub fn health_routes<S>(shutdown: Shutdown) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route_service("/health/ready", Readiness::new(shutdown))
        .route_service("/health/live", Liveness::new())
}

/// `/metrics`: the text of `drain-metrics`' Prometheus exporter (exempt from the
/// [`DrainLayer`] by path, so the last scrapes during the drain still work).
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub fn metrics_routes<S>(metrics: drain_metrics::prometheus::PrometheusMetrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::http::header::CONTENT_TYPE;
    let render = move || {
        let metrics = metrics.clone();
        async move {
            (
                [(CONTENT_TYPE, drain_metrics::prometheus::CONTENT_TYPE)],
                metrics.render(),
            )
        }
    };
    Router::new().route("/metrics", axum::routing::get(render))
}

/// Router helpers.
pub trait DrainRouterExt {
    /// Adds [`health_routes`] and wraps every route in a [`DrainLayer`] on `shutdown`.
    /// Call it last, after the routes it should cover.
    fn with_drain(self, shutdown: &Shutdown) -> Self;
}

impl<S> DrainRouterExt for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn with_drain(self, shutdown: &Shutdown) -> Self {
        self.merge(health_routes(shutdown.clone()))
            .layer(DrainLayer::new(shutdown.clone()))
    }
}

/// Serves `router` on `listener` until the shutdown is over, and returns the report.
///
/// - The listener stays open while the service drains: new requests reach the
///   [`DrainLayer`] and get `503` with `Retry-After`, not a refused connection.
/// - When the drain ends (the last request has finished, or `SHUTDOWN_TIMEOUT` has
///   passed), axum stops accepting and closes its connections; it is given
///   [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout)
///   for that, after which its remaining connections (a handler still running past the
///   deadline, a never-ending stream) are abandoned rather than waited for.
/// - Then background tasks are cancelled and the cleanup tasks run ([`Shutdown::run`]),
///   after the server has stopped; the report is returned.
///
/// Install the signal handlers (`shutdown-signal`) before calling it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError> {
    let addr = listener.local_addr().map_err(ServeError)?;
    info!(%addr, "listening on {addr}");
    let drained = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.drain().await;
        }
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(drained);
    let mut server = pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.map_err(ServeError)?,
        _ = shutdown.drain() => {
            let stop = shutdown.config().server_stop_timeout();
            match tokio::time::timeout(stop, &mut server).await {
                Ok(result) => result.map_err(ServeError)?,
                Err(_) => warn!(
                    timeout_ms = u64::try_from(stop.as_millis()).unwrap_or(u64::MAX),
                    "server did not close its connections in time; abandoning them"
                ),
            }
        }
    }
    info!("server stopped");
    Ok(shutdown.run().await)
}

/// The server failed before the shutdown could run.
#[derive(Debug)]
pub struct ServeError(io::Error);

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serving failed: {}", self.0)
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
