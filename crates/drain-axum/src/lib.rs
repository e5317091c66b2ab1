#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::serve::{IncomingStream, Listener};
use pin_project_lite::pin_project;
use shutdown_core::{CancellationToken, Shutdown, ShutdownReport};
use tower_service::Service;
use tracing::{info, warn};

mod handoff;
mod long_lived;
pub mod ws;

pub use handoff::HandoffListener;
pub use long_lived::{OnDrain, sse};

pub use drain_tower::{DEFAULT_EXEMPT_PATHS, Drain, DrainLayer, GuardedBody, Liveness, Readiness};
pub use shutdown_core::ServeError;

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
    /// [`drained`] adds one). To serve with [`serve`], use [`drained`].
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
/// from [`drained`] or [`Drained::new`], served by [`serve`] (or by `axum::serve`, which
/// takes it as it takes a `Router`).
///
/// Each request costs the layer's guard, one reference count for cloning the service,
/// and one allocation: the response body is boxed into axum's `Body`, as `axum::serve`
/// requires.
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

    /// Gives each request the peer's [`ConnectInfo`](axum::extract::ConnectInfo) of type
    /// `C`, as `Router::into_make_service_with_connect_info` does: pass the result to
    /// [`serve`].
    pub fn into_make_service_with_connect_info<C>(self) -> IntoMakeServiceWithConnectInfo<Self, C> {
        axum::ServiceExt::<Request>::into_make_service_with_connect_info(self)
    }
}

/// A `Drained` is its own make-service, as a `Router` is: [`serve`] and `axum::serve`
/// take it as it is.
impl<L: Listener> Service<IncomingStream<'_, L>> for Drained {
    type Response = Self;
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: IncomingStream<'_, L>) -> Self::Future {
        ready(Ok(self.clone()))
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
        let response = std::task::ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(response.map(Body::new)))
    }
}

impl fmt::Debug for DrainedFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainedFuture").finish_non_exhaustive()
    }
}

/// Serves `make_service` on `listener` until the shutdown is over, and returns the
/// report: [`axum::serve()`] with its graceful shutdown, driven by
/// [`Shutdown::run_server`].
///
/// `listener` is anything `axum::serve` takes (a tokio `TcpListener` or `UnixListener`,
/// a TLS listener of yours, one tapped with `ListenerExt::tap_io`), and `make_service`
/// is the [`Drained`] router from [`drained`], or
/// [`Drained::into_make_service_with_connect_info`] where handlers read
/// [`ConnectInfo`](axum::extract::ConnectInfo).
///
/// - The listener stays open while the service drains: new requests reach the
///   [`DrainLayer`] and get `503` with `Retry-After`, not a refused connection.
/// - When the drain ends (the last request has finished, or `SHUTDOWN_TIMEOUT` has
///   passed), axum stops accepting and closes its connections gracefully (idle
///   keep-alive connections at once, HTTP/2 with a `GOAWAY`). axum itself waits for
///   them with no deadline; this waits
///   [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout),
///   then abandons what is left (a handler still running past the deadline, a
///   never-ending stream).
/// - Then background tasks are cancelled and the cleanup tasks run ([`Shutdown::run`]),
///   after the server has stopped; the report is returned.
/// - After a handoff (`shutdown-handoff`), wrap the listener in a [`HandoffListener`]:
///   it stops accepting at once; requests on the open connections are served normally
///   with `Connection: close` through the handoff grace, then axum closes what is left
///   (HTTP/2 with a `GOAWAY`).
///
/// Install the signal handlers (`shutdown-signal`) before calling it.
///
/// ```no_run
/// use std::net::SocketAddr;
///
/// use axum::extract::ConnectInfo;
/// use axum::{Router, routing::get};
/// use shutdown_core::Shutdown;
///
/// # async fn run(shutdown: Shutdown) -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
/// );
/// let app = drain_axum::drained(app, &shutdown);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let make_service = app.into_make_service_with_connect_info::<SocketAddr>();
/// let report = drain_axum::serve(listener, make_service, &shutdown).await?;
/// std::process::exit(report.exit_code());
/// # }
/// ```
///
/// # Errors
///
/// [`ServeError`] when the listener's address cannot be read; the shutdown is then
/// triggered and run, so that cleanup still happens.
pub async fn serve<L, M, S>(
    listener: L,
    make_service: M,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError>
where
    L: Listener,
    L::Addr: fmt::Debug,
    M: for<'a> Service<IncomingStream<'a, L>, Error = Infallible, Response = S> + Send + 'static,
    for<'a> <M as Service<IncomingStream<'a, L>>>::Future: Send,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    match listener.local_addr() {
        Ok(addr) => info!(
            ?addr,
            "serving; the listener stays open until the drain has ended"
        ),
        Err(error) => return shutdown.run_server(ready(Err(error)), || {}).await,
    }
    // axum waits for its connections with no deadline once told to stop: the stop
    // timeout is enforced here, as poem and actix-web enforce it themselves.
    let stop_timeout = shutdown.config().server_stop_timeout();
    let stop = CancellationToken::new();
    let serving = axum::serve(listener, make_service)
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    let stopped = stop.clone();
    let server = async move {
        tokio::select! {
            served = serving => served,
            () = async {
                stopped.cancelled().await;
                tokio::time::sleep(stop_timeout).await;
            } => {
                warn!(
                    stop_timeout_ms = u64::try_from(stop_timeout.as_millis()).unwrap_or(u64::MAX),
                    "connections still open after the stop timeout are abandoned"
                );
                Ok(())
            }
        }
    };
    shutdown.run_server(server, move || stop.cancel()).await
}
