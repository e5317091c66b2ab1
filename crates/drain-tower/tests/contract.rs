//! The drain contract (`drain-contract`), run against `DrainLayer` around a plain tower
//! service.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use drain_contract::{Adapter, Chunks, Method, Request, Response, Routes, Version};
use drain_tower::{DrainLayer, GuardedBody, Liveness, Readiness};
use futures_util::StreamExt;
use http::{Response as HttpResponse, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use shutdown_core::{RequestGate, Shutdown, UntilDrain};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

type TestBody = UnsyncBoxBody<Bytes, io::Error>;
type App =
    drain_tower::Drain<BoxCloneService<http::Request<TestBody>, HttpResponse<TestBody>, io::Error>>;

struct Tower {
    app: App,
}

/// A body that cannot fail, boxed.
fn boxed<B>(body: B) -> TestBody
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    body.map_err(|never: Infallible| -> io::Error { match never {} })
        .boxed_unsync()
}

fn stream_body<S>(stream: S) -> TestBody
where
    S: futures_core::Stream<Item = Result<Bytes, io::Error>> + Send + Unpin + 'static,
{
    StreamBody::new(MapFrames(stream)).boxed_unsync()
}

/// A stream of chunks as a stream of data frames.
struct MapFrames<S>(S);

impl<S> futures_core::Stream for MapFrames<S>
where
    S: futures_core::Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    type Item = Result<Frame<Bytes>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }
}

fn text(status: StatusCode, text: String) -> HttpResponse<TestBody> {
    let mut response = HttpResponse::new(boxed(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response
}

async fn handle(
    routes: Routes,
    shutdown: Shutdown,
    request: http::Request<TestBody>,
) -> Result<HttpResponse<TestBody>, io::Error> {
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/health/ready" => return Ok(Readiness::new(shutdown).response().map(boxed)),
        "/health/live" => return Ok(Liveness::new().response().map(boxed)),
        _ => {}
    }
    routes.called();
    match path.as_str() {
        "/" => Ok(text(StatusCode::OK, "ok".into())),
        "/stream" => Ok(HttpResponse::new(stream_body(Box::pin(
            routes.stream_body(),
        )))),
        "/upgrade" => Ok(HttpResponse::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
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
            Ok(text(StatusCode::OK, "done".into()))
        }
        "/fail" => Err(io::Error::other("the handler failed")),
        "/forever" => std::future::pending().await,
        // A plain tower service has no extractors: the handler asks the `Shutdown`.
        "/drain-signal" => {
            shutdown.drain_signal().wait().await;
            Ok(text(StatusCode::OK, "drain began".into()))
        }
        "/events" => {
            let signal = shutdown.drain_signal();
            let last = Bytes::from(signal.shutdown_event().to_text());
            let events = routes
                .events_data()
                .map(|data| Ok(Bytes::from(format!("data: {data}\n\n"))));
            let events = UntilDrain::new(events, &signal, Ok(last));
            let mut response = HttpResponse::new(stream_body(Box::pin(events)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            Ok(response)
        }
        _ => Ok(text(StatusCode::NOT_FOUND, String::new())),
    }
}

impl Adapter for Tower {
    async fn build(gate: RequestGate, routes: Routes) -> Self {
        let shutdown = gate.shutdown().clone();
        let inner = service_fn(move |request: http::Request<TestBody>| {
            handle(routes.clone(), shutdown.clone(), request)
        });
        Self {
            app: DrainLayer::from_gate(gate).layer(BoxCloneService::new(inner)),
        }
    }

    async fn send(&self, request: Request) -> Response {
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
        let http_request = http::Request::builder()
            .method(method)
            .uri(request.path)
            .version(version)
            .body(body)
            .expect("a valid request");
        match self.app.clone().oneshot(http_request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                Response {
                    status: parts.status.as_u16(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            (n.as_str().to_owned(), v.to_str().expect("ASCII").to_owned())
                        })
                        .collect(),
                    body: Box::pin(Frames(body)),
                }
            }
            Err(_) => Response {
                status: 500,
                headers: Vec::new(),
                body: Box::pin(Frames(GuardedBody::new(boxed(Empty::new()), None))),
            },
        }
    }

    fn block_on(scenario: impl Future<Output = ()>) {
        drain_contract::block_on_tokio(scenario);
    }
}

/// An http-body body, chunk by chunk.
struct Frames<B>(B);

impl<B> Chunks for Frames<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, String>>> {
        loop {
            return match std::task::ready!(Pin::new(&mut self.0).poll_frame(cx)) {
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

drain_contract::contract_tests!(Tower);
