//! Readiness and liveness endpoints as tower services.
//!
//! Mount [`Readiness`] at `/health/ready` and [`Liveness`] at `/health/live` (the paths
//! [`DrainLayer`](crate::DrainLayer) exempts by default).
//!
//! - `Readiness` answers `200 ready` while the service runs and `503 shutting down`
//!   from the first moment of the shutdown, through the pre-stop delay: that is what
//!   takes the instance out of a load balancer's rotation before it starts refusing.
//! - `Liveness` answers `200 alive` until the process exits: a draining service is not
//!   dead, and an orchestrator that restarted it would cut the drain short.
//!
//! Both answer any method and path they are given, with `Cache-Control: no-store`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use shutdown_core::Shutdown;
use tower_service::Service;

/// `/health/ready`: `200` while running, `503` once the shutdown is triggered.
///
/// ```
/// use drain_tower::health::Readiness;
/// use http::{Request, StatusCode};
/// use shutdown_core::Shutdown;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = Shutdown::default();
/// let ready = Readiness::new(shutdown.clone());
/// let response = ready.clone().oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK);
///
/// shutdown.request_shutdown("example");
/// let response = ready.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Readiness {
    shutdown: Shutdown,
}

impl Readiness {
    /// Reports the readiness of `shutdown`.
    pub fn new(shutdown: Shutdown) -> Self {
        Self { shutdown }
    }

    /// The response for the current state, for adapters that answer it their own way.
    pub fn response(&self) -> Response<Full<Bytes>> {
        if self.shutdown.is_ready() {
            text(StatusCode::OK, "ready\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
    }
}

impl<B> Service<Request<B>> for Readiness {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        ready(Ok(self.response()))
    }
}

/// `/health/live`: `200` for as long as the process answers at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness;

impl Liveness {
    /// A liveness service.
    pub fn new() -> Self {
        Self
    }

    /// The response, for adapters that answer it their own way.
    pub fn response(&self) -> Response<Full<Bytes>> {
        text(StatusCode::OK, "alive\n")
    }
}

impl<B> Service<Request<B>> for Liveness {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        ready(Ok(self.response()))
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
