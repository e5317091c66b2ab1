//! Middleware that drains a service: requests in flight finish, new ones get `503`.
//!
//! [`DrainLayer`] follows `shutdown-core`'s drain policy
//! ([`RequestGate`](shutdown_core::RequestGate)), mapped to `http` 1 by
//! [`mapping`](crate::mapping); every adapter follows the same rules (`docs/adapters.md`,
//! checked by one contract suite). For every request it takes a
//! [`RequestGuard`](shutdown_core::RequestGuard) from the
//! [`Shutdown`](shutdown_core::Shutdown) handle:
//!
//! - **Before the drain** the request goes to the inner service, and the guard moves
//!   into the response body ([`GuardedBody`]) when the response is ready. It is released
//!   when the body ends, fails or is dropped, so a streaming or SSE response holds the
//!   drain open until its last byte. A handler that fails, panics (the future is dropped
//!   while unwinding) or is cancelled because the client went away releases it too.
//! - **Once the drain has begun** the request is answered at once, without calling the
//!   inner service: `503 Service Unavailable`, `Retry-After` (from
//!   [`ShutdownConfig::retry_after`](shutdown_core::ShutdownConfig::retry_after), default
//!   10 s), `Connection: close` on HTTP/1.x (never on HTTP/2, where the header is
//!   illegal), and a one-line text body. On HTTP/1.x the rejected request's body is
//!   read and thrown away (up to [`DEFAULT_DISCARD_LIMIT`], see
//!   [`RequestGate::with_discard_limit`](shutdown_core::RequestGate::with_discard_limit)) before the message is sent: closing a
//!   connection with unread input makes the kernel send a reset, and a client still
//!   sending its body would get a write error instead of the `503`. The head goes out
//!   at once; a body-less request allocates nothing for this.
//! - **From the moment of the trigger** (including the pre-stop delay) responses on
//!   HTTP/1.x carry `Connection: close` (exempt ones included), so keep-alive clients
//!   reconnect elsewhere instead of sending their next request to a server about to
//!   refuse it. A `101 Switching Protocols` or a response with `Connection: upgrade` (a
//!   WebSocket handshake) keeps its connection.
//! - **Exempt paths** (default [`DEFAULT_EXEMPT_PATHS`]: `/health/live`,
//!   `/health/ready`, `/metrics`) are neither counted nor rejected, so probes and the
//!   last scrapes keep working.
//!
//! The admitted path takes no lock and allocates nothing: one compare-exchange to
//! enter and one when the body ends, and no reference count (`tests/no_alloc.rs`
//! counts the allocations). Once the shutdown has been triggered, inserting
//! `Connection: close` may allocate the response's header map, and a rejection builds
//! its `503`: both only while shutting down.
//!
//! # Body type
//!
//! The response body is `GuardedBody<B>` over the inner body `B`, whose data type must
//! convert from `&'static [u8]` (true of `Bytes`, so of axum's `Body`, hyper's
//! `Incoming` and http-body-util's bodies): the `503` message is produced in that type,
//! so users keep their body type instead of boxing it or requiring `Default` (an empty
//! 503 body would give clients and logs nothing to read).
//!
//! # Differences from what you may use today
//!
//! - **axum's `with_graceful_shutdown`** stops accepting the moment its future resolves
//!   and then waits for connections with no deadline. It has no notion of in-flight
//!   requests, answers nothing with `503`, and a client that holds a connection open
//!   (SSE, a stalled upload) keeps the process alive. This middleware counts requests,
//!   including their bodies, and lets the server keep its listener open during the drain
//!   so new requests get a `503` rather than a refused connection; the deadline is
//!   `shutdown-core`'s.
//! - **actix-web's `shutdown_timeout`** bounds the wait, but new connections are
//!   refused as soon as the stop begins and nothing tells a keep-alive client to go
//!   elsewhere.
//! - **`tokio-graceful`** tracks tasks, not HTTP requests: it does not reject, does not
//!   follow the response body, and has no readiness signal.
//! - **tower's `ConcurrencyLimit`** bounds requests but cannot tell "shutting down"
//!   from "busy" and never answers `503` by itself.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use drain_tower::DrainLayer;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use shutdown_core::Shutdown;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shutdown = Shutdown::default();
//! let service = ServiceBuilder::new()
//!     .layer(DrainLayer::new(shutdown.clone()))
//!     .service_fn(|_request: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
//!     });
//!
//! let response = service.clone().oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(shutdown.in_flight(), 1, "the body is still to be sent");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "hello");
//! assert_eq!(shutdown.in_flight(), 0);
//!
//! shutdown.request_shutdown("example");
//! shutdown.drain().await;
//! let response = service.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()["retry-after"], "10");
//! assert_eq!(response.headers()["connection"], "close");
//! # }
//! ```

mod body;
mod define;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use body::GuardedBody;
pub use layer::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, Drain, DrainLayer};
pub use service::ResponseFuture;
