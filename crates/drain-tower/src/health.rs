//! Readiness and liveness endpoints as tower services.
//!
//! Mount [`Readiness`] at `/health/ready` and [`Liveness`] at `/health/live` (the paths
//! [`DrainLayer`](crate::DrainLayer) exempts by default).
//!
//! They answer what `shutdown-core`'s [`PlainResponse::readiness`] and
//! [`PlainResponse::liveness`] say: `Readiness` `200 ready` while the service runs and
//! `503 shutting down` from the first moment of the shutdown (through the pre-stop
//! delay: that takes the instance out of a load balancer's rotation before it starts
//! refusing); `Liveness` `200 alive` until the process exits (a draining service is not
//! dead). Both answer any method and path they are given, with `Cache-Control:
//! no-store`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use shutdown_core::{PlainResponse, Shutdown};
use tower_service::Service;

use crate::mapping;

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
        text(&PlainResponse::readiness(&self.shutdown))
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
        text(&PlainResponse::liveness())
    }
}

/// Both answer any request at once with their `response()`.
macro_rules! answering_service {
    ($($service:ty),*) => {$(
        impl<B> Service<Request<B>> for $service {
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
    )*};
}

answering_service!(Readiness, Liveness);

fn text(plain: &PlainResponse<'static>) -> Response<Full<Bytes>> {
    mapping::response(
        plain,
        Full::new(Bytes::from_static(plain.body().as_bytes())),
    )
}
