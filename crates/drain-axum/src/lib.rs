#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use shutdown_core::{Shutdown, ShutdownReport};
use tokio::net::TcpListener;
use tower_service::Service;
use tracing::{debug, error, info, warn};

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
    ///
    /// This is axum's per-route layering (`Router::layer`): it works on a router that
    /// still waits for its state, and with any way of serving. It costs more per
    /// request than wrapping the whole router once, because axum clones each route's
    /// boxed service for every request (five more allocations per request, where
    /// [`drained`] served by [`serve`] adds none). To serve with [`serve`], use
    /// [`drained`].
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

/// The whole of `router`, plus [`health_routes`], behind one [`DrainLayer`] on
/// `shutdown`: what [`serve`] serves.
///
/// Give the router its state first (`Router::with_state`); layers added to it before
/// run inside the drain layer, so a rejected request never reaches them.
///
/// ```
/// use axum::{Router, routing::get};
/// use shutdown_core::Shutdown;
///
/// let shutdown = Shutdown::default();
/// let app = drain_axum::drained(Router::new().route("/", get(|| async { "hello" })), &shutdown);
/// assert!(app.shutdown().is_ready());
/// ```
pub fn drained(router: Router, shutdown: &Shutdown) -> Drained {
    Drained::new(router, DrainLayer::new(shutdown.clone()))
}

/// A router behind a [`DrainLayer`], wrapped as a whole rather than route by route:
/// from [`drained`] or [`Drained::new`], served by [`serve`] (or by `axum::serve` through
/// `axum::ServiceExt::into_make_service`).
///
/// Each request costs the layer's guard and one reference count for cloning the
/// service. Under [`serve`] nothing is allocated for it; as a `Service<Request>` (for
/// `axum::serve` or tests) the response body is boxed once into axum's `Body`.
#[derive(Clone)]
pub struct Drained {
    service: Drain<Router>,
}

impl Drained {
    /// `router`, plus [`health_routes`] on the layer's shutdown, behind `layer`: for a
    /// layer built from a configured `RequestGate` (exempt paths, `Retry-After`,
    /// discard limit).
    pub fn new(router: Router, layer: DrainLayer) -> Self {
        let shutdown = layer.gate().shutdown().clone();
        let router = router.merge(health_routes(shutdown));
        Self {
            service: tower_layer::Layer::layer(&layer, router),
        }
    }

    /// The shutdown this service counts its requests on.
    pub fn shutdown(&self) -> &Shutdown {
        self.service.gate().shutdown()
    }
}

impl fmt::Debug for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained").finish_non_exhaustive()
    }
}

impl Service<Request> for Drained {
    type Response = Response;
    type Error = Infallible;
    type Future = DrainedFuture;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.service, cx)
    }

    #[inline]
    fn call(&mut self, request: Request) -> DrainedFuture {
        DrainedFuture {
            inner: self.service.call(request),
        }
    }
}

pin_project! {
    /// Response future of [`Drained`].
    pub struct DrainedFuture {
        #[pin]
        inner: drain_tower::ResponseFuture<RouteFuture<Infallible>>,
    }
}

impl Future for DrainedFuture {
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(response.map(Body::new)))
    }
}

impl fmt::Debug for DrainedFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainedFuture").finish_non_exhaustive()
    }
}

/// Serves `app` on `listener` until the shutdown is over, and returns the report.
///
/// - The listener stays open while the service drains: new requests reach the
///   [`DrainLayer`] and get `503` with `Retry-After`, not a refused connection.
/// - When the drain ends (the last request has finished, or `SHUTDOWN_TIMEOUT` has
///   passed), the server stops accepting and closes its connections gracefully (idle
///   keep-alive connections at once, HTTP/2 with a `GOAWAY`); it is given
///   [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout)
///   for that, after which its remaining connections (a handler still running past the
///   deadline, a never-ending stream) are abandoned rather than waited for.
/// - Then background tasks are cancelled and the cleanup tasks run ([`Shutdown::run`]),
///   after the server has stopped; the report is returned.
///
/// Install the signal handlers (`shutdown-signal`) before calling it.
///
/// The accept loop is axum's (hyper's automatic HTTP/1 and HTTP/2 builder, upgrades
/// enabled, accept errors retried), except that the response bodies are handed to
/// hyper as they are instead of being boxed into axum's `Body`: one allocation fewer
/// per request. It does not provide axum's `ConnectInfo`; serve the [`Drained`]
/// service with `axum::serve` and `into_make_service_with_connect_info` where a
/// handler needs the peer address, and run the shutdown yourself.
///
/// # Errors
///
/// [`ServeError`] when the listener's address cannot be read or the server fails; the
/// shutdown is then triggered and run, so that cleanup still happens.
pub async fn serve(listener: TcpListener, app: Drained) -> Result<ShutdownReport, ServeError> {
    let shutdown = app.shutdown().clone();
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return Err(fail(&shutdown, error).await),
    };
    info!(%addr, "serving; the listener stays open until the drain has ended");
    // axum's own accept loop, without its conversion of every response body into a
    // boxed `Body`: hyper takes `GuardedBody<Body>` as it is.
    let connections = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // As axum: the CONNECT protocol, for WebSockets over HTTP/2.
    builder.http2().enable_connect_protocol();
    {
        let mut drained = pin!(shutdown.drain());
        loop {
            tokio::select! {
                _ = &mut drained => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let service = TowerToHyperService::new(app.service.clone());
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        let connection = connections.watch(connection);
                        tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                debug!(error = %error, "connection ended with an error");
                            }
                        });
                    }
                    // The peer gave up before the connection was accepted.
                    Err(error) if is_connection_error(&error) => {}
                    // Out of file descriptors, or worse: retry, as axum does.
                    Err(error) => {
                        error!(error = %error, "accepting a connection failed; retrying in 1 s");
                        tokio::select! {
                            _ = &mut drained => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                },
            }
        }
    }
    drop(listener);
    // Idle keep-alive connections close now, HTTP/2 ones get a GOAWAY, busy ones close
    // after their response.
    let stop = shutdown.config().server_stop_timeout();
    match tokio::time::timeout(stop, connections.shutdown()).await {
        Ok(()) => info!("server stopped"),
        Err(_) => warn!(
            timeout_ms = u64::try_from(stop.as_millis()).unwrap_or(u64::MAX),
            "the server did not close its connections in time; abandoning them"
        ),
    }
    Ok(shutdown.run().await)
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Triggers and runs the shutdown after a failure, so that the cleanup tasks still close
/// what they own.
async fn fail(shutdown: &Shutdown, error: io::Error) -> ServeError {
    error!(error = %error, "serving failed; shutting down");
    shutdown.request_shutdown(format!("the HTTP server failed: {error}"));
    shutdown.run().await;
    ServeError(error)
}

/// The server could not serve, or failed. The shutdown has run all the same (its
/// cleanup tasks included).
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
