//! Middleware that drains a gRPC service: RPCs in flight finish, new ones get
//! `UNAVAILABLE`.
//!
//! [`DrainLayer`] asks `shutdown-core`'s [`RequestGate`](shutdown_core::RequestGate)
//! about every RPC (its path, `/package.Service/Method`) and only maps the answer to
//! gRPC:
//!
//! - **Before the drain** the RPC goes to the inner service and is counted in flight
//!   until its **response stream has ended**: the guard moves into the response body
//!   ([`GuardedBody`](drain_tower::GuardedBody), `drain-tower`'s), which gives it up
//!   after the last frame (the trailers carrying `grpc-status`), on an error, or when
//!   hyper drops the body (the client cancelled, reset the stream, or went away).
//!   Unary, server-streaming, client-streaming and bidirectional RPCs alike: a stream
//!   holds the drain open until it ends ([`end_on_drain`](crate::end_on_drain) ends it
//!   at the start of the drain).
//! - **Once the drain has begun** the RPC is answered at once, without calling the
//!   handler, with a trailers-only `UNAVAILABLE` (see [`mapping`](crate::mapping)):
//!   HTTP `200`, `grpc-status: 14`, a `grpc-message`, `grpc-retry-pushback-ms`. A
//!   client with a retry policy on `UNAVAILABLE` retries it, on another instance once
//!   its connection got the server's `GOAWAY`.
//! - **Exempt paths** ([`DEFAULT_EXEMPT_PATHS`]: the gRPC health service's `Check` and
//!   `Watch`, and the HTTP probes) are neither counted nor rejected.
//! - `Connection: close` never applies on HTTP/2: connections are told to go away with
//!   a `GOAWAY` by [`serve`](crate::serve).
//!
//! The admitted path takes no lock and allocates nothing beyond what the inner service
//! does.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use drain_tonic::DrainLayer;
//! use http::{Request, Response};
//! use http_body::Body as _;
//! use shutdown_core::Shutdown;
//! use tonic::body::Body;
//! use tower::{Layer, Service, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shutdown = Shutdown::default();
//! let mut service = DrainLayer::new(shutdown.clone()).layer(service_fn(|_request: Request<Body>| async {
//!     Ok::<_, Infallible>(Response::new(Body::empty()))
//! }));
//! let call = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();
//!
//! let response = service.call(call("/helloworld.Greeter/SayHello")).await.unwrap();
//! assert_eq!(shutdown.in_flight(), 1, "until its stream has ended");
//! drop(response);
//! assert_eq!(shutdown.in_flight(), 0);
//!
//! shutdown.request_shutdown("example");
//! shutdown.drain().await;
//! let response = service.call(call("/helloworld.Greeter/SayHello")).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["grpc-status"], "14");
//! assert!(response.body().is_end_stream(), "trailers-only");
//! # }
//! ```

mod layer;
mod service;

pub use layer::{DEFAULT_EXEMPT_PATHS, Drain, DrainLayer};
pub use service::ResponseFuture;
