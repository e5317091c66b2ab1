//! Middleware that drains a poem application: requests in flight finish, new ones get
//! `503`.
//!
//! [`DrainLayer`] is a native poem [`Middleware`](poem::Middleware) (its endpoint is
//! [`Drain`]). It follows `shutdown-core`'s drain policy
//! ([`RequestGate`](shutdown_core::RequestGate)), mapped to `http` 1 by `drain-tower`,
//! so it behaves as `drain-tower`'s `DrainLayer` and the other adapters do (the rules
//! are in `docs/adapters.md`, and one contract suite checks every adapter):
//!
//! - **Before the drain** the request goes to the application, and its
//!   [`RequestGuard`](shutdown_core::RequestGuard) moves into the response body when the
//!   response is ready. It is released when the body ends, fails or is dropped, so a
//!   streaming or SSE response holds the drain open until its last byte. A handler that
//!   returns an error or panics releases it too. A client that hangs up does **not**
//!   cancel its handler under poem 3.1 (hyper sees the closed connection, but poem keeps
//!   polling the handler to its end): the guard is held until the handler returns or,
//!   past the drain deadline, until [`serve`](crate::serve) drops the connection.
//! - **Once the drain has begun** the request is answered at once, without calling the
//!   application: `503 Service Unavailable`, `Retry-After` (from
//!   [`ShutdownConfig::retry_after`](shutdown_core::ShutdownConfig::retry_after), default
//!   10 s), `Connection: close` on HTTP/1.x (never on HTTP/2, where the header is
//!   illegal), and [`REJECTION_MESSAGE`](shutdown_core::REJECTION_MESSAGE). On HTTP/1.x
//!   the rejected request's body is read and thrown away (up to
//!   [`DEFAULT_DISCARD_LIMIT`]) before the message is sent: hyper, under poem, closes
//!   such a connection with the unread input still in the socket, the kernel then sends
//!   a reset, and a client still sending its body would get a write error instead of
//!   the `503`. The head goes out at once.
//! - **From the moment of the trigger** (including the pre-stop delay) responses on
//!   HTTP/1.x carry `Connection: close` (exempt ones included), so keep-alive clients
//!   reconnect elsewhere; a `101 Switching Protocols` (a WebSocket handshake) keeps its
//!   `Connection: upgrade`.
//! - **Exempt paths** (default [`DEFAULT_EXEMPT_PATHS`]: `/health/live`,
//!   `/health/ready`, `/metrics`) are neither counted nor rejected.
//!
//! # Body type
//!
//! poem's [`Body`](poem::Body) is a boxed http-body body. The middleware converts the
//! application's body into that box, wraps it with `drain-tower`'s
//! [`GuardedBody`](drain_tower::GuardedBody) and boxes it again: one allocation per
//! admitted request, on top of the ones poem makes anyway. Nothing is locked.
//!
//! # Differences from what poem offers
//!
//! - **`Server::run_with_graceful_shutdown(ep, signal, timeout)`** stops accepting the
//!   moment `signal` resolves and then waits for open connections, for at most `timeout`
//!   when it is `Some`. It has no notion of in-flight requests, answers nothing with
//!   `503`, and with `None` a client that keeps its connection open keeps the process
//!   alive. With this middleware and [`serve`](crate::serve), the listener stays open
//!   during the drain (new requests get `503` rather than a refused connection), the
//!   drain ends when the last response body has been sent or at the drain deadline, and
//!   only then is the server told to stop, always with a timeout.
//! - **poem's `tower-compat`** cannot host `drain-tower`'s layer: it targets tower 0.4,
//!   puts the service behind a `Buffer` and hands it poem's own request type.
//!
//! # Errors
//!
//! An error returned by the application (poem's `Route` returns `NotFoundError` for an
//! unknown path, for example) passes through unchanged, so `catch_error` and
//! `Tracing` placed outside still see it; the request's guard is released as the error
//! passes, and no `Connection: close` is added to it.
//!
//! # Example
//!
//! ```
//! use drain_poem::DrainLayer;
//! use poem::http::StatusCode;
//! use poem::test::TestClient;
//! use poem::{EndpointExt, Route, get, handler};
//! use shutdown_core::Shutdown;
//!
//! #[handler]
//! fn hello() -> &'static str {
//!     "hello"
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shutdown = Shutdown::default();
//! let app = Route::new()
//!     .at("/", get(hello))
//!     .with(DrainLayer::new(shutdown.clone()));
//! let client = TestClient::new(app);
//!
//! let response = client.get("/").send().await;
//! response.assert_status_is_ok();
//! assert_eq!(shutdown.in_flight(), 1, "the body is still to be sent");
//! response.assert_text("hello").await;
//! assert_eq!(shutdown.in_flight(), 0);
//!
//! shutdown.request_shutdown("example");
//! shutdown.drain().await;
//! let response = client.get("/").send().await;
//! response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
//! response.assert_header("retry-after", "10");
//! response.assert_header("connection", "close");
//! response.assert_text(shutdown_core::REJECTION_MESSAGE).await;
//! # }
//! ```

mod body;
mod endpoint;
mod layer;
#[cfg(test)]
mod tests;

pub use endpoint::Drain;
pub(crate) use endpoint::plain_response;
pub use layer::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, DrainLayer};
