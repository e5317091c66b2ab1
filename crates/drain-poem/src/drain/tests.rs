use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use poem::http::{StatusCode, Version};
use poem::test::TestClient;
use poem::{Body, Endpoint, EndpointExt, Request, Response, Route, get, handler, post};
use shutdown_core::{REJECTION_MESSAGE, RequestGate, Shutdown, ShutdownConfig};

use super::body::BoxBody;
use super::{DEFAULT_DISCARD_LIMIT, Drain};

/// Calls to the application's handlers.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn app(calls: &Calls) -> Route {
    let hello = {
        let calls = calls.clone();
        move |_: Request| {
            calls.0.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, poem::Error>("hello") }
        }
    };
    Route::new()
        .at("/", get(poem::endpoint::make(hello)))
        .at("/fail", get(fail))
        .at("/upload", post(upload))
        .at("/health/ready", get(ok))
        .at("/metrics", get(ok))
}

#[handler]
fn ok() -> &'static str {
    "ok"
}

#[handler]
fn fail() -> poem::Result<()> {
    Err(poem::Error::from_status(StatusCode::IM_A_TEAPOT))
}

#[handler]
async fn upload(body: Body) -> poem::Result<String> {
    Ok(format!("{}", body.into_bytes().await?.len()))
}

async fn drained(shutdown: &Shutdown) {
    shutdown.request_shutdown("test");
    shutdown.drain().await;
}

fn streaming() -> (Sender<Bytes, io::Error>, Body) {
    let (sender, channel) = Channel::<Bytes, io::Error>::new(1);
    (sender, Body::from(BoxBody::new(channel)))
}

async fn text(response: Response) -> String {
    let bytes = response.into_body().into_bytes().await.expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn an_admitted_request_is_counted_until_its_body_has_been_sent() {
    let shutdown = Shutdown::default();
    let calls = Calls::default();
    let client = TestClient::new(app(&calls).with(Drain::new(shutdown.clone())));

    let response = client.get("/").send().await;
    response.assert_status_is_ok();
    response.assert_header_is_not_exist("connection");
    assert_eq!(shutdown.in_flight(), 1, "the body is still to be sent");
    response.assert_text("hello").await;
    assert_eq!(shutdown.in_flight(), 0);
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn a_streaming_body_holds_the_drain_until_its_last_chunk() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
    let (mut sender, body) = streaming();
    let body = std::sync::Mutex::new(Some(body));
    let endpoint = poem::endpoint::make_sync(move |_| {
        body.lock()
            .ok()
            .and_then(|mut b| b.take())
            .unwrap_or_default()
    })
    .with(Drain::new(shutdown.clone()));

    let response = endpoint.call(Request::default()).await.expect("response");
    let mut body = BoxBody::from(response.into_body());
    sender
        .send_data(Bytes::from_static(b"one"))
        .await
        .expect("send");
    let frame = body.frame().await.expect("a frame").expect("data");
    assert_eq!(frame.into_data().ok().as_deref(), Some(&b"one"[..]));

    shutdown.request_shutdown("test");
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!drain.is_finished(), "the stream is not over");

    sender
        .send_data(Bytes::from_static(b"two"))
        .await
        .expect("send");
    drop(sender);
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(rest, "two");
    let summary = tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("the drain ends with the stream")
        .expect("drain task");
    assert_eq!(summary.drained(), 1);
    assert_eq!(summary.interrupted, 0);
}

#[tokio::test]
async fn a_dropped_response_or_cancelled_handler_releases_its_guard() {
    let shutdown = Shutdown::default();
    let endpoint = poem::endpoint::make(|_| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "never"
    })
    .with(Drain::new(shutdown.clone()));

    let call = endpoint.call(Request::default());
    let cancelled = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(cancelled.is_err());
    assert_eq!(shutdown.in_flight(), 0);

    let client = TestClient::new(app(&Calls::default()).with(Drain::new(shutdown.clone())));
    let response = client.get("/").send().await;
    assert_eq!(shutdown.in_flight(), 1);
    drop(response);
    assert_eq!(shutdown.in_flight(), 0);
}

#[tokio::test]
async fn errors_pass_through_and_release_their_guard() {
    let shutdown = Shutdown::default();
    let endpoint = app(&Calls::default()).with(Drain::new(shutdown.clone()));

    let error = endpoint
        .call(Request::builder().uri_str("/fail").finish())
        .await
        .expect_err("the handler's error");
    assert_eq!(error.status(), StatusCode::IM_A_TEAPOT);
    let error = endpoint
        .call(Request::builder().uri_str("/nowhere").finish())
        .await
        .expect_err("poem's own error");
    assert!(error.is::<poem::error::NotFoundError>());
    assert_eq!(shutdown.in_flight(), 0);
}

#[tokio::test]
async fn a_new_request_during_the_drain_gets_503_with_retry_after_without_the_handler() {
    let shutdown = Shutdown::default();
    let calls = Calls::default();
    let client = TestClient::new(app(&calls).with(Drain::new(shutdown.clone())));
    drained(&shutdown).await;

    let response = client.get("/").send().await;
    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    response.assert_header("retry-after", "10");
    response.assert_header("connection", "close");
    response.assert_content_type("text/plain; charset=utf-8");
    response.assert_text(REJECTION_MESSAGE).await;
    assert_eq!(calls.count(), 0, "the handler is not called");
    assert_eq!(shutdown.rejected(), 1);
    assert_eq!(shutdown.in_flight(), 0);
}

#[tokio::test]
async fn http2_responses_never_carry_connection_close() {
    let shutdown = Shutdown::default();
    let endpoint = app(&Calls::default()).with(Drain::new(shutdown.clone()));
    let h2 = || Request::builder().version(Version::HTTP_2).finish();

    shutdown.request_shutdown("test");
    let served = endpoint.call(h2()).await.expect("served");
    assert_eq!(served.status(), StatusCode::OK);
    assert!(served.headers().get("connection").is_none());
    drop(served);

    shutdown.drain().await;
    let rejected = endpoint.call(h2()).await.expect("rejected");
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "10");
    assert!(rejected.headers().get("connection").is_none());
}

#[tokio::test]
async fn responses_carry_connection_close_from_the_trigger_on() {
    let shutdown =
        Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(60)));
    let client = TestClient::new(app(&Calls::default()).with(Drain::new(shutdown.clone())));

    shutdown.request_shutdown("test");
    let response = client.get("/").send().await;
    response.assert_status_is_ok();
    response.assert_header("connection", "close");
    response.assert_text("hello").await;

    let exempt = client.get("/health/ready").send().await;
    exempt.assert_status_is_ok();
    exempt.assert_header_is_not_exist("connection");
}

#[tokio::test]
async fn exempt_paths_are_neither_counted_nor_rejected() {
    let shutdown = Shutdown::default();
    let client = TestClient::new(app(&Calls::default()).with(Drain::new(shutdown.clone())));

    let response = client.get("/metrics").send().await;
    assert_eq!(shutdown.in_flight(), 0, "not counted");
    response.assert_text("ok").await;

    drained(&shutdown).await;
    for path in ["/health/ready", "/metrics"] {
        client.get(path).send().await.assert_status_is_ok();
    }
    assert_eq!(shutdown.rejected(), 0);
}

#[tokio::test]
async fn exempt_paths_and_retry_after_can_be_configured() {
    let shutdown = Shutdown::default();
    let drain = Drain::from_gate(
        RequestGate::new(shutdown.clone())
            .with_exempt_paths(["/"])
            .with_retry_after_secs(3),
    );
    let client = TestClient::new(app(&Calls::default()).with(drain));
    drained(&shutdown).await;

    client.get("/").send().await.assert_status_is_ok();
    let rejected = client.get("/metrics").send().await;
    rejected.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    rejected.assert_header("retry-after", "3");
}

/// A request body of `chunks` 64 KiB chunks that counts the bytes read from it.
struct Counting {
    chunks: usize,
    read: Arc<AtomicU64>,
}

const CHUNK: usize = 64 * 1024;

impl http_body::Body for Counting {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        self.chunks -= 1;
        self.read.fetch_add(CHUNK as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; CHUNK])))))
    }
}

fn upload_request(chunks: usize, version: Version) -> (Request, Arc<AtomicU64>) {
    let read = Arc::new(AtomicU64::new(0));
    let body = Counting {
        chunks,
        read: read.clone(),
    };
    let request = Request::builder()
        .method(poem::http::Method::POST)
        .uri_str("/upload")
        .version(version)
        .body(Body::from(BoxBody::new(body)));
    (request, read)
}

#[tokio::test]
async fn a_rejected_http1_body_is_read_and_discarded_before_the_message() {
    let shutdown = Shutdown::default();
    let endpoint = app(&Calls::default()).with(Drain::new(shutdown.clone()));
    drained(&shutdown).await;

    let (request, read) = upload_request(4, Version::HTTP_11);
    let response = endpoint.call(request).await.expect("rejected");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(read.load(Ordering::SeqCst), 0, "the head comes first");
    assert_eq!(text(response).await, REJECTION_MESSAGE);
    assert_eq!(read.load(Ordering::SeqCst), 4 * CHUNK as u64);
}

#[tokio::test]
async fn discarding_stops_at_the_limit_and_never_happens_on_http2() {
    let shutdown = Shutdown::default();
    drained(&shutdown).await;

    let endpoint = app(&Calls::default()).with(Drain::new(shutdown.clone()));
    let chunks = 2 * DEFAULT_DISCARD_LIMIT as usize / CHUNK;
    let (request, read) = upload_request(chunks, Version::HTTP_11);
    let response = endpoint.call(request).await.expect("rejected");
    assert_eq!(text(response).await, REJECTION_MESSAGE);
    assert_eq!(read.load(Ordering::SeqCst), DEFAULT_DISCARD_LIMIT);

    let (request, read) = upload_request(4, Version::HTTP_2);
    let response = endpoint.call(request).await.expect("rejected");
    assert_eq!(text(response).await, REJECTION_MESSAGE);
    assert_eq!(read.load(Ordering::SeqCst), 0);

    let endpoint = app(&Calls::default()).with(Drain::from_gate(
        RequestGate::new(shutdown.clone()).with_discard_limit(0),
    ));
    let (request, read) = upload_request(4, Version::HTTP_11);
    let response = endpoint.call(request).await.expect("rejected");
    assert_eq!(text(response).await, REJECTION_MESSAGE);
    assert_eq!(read.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_admitted_upload_reaches_the_handler_whole() {
    let shutdown = Shutdown::default();
    let endpoint = app(&Calls::default()).with(Drain::new(shutdown.clone()));
    let (request, _) = upload_request(3, Version::HTTP_11);
    let response = endpoint.call(request).await.expect("served");
    assert_eq!(text(response).await, (3 * CHUNK).to_string());
    assert_eq!(shutdown.in_flight(), 0);
}
