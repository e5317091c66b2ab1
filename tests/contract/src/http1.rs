//! For harnesses over `http` 1 types (feature `http`): the mapping between the plain
//! [`Request`]/[`Response`] and `http`'s, and the contract's routes as a plain tower
//! [`service`] for adapters that wrap any tower service (tower, tonic):
//!
//! ```ignore
//! impl Adapter for Tower {
//!     async fn build(gate: RequestGate, routes: Routes) -> Self {
//!         let inner = http1::service(routes, gate.shutdown().clone(), health);
//!         Self { app: DrainLayer::from_gate(gate).layer(inner) }
//!     }
//!
//!     async fn send(&self, request: Request) -> Response {
//!         http1::send(&self.app, request).await
//!     }
//!     // ...
//! }
//! ```

use std::convert::Infallible;
use std::fmt::Display;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderValue, StatusCode, header};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use shutdown_core::{PlainResponse, Shutdown, UntilDrain};
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt, service_fn};

use crate::{Chunks, Method, Request, Response, Routes, Version};

/// The body of requests and responses in these harnesses.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// `body`, which cannot fail, boxed.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    body.map_err(|never: Infallible| -> io::Error { match never {} })
        .boxed_unsync()
}

/// A body of the chunks of `stream`.
pub fn stream_body<S>(stream: S) -> Body
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin + 'static,
{
    StreamBody::new(DataFrames(stream)).boxed_unsync()
}

/// A response of `status` with `text` as its body.
pub fn text(status: StatusCode, text: impl Into<String>) -> http::Response<Body> {
    let mut response = http::Response::new(boxed(Full::new(Bytes::from(text.into()))));
    *response.status_mut() = status;
    response
}

/// `request` as an `http` request.
pub fn to_http(request: Request) -> http::Request<Body> {
    let method = match request.method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
    };
    let version = match request.version {
        Version::Http10 => http::Version::HTTP_10,
        Version::Http11 => http::Version::HTTP_11,
        Version::Http2 => http::Version::HTTP_2,
    };
    let body = match request.body {
        Some(upload) => stream_body(upload),
        None => boxed(Empty::new()),
    };
    http::Request::builder()
        .method(method)
        .uri(request.path)
        .version(version)
        .body(body)
        .expect("a valid request")
}

/// `response` in plain values, its body unread.
pub fn from_http<B>(response: http::Response<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Unpin + 'static,
    B::Error: Display,
{
    let (parts, body) = response.into_parts();
    Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = value.to_str().expect("an ASCII header value");
                (name.as_str().to_owned(), value.to_owned())
            })
            .collect(),
        body: Box::pin(BodyChunks(body)),
    }
}

/// The adapter's health routes: the response for a path, `None` for any other path.
pub type Health = fn(&str, &Shutdown) -> Option<http::Response<Body>>;

/// The health routes answered with the policy's own [`PlainResponse`]s, for an
/// adapter with no HTTP health routes of its own (tonic, whose health is gRPC's).
pub fn plain_health(path: &str, shutdown: &Shutdown) -> Option<http::Response<Body>> {
    let plain = match path {
        "/health/ready" => PlainResponse::readiness(shutdown),
        "/health/live" => PlainResponse::liveness(),
        _ => return None,
    };
    let status = StatusCode::from_u16(plain.status()).expect("a valid status");
    let mut response = text(status, plain.body());
    for (name, value) in plain.headers() {
        let value = HeaderValue::from_str(value).expect("a valid header value");
        response.headers_mut().append(name, value);
    }
    Some(response)
}

/// The contract's routes as a plain tower service.
pub type Plain = BoxCloneService<http::Request<Body>, http::Response<Body>, io::Error>;

/// The contract's routes as a plain tower service, for an adapter's layer to wrap:
/// `health` answers the health routes (uncounted), [`handle`] the others.
pub fn service(routes: Routes, shutdown: Shutdown, health: Health) -> Plain {
    BoxCloneService::new(service_fn(move |request| {
        handle(routes.clone(), shutdown.clone(), health, request)
    }))
}

/// Sends `request` through `app`; a service error becomes [`failed`].
pub async fn send<S, B>(app: &S, request: Request) -> Response
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone,
    B: http_body::Body<Data = Bytes> + Unpin + 'static,
    B::Error: Display,
{
    match app.clone().oneshot(to_http(request)).await {
        Ok(response) => from_http(response),
        Err(_) => failed(),
    }
}

/// The contract's routes, `health` answering the health routes (uncounted).
/// `/drain-signal` and `/events` ask `shutdown` directly: a plain service has no
/// extractors.
///
/// # Errors
///
/// `/fail` fails, and so does `/upload` when its body does.
pub async fn handle(
    routes: Routes,
    shutdown: Shutdown,
    health: Health,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, io::Error> {
    if let Some(response) = health(request.uri().path(), &shutdown) {
        return Ok(response);
    }
    routes.called();
    match request.uri().path() {
        "/" => Ok(text(StatusCode::OK, "ok")),
        "/stream" => Ok(http::Response::new(stream_body(Box::pin(
            routes.stream_body(),
        )))),
        "/upgrade" => Ok(http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(boxed(Empty::new()))
            .expect("a valid response")),
        "/upload" => {
            let body = request.into_body().collect().await?.to_bytes();
            Ok(text(
                StatusCode::OK,
                format!("received {} bytes", body.len()),
            ))
        }
        "/wait" => {
            routes.released().await;
            Ok(text(StatusCode::OK, "done"))
        }
        "/fail" => Err(io::Error::other("the handler failed")),
        "/forever" => std::future::pending().await,
        "/drain-signal" => {
            shutdown.drain_signal().wait().await;
            Ok(text(StatusCode::OK, "drain began"))
        }
        "/events" => {
            let signal = shutdown.drain_signal();
            let last = Bytes::from(signal.shutdown_event().to_text());
            let events = SseData(Box::pin(routes.events_data()));
            let events = UntilDrain::new(events, &signal, Ok(last));
            let mut response = http::Response::new(stream_body(Box::pin(events)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            Ok(response)
        }
        _ => Ok(text(StatusCode::NOT_FOUND, "")),
    }
}

/// What a server sends for a service that failed: a `500` with no body.
pub fn failed() -> Response {
    from_http(text(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

/// A stream of chunks as a stream of data frames.
struct DataFrames<S>(S);

impl<S> Stream for DataFrames<S>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    type Item = Result<Frame<Bytes>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }
}

/// Each text as one SSE event, `data: <text>`.
struct SseData<S>(Pin<Box<S>>);

impl<S: Stream<Item = String>> Stream for SseData<S> {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|data| data.map(|data| Ok(Bytes::from(format!("data: {data}\n\n")))))
    }
}

/// An `http` body, chunk by chunk; trailers are skipped.
struct BodyChunks<B>(B);

impl<B> Chunks for BodyChunks<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, String>>> {
        loop {
            return match ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                None => Poll::Ready(None),
                Some(Err(error)) => Poll::Ready(Some(Err(error.to_string()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
            };
        }
    }
}
