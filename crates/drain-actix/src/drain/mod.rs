//! Middleware that drains an actix-web application: requests in flight finish, new
//! ones get `503`.
//!
//! [`DrainLayer`] is a [`Transform`](actix_web::dev::Transform) for
//! [`App::wrap`](actix_web::App::wrap) (its service is [`Drain`]). It follows
//! `shutdown-core`'s drain policy ([`RequestGate`](shutdown_core::RequestGate), on the
//! shared [`Shutdown`](shutdown_core::Shutdown) handle), mapped to actix's types, so it
//! behaves as the other adapters do (the rules are in `docs/adapters.md`, and one
//! contract suite checks every adapter):
//!
//! - **Before the drain** the request goes to the application, and its guard moves into
//!   the response body ([`GuardedBody`]). It is released when the body has yielded its
//!   last chunk, fails or is dropped, so a streaming or SSE response (or a WebSocket,
//!   whose frames are the body of its `101` response) holds the drain open until its
//!   last byte or the deadline. A handler that returns an error or panics releases it
//!   too.
//! - **Once the drain has begun** the request is answered at once, without calling the
//!   application: `503 Service Unavailable`, `Retry-After` (from
//!   [`ShutdownConfig::retry_after`](shutdown_core::ShutdownConfig::retry_after), default
//!   10 s), `Connection: close` on HTTP/1.x (never on HTTP/2), and
//!   [`REJECTION_MESSAGE`](shutdown_core::REJECTION_MESSAGE). On HTTP/1.x the rejected
//!   request's body is read and thrown away (up to [`DEFAULT_DISCARD_LIMIT`], see
//!   [`RequestGate::with_discard_limit`](shutdown_core::RequestGate::with_discard_limit))
//!   before the message is sent: actix closes a connection whose request body was left unread, and closing
//!   with unread input makes the kernel send a reset, so a client still sending its body
//!   would get a write error instead of the `503`. The head goes out at once.
//! - **From the moment of the trigger** (including the pre-stop delay) responses on
//!   HTTP/1.x carry `Connection: close` (exempt ones included), so keep-alive clients
//!   reconnect elsewhere, and actix's workers have fewer idle connections to wait for
//!   when they stop; a `101 Switching Protocols` (a WebSocket handshake) keeps its
//!   connection.
//! - **Exempt paths** (default [`DEFAULT_EXEMPT_PATHS`]: `/health/live`,
//!   `/health/ready`, `/metrics`) are neither counted nor rejected.
//!
//! The response body is [`GuardedBody<B>`]: the application's body holding its guard,
//! or a rejection's message. The admitted path takes no lock and allocates nothing.
//!
//! # Actix specifics
//!
//! - **Workers.** `HttpServer` calls the application factory once per worker thread, so
//!   each worker has its own [`Drain`]; they share the handle's state, so build the
//!   [`DrainLayer`] (or the [`Shutdown`](shutdown_core::Shutdown)) outside the factory
//!   and clone it in.
//! - **`Connection: close`.** actix writes that header from the response head's
//!   connection type and drops one set in the header map; the middleware sets the
//!   connection type (and the header, for code that reads the map), and reads an
//!   upgrade from the connection type too.
//! - **A client that disconnects does not cancel the handler.** actix keeps running a
//!   handler after its client has gone (with the default
//!   `HttpServer::h1_allow_half_closed(true)`), so its guard is held until the handler
//!   returns or the drain deadline passes, where it counts as interrupted.
//!
//! # Differences from actix's own shutdown
//!
//! actix-web's `HttpServer` stops on `SIGTERM` (gracefully, bounded by
//! `shutdown_timeout`, default 30 s) and on `SIGINT`/`SIGQUIT` (at once). Its graceful
//! stop closes the listener first, so a new connection is refused rather than told to
//! retry, keep-alive clients are not told to go elsewhere, nothing tracks a streaming
//! body, and there is no readiness signal. This middleware counts requests with their
//! bodies and answers `503` + `Retry-After` while the listener stays open;
//! [`serve`](crate::serve) stops the server only once the drain has ended.
//!
//! # Example
//!
//! ```
//! use actix_web::http::StatusCode;
//! use actix_web::{App, test, web};
//! use drain_actix::DrainLayer;
//! use shutdown_core::Shutdown;
//!
//! # #[actix_web::main]
//! # async fn main() {
//! let shutdown = Shutdown::default();
//! let app = test::init_service(
//!     App::new()
//!         .wrap(DrainLayer::new(shutdown.clone()))
//!         .route("/", web::get().to(|| async { "hello" })),
//! )
//! .await;
//!
//! let response = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(shutdown.in_flight(), 1, "the body is still to be sent");
//! assert_eq!(test::read_body(response).await, "hello");
//! assert_eq!(shutdown.in_flight(), 0);
//!
//! shutdown.request_shutdown("example");
//! shutdown.drain().await;
//! let response = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers().get("retry-after").unwrap(), "10");
//! assert_eq!(response.headers().get("connection").unwrap(), "close");
//! # }
//! ```

mod body;
mod layer;
mod service;

pub use body::GuardedBody;
pub use layer::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, DrainLayer};
pub use service::{Drain, ResponseFuture};
