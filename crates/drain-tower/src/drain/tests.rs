use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Full};
use shutdown_core::{RequestGate, Shutdown, ShutdownConfig};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

use super::{DrainLayer, GuardedBody};

type TestBody = http_body_util::Either<Full<Bytes>, Channel<Bytes, BoxError>>;

/// An inner service that counts its calls; `/stream` answers with a body fed through
/// the returned senders, `/error` fails, everything else answers `ok`.
fn inner(
    calls: Arc<AtomicUsize>,
    streams: Arc<std::sync::Mutex<Vec<Sender<Bytes, BoxError>>>>,
) -> impl Service<Request<Full<Bytes>>, Response = Response<TestBody>, Error = BoxError, Future: Send>
+ Clone {
    service_fn(move |request: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let streams = Arc::clone(&streams);
        async move {
            match request.uri().path() {
                "/error" => Err::<_, BoxError>("handler failed".into()),
                "/stream" => {
                    let (tx, body) = Channel::new(4);
                    streams.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
                    Ok(Response::new(TestBody::Right(body)))
                }
                _ => Ok(Response::new(TestBody::Left(Full::new(
                    Bytes::from_static(b"ok"),
                )))),
            }
        }
    })
}

struct Harness {
    shutdown: Shutdown,
    calls: Arc<AtomicUsize>,
    streams: Arc<std::sync::Mutex<Vec<Sender<Bytes, BoxError>>>>,
    layer: DrainLayer,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(ShutdownConfig::new())
    }

    fn with_config(config: ShutdownConfig) -> Self {
        let shutdown = Shutdown::new(config);
        Self {
            layer: DrainLayer::new(shutdown.clone()),
            shutdown,
            calls: Arc::default(),
            streams: Arc::default(),
        }
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<GuardedBody<TestBody>>, BoxError> {
        let service = tower::ServiceBuilder::new()
            .layer(self.layer.clone())
            .service(inner(Arc::clone(&self.calls), Arc::clone(&self.streams)));
        service.oneshot(request).await
    }

    async fn get(&self, path: &str) -> Response<GuardedBody<TestBody>> {
        self.send(request(path, Version::HTTP_11))
            .await
            .expect("inner service")
    }

    fn stream(&self, index: usize) -> Sender<Bytes, BoxError> {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(index)
    }

    /// Triggers the shutdown and waits until the drain has begun.
    async fn begin_drain(&self) {
        begin_drain(&self.shutdown).await;
    }
}

/// Triggers the shutdown, runs the drain in the background, and waits until it has begun.
async fn begin_drain(shutdown: &Shutdown) {
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain().await }
    });
    shutdown.request_shutdown("test");
    tokio::time::timeout(
        Duration::from_secs(10),
        shutdown.reached(shutdown_core::Phase::Draining),
    )
    .await
    .expect("the drain begins");
}

fn request(path: &str, version: Version) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    *request.uri_mut() = path.parse().expect("uri");
    *request.version_mut() = version;
    request
}

async fn text<B: Body<Data = Bytes>>(body: B) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn a_request_is_counted_until_its_body_has_been_read() {
    let h = Harness::new();
    let response = h.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("connection").is_none(),
        "keep-alive while running"
    );
    assert_eq!(h.shutdown.in_flight(), 1);
    assert_eq!(text(response.into_body()).await, "ok");
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn a_streaming_body_keeps_the_request_in_flight_until_it_ends() {
    let h = Harness::new();
    let response = h.get("/stream").await;
    let mut tx = h.stream(0);
    let mut body = response.into_body();

    tx.send_data(Bytes::from_static(b"one"))
        .await
        .expect("send");
    let frame = body.frame().await.expect("a frame").expect("data");
    assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"one")));
    assert_eq!(h.shutdown.in_flight(), 1, "the stream is still open");
    assert!(body.holds_guard());

    drop(tx);
    assert!(body.frame().await.is_none(), "the stream ended");
    assert!(
        !body.holds_guard(),
        "released at the end, before the body is dropped"
    );
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn dropping_a_streaming_body_releases_its_guard() {
    let h = Harness::new();
    let response = h.get("/stream").await;
    let _tx = h.stream(0);
    assert_eq!(h.shutdown.in_flight(), 1);
    drop(response);
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn a_body_that_fails_releases_its_guard() {
    let h = Harness::new();
    let response = h.get("/stream").await;
    let tx = h.stream(0);
    let mut body = response.into_body();
    tx.abort("connection to upstream lost".into());
    let frame = body.frame().await.expect("an error frame");
    assert!(frame.is_err());
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn a_failing_handler_releases_its_guard() {
    let h = Harness::new();
    let error = h
        .send(request("/error", Version::HTTP_11))
        .await
        .expect_err("inner error");
    assert_eq!(error.to_string(), "handler failed");
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn a_dropped_response_future_releases_its_guard() {
    let h = Harness::new();
    let gate = Arc::new(tokio::sync::Notify::new());
    let service = {
        let gate = Arc::clone(&gate);
        tower::ServiceBuilder::new()
            .layer(h.layer.clone())
            .service(service_fn(move |_request: Request<Full<Bytes>>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.notified().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            }))
    };
    let pending = service.oneshot(request("/", Version::HTTP_11));
    let timed_out = tokio::time::timeout(Duration::from_millis(10), pending).await;
    assert!(timed_out.is_err(), "the handler waits for the gate");
    assert_eq!(
        h.shutdown.in_flight(),
        0,
        "the client went away: future dropped"
    );
}

#[tokio::test]
async fn a_new_request_during_the_drain_gets_503_with_retry_after_without_reaching_the_handler() {
    let h = Harness::new();
    h.begin_drain().await;
    let response = h.get("/").await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "10");
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.body().size_hint().exact(), Some(52));
    assert_eq!(
        text(response.into_body()).await,
        "503 Service Unavailable: shutting down, retry later\n"
    );
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        0,
        "the handler was not called"
    );
    assert_eq!(h.shutdown.rejected(), 1);
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn retry_after_follows_the_configuration_or_the_layer() {
    let h =
        Harness::with_config(ShutdownConfig::new().with_retry_after(Duration::from_millis(2500)));
    h.begin_drain().await;
    assert_eq!(h.get("/").await.headers()["retry-after"], "3", "rounded up");

    let h = Harness::new();
    let h = Harness {
        layer: DrainLayer::from_gate(
            RequestGate::new(h.shutdown.clone()).with_retry_after_secs(42),
        ),
        ..h
    };
    h.begin_drain().await;
    assert_eq!(h.get("/").await.headers()["retry-after"], "42");
}

#[tokio::test]
async fn http2_responses_never_carry_connection_close() {
    let h = Harness::new();
    let in_flight = h
        .send(request("/stream", Version::HTTP_2))
        .await
        .expect("response");
    assert!(in_flight.headers().get("connection").is_none());
    begin_drain(&h.shutdown).await;
    drop(in_flight);

    let rejected = h
        .send(request("/", Version::HTTP_2))
        .await
        .expect("response");
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        rejected.headers().get("connection").is_none(),
        "illegal in HTTP/2"
    );
    assert_eq!(rejected.headers()["retry-after"], "10");
}

#[tokio::test]
async fn a_request_in_flight_when_the_drain_begins_completes_with_connection_close() {
    let h = Harness::new();
    let gate = Arc::new(tokio::sync::Notify::new());
    let service = {
        let gate = Arc::clone(&gate);
        tower::ServiceBuilder::new()
            .layer(h.layer.clone())
            .service(service_fn(move |_request: Request<Full<Bytes>>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.notified().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
                }
            }))
    };
    let slow = tokio::spawn(service.oneshot(request("/slow", Version::HTTP_11)));
    while h.shutdown.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    h.begin_drain().await;
    gate.notify_one();
    let response = slow.await.expect("task").expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(text(response.into_body()).await, "done");
    assert_eq!(h.shutdown.in_flight(), 0);
}

#[tokio::test]
async fn responses_during_the_pre_stop_delay_carry_connection_close() {
    let h =
        Harness::with_config(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(60)));
    h.shutdown.request_shutdown("test");
    let response = h.get("/").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "still served during the pre-stop delay"
    );
    assert_eq!(response.headers()["connection"], "close");
}

#[tokio::test]
async fn exempt_paths_are_neither_rejected_nor_counted() {
    let h = Harness::new();
    let metrics = h.get("/metrics").await;
    assert_eq!(h.shutdown.in_flight(), 0, "not counted");
    assert!(!metrics.body().holds_guard());
    drop(metrics);

    h.begin_drain().await;
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/metrics?format=text",
    ] {
        let response = h.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        h.get("/metrics/extra").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        h.get("/health").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.shutdown.rejected(), 2);
}

#[tokio::test]
async fn exempt_paths_can_be_replaced_by_a_list_or_a_predicate() {
    let h = Harness::new();
    let h = Harness {
        layer: DrainLayer::from_gate(
            RequestGate::new(h.shutdown.clone()).with_exempt_paths(["/ping"]),
        ),
        ..h
    };
    h.begin_drain().await;
    assert_eq!(h.get("/ping").await.status(), StatusCode::OK);
    assert_eq!(
        h.get("/metrics").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let h2 = Harness::new();
    let h2 = Harness {
        layer: DrainLayer::from_gate(
            RequestGate::new(h2.shutdown.clone())
                .with_exempt(|path| path.starts_with("/internal/")),
        ),
        ..h2
    };
    h2.begin_drain().await;
    assert_eq!(h2.get("/internal/stats").await.status(), StatusCode::OK);
    assert_eq!(
        h2.get("/health/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let h3 = Harness::new();
    let h3 = Harness {
        layer: DrainLayer::from_gate(
            RequestGate::new(h3.shutdown.clone()).with_exempt_paths(Vec::<String>::new()),
        ),
        ..h3
    };
    h3.begin_drain().await;
    assert_eq!(
        h3.get("/health/live").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_message_body_yields_one_frame_then_ends() {
    let mut body: GuardedBody<Full<Bytes>> = GuardedBody::rejected(None, 0);
    assert!(!body.is_end_stream());
    assert_eq!(
        body.size_hint().exact(),
        Some(shutdown_core::REJECTION_MESSAGE.len() as u64)
    );
    let frame: Frame<Bytes> = body.frame().await.expect("frame").expect("data");
    assert_eq!(
        frame.into_data().ok(),
        Some(Bytes::from_static(
            shutdown_core::REJECTION_MESSAGE.as_bytes()
        ))
    );
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

#[test]
fn guarded_body_is_send_and_sync_whatever_request_body_it_discards() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GuardedBody<Full<Bytes>>>();
}

#[tokio::test]
async fn a_rejection_body_reads_the_request_body_before_its_message() {
    let (mut tx, request_body) = Channel::<Bytes, BoxError>::new(4);
    let mut body = GuardedBody::<Full<Bytes>>::rejection(request_body, 1024);
    tx.send_data(Bytes::from_static(b"unread upload"))
        .await
        .expect("send");
    let pending = tokio::time::timeout(Duration::from_millis(20), body.frame()).await;
    assert!(
        pending.is_err(),
        "the message waits for the request body to end"
    );
    drop(tx);
    let frame = body.frame().await.expect("message").expect("data");
    assert_eq!(
        frame.into_data().ok(),
        Some(Bytes::from_static(
            shutdown_core::REJECTION_MESSAGE.as_bytes()
        ))
    );
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn a_rejection_dropped_before_its_end_lets_go_of_the_request_body() {
    let shutdown = Shutdown::default();
    begin_drain(&shutdown).await;
    let mut service = DrainLayer::new(shutdown.clone()).layer(service_fn(
        |_request: Request<Channel<Bytes, BoxError>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        },
    ));
    let upload = || {
        let (tx, body) = Channel::<Bytes, BoxError>::new(1);
        let mut request = Request::new(body);
        *request.version_mut() = Version::HTTP_11;
        (tx, request)
    };

    // The client went away before the response future was polled.
    let (mut tx, request) = upload();
    drop(service.call(request));
    assert!(
        tx.send_data(Bytes::from_static(b"more")).await.is_err(),
        "the request body was dropped with the future"
    );

    // The client went away while its upload was being discarded.
    let (mut tx, request) = upload();
    let response = service.call(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut body = response.into_body();
    let waiting = tokio::time::timeout(Duration::from_millis(20), body.frame()).await;
    assert!(waiting.is_err(), "still reading the upload");
    drop(body);
    assert!(
        tx.send_data(Bytes::from_static(b"more")).await.is_err(),
        "the request body was dropped with the response body"
    );
    assert_eq!(shutdown.rejected(), 2);
    assert_eq!(shutdown.in_flight(), 0);
}
