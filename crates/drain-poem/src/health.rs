//! Readiness and liveness endpoints, and a [`Route`] that mounts both.
//!
//! Nest [`health_routes`] at `/health` (or mount [`Readiness`] at `/health/ready` and
//! [`Liveness`] at `/health/live`): the paths [`Drain`](crate::Drain) exempts by
//! default. They answer the same way as `drain-tower`'s services, whose responses they
//! reuse:
//!
//! - `Readiness` answers `200 ready` while the service runs and `503 shutting down`
//!   from the first moment of the shutdown, through the pre-stop delay: that takes the
//!   instance out of a load balancer's rotation before it starts refusing requests.
//! - `Liveness` answers `200 alive` until the process exits: a draining service is not
//!   dead, and an orchestrator that restarted it would cut the drain short.
//!
//! Both answer any method, with `Cache-Control: no-store`.
//!
//! ```
//! use poem::http::StatusCode;
//! use poem::test::TestClient;
//! use poem::Route;
//! use shutdown_core::Shutdown;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shutdown = Shutdown::default();
//! let app = Route::new().nest("/health", drain_poem::health_routes(shutdown.clone()));
//! let client = TestClient::new(app);
//! client.get("/health/ready").send().await.assert_status_is_ok();
//!
//! shutdown.request_shutdown("example");
//! let ready = client.get("/health/ready").send().await;
//! ready.assert_status(StatusCode::SERVICE_UNAVAILABLE);
//! ready.assert_text("shutting down\n").await;
//! client.get("/health/live").send().await.assert_status_is_ok();
//! # }
//! ```

use std::io;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use poem::{Body, Endpoint, Request, Response, Result, Route};
use shutdown_core::Shutdown;

/// A [`Route`] with [`Liveness`] at `/live` and [`Readiness`] at `/ready`: nest it at
/// `/health` (`Route::new().nest("/health", health_routes(shutdown))`).
pub fn health_routes(shutdown: Shutdown) -> Route {
    Route::new()
        .at("/live", Liveness::new())
        .at("/ready", Readiness::new(shutdown))
}

/// `/health/ready`: `200` while running, `503` once the shutdown is triggered.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: drain_tower::Readiness,
}

impl Readiness {
    /// Reports the readiness of `shutdown`.
    pub fn new(shutdown: Shutdown) -> Self {
        Self {
            inner: drain_tower::Readiness::new(shutdown),
        }
    }
}

impl Endpoint for Readiness {
    type Output = Response;

    async fn call(&self, _request: Request) -> Result<Response> {
        Ok(from_tower(self.inner.response()))
    }
}

/// `/health/live`: `200` for as long as the process answers at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness {
    inner: drain_tower::Liveness,
}

impl Liveness {
    /// A liveness endpoint.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Endpoint for Liveness {
    type Output = Response;

    async fn call(&self, _request: Request) -> Result<Response> {
        Ok(from_tower(self.inner.response()))
    }
}

/// `drain-tower`'s response as a poem one, keeping the body's exact size (so the answer
/// has a `Content-Length`).
fn from_tower(response: poem::http::Response<Full<Bytes>>) -> Response {
    let (parts, body) = response.into_parts();
    let body = BoxBody::new(body.map_err(|never| -> io::Error { match never {} }));
    let mut response = Response::builder()
        .status(parts.status)
        .body(Body::from(body));
    *response.headers_mut() = parts.headers;
    response
}

#[cfg(test)]
mod tests {
    use poem::http::{Method, StatusCode};
    use poem::test::TestClient;

    use super::*;

    #[tokio::test]
    async fn readiness_turns_503_at_the_trigger_and_liveness_stays_200() {
        let shutdown = Shutdown::default();
        let client = TestClient::new(Route::new().nest("/health", health_routes(shutdown.clone())));

        let ready = client.get("/health/ready").send().await;
        ready.assert_status_is_ok();
        ready.assert_header("cache-control", "no-store");
        let body = BoxBody::from(ready.0.into_body());
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            Some(6),
            "a known length, for Content-Length"
        );
        assert_eq!(body.collect().await.expect("body").to_bytes(), "ready\n");

        shutdown.request_shutdown("test");
        for method in [Method::GET, Method::HEAD, Method::POST] {
            let ready = client.request(method.clone(), "/health/ready").send().await;
            ready.assert_status(StatusCode::SERVICE_UNAVAILABLE);
            let live = client.request(method, "/health/live").send().await;
            live.assert_status_is_ok();
        }
        client
            .get("/health/live")
            .send()
            .await
            .assert_text("alive\n")
            .await;
    }
}
