//! Readiness and liveness endpoints for actix-web.
//!
//! [`health_routes`] mounts both at the paths the
//! [`DrainLayer`](crate::DrainLayer) middleware exempts by default:
//!
//! - `/health/ready` answers `200 ready` while the service runs and `503 shutting down`
//!   from the first moment of the shutdown, through the pre-stop delay: that is what
//!   takes the instance out of a load balancer's rotation before it starts refusing.
//! - `/health/live` answers `200 alive` until the process exits: a draining service is
//!   not dead, and an orchestrator that restarted it would cut the drain short.
//!
//! Both answer any method, with `Cache-Control: no-store`. [`readiness`] and
//! [`liveness`] build the responses for applications that route them their own way.

use actix_web::{HttpResponse, web};
use shutdown_core::{PlainResponse, Shutdown};

use crate::mapping;

/// The path of the readiness endpoint.
pub const READY_PATH: &str = "/health/ready";
/// The path of the liveness endpoint.
pub const LIVE_PATH: &str = "/health/live";

/// `/health/live` and `/health/ready` on `shutdown`, for
/// [`App::configure`](actix_web::App::configure). Call it inside the application
/// factory (once per worker) with a clone of the handle.
///
/// ```
/// use actix_web::http::StatusCode;
/// use actix_web::{App, test};
/// use shutdown_core::Shutdown;
///
/// # #[actix_web::main]
/// # async fn main() {
/// let shutdown = Shutdown::default();
/// let app = test::init_service(
///     App::new().configure(drain_actix::health_routes(shutdown.clone())),
/// )
/// .await;
/// let ready = || test::TestRequest::get().uri("/health/ready").to_request();
/// assert_eq!(test::call_service(&app, ready()).await.status(), StatusCode::OK);
///
/// shutdown.request_shutdown("example");
/// let response = test::call_service(&app, ready()).await;
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # }
/// ```
pub fn health_routes(shutdown: Shutdown) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .route(
                READY_PATH,
                web::route().to(move || std::future::ready(readiness(&shutdown))),
            )
            .route(
                LIVE_PATH,
                web::route().to(|| std::future::ready(liveness())),
            );
    }
}

/// The readiness response for the current state: `200 ready`, or `503 shutting down`
/// once the shutdown has been triggered (`shutdown-core`'s
/// [`PlainResponse::readiness`]).
pub fn readiness(shutdown: &Shutdown) -> HttpResponse {
    text(&PlainResponse::readiness(shutdown))
}

/// The liveness response: `200 alive` ([`PlainResponse::liveness`]).
pub fn liveness() -> HttpResponse {
    text(&PlainResponse::liveness())
}

fn text(plain: &PlainResponse<'static>) -> HttpResponse {
    mapping::response(plain, plain.body()).map_into_boxed_body()
}
