use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::BoxedPayloadStream;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, fn_service};
use actix_web::error::{ErrorInternalServerError, PayloadError};
use actix_web::http::{ConnectionType, StatusCode, Version};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, test};
use futures_util::Stream;
use shutdown_core::{REJECTION_MESSAGE, RequestGate, Shutdown, ShutdownConfig};

use super::*;

async fn drained(shutdown: &Shutdown) {
    shutdown.request_shutdown("test");
    shutdown.drain().await;
}

fn get(path: &str) -> test::TestRequest {
    test::TestRequest::get().uri(path)
}

fn header<'a, B>(response: &'a ServiceResponse<B>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn closes<B>(response: &ServiceResponse<B>) -> bool {
    let head = response.response().head();
    let closing = head.connection_type() == ConnectionType::Close;
    assert_eq!(
        closing,
        response.headers().get("connection").is_some(),
        "the head and the header map agree"
    );
    closing
}

/// A chunked body fed by the test.
struct Chunks {
    left: Rc<Cell<u32>>,
}

impl MessageBody for Chunks {
    type Error = actix_web::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        match self.left.get() {
            0 => Poll::Ready(None),
            n => {
                self.left.set(n - 1);
                Poll::Ready(Some(Ok(Bytes::from_static(b"chunk\n"))))
            }
        }
    }
}

#[actix_web::test]
async fn the_guard_is_held_until_the_response_body_has_ended() {
    let shutdown = Shutdown::default();
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .route("/", web::get().to(|| async { "hello" })),
    )
    .await;
    let response = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!closes(&response), "keep-alive while running");
    assert_eq!(shutdown.in_flight(), 1);
    assert_eq!(test::read_body(response).await, "hello");
    assert_eq!(shutdown.in_flight(), 0);
}

#[actix_web::test]
async fn a_streaming_body_holds_the_drain_until_its_last_chunk() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(5)));
    let left = Rc::new(Cell::new(3));
    let body = Rc::clone(&left);
    let app = test::init_service(App::new().wrap(Drain::new(shutdown.clone())).route(
        "/stream",
        web::get().to(move || {
            let left = Rc::clone(&body);
            async move { HttpResponse::Ok().message_body(Chunks { left }) }
        }),
    ))
    .await;
    let response = test::call_service(&app, get("/stream").to_request()).await;
    let mut body = std::pin::pin!(response.into_body());
    let chunk = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await;
    assert!(matches!(chunk, Some(Ok(_))));

    shutdown.request_shutdown("test");
    let drain = shutdown.drain();
    let mut drain = std::pin::pin!(drain);
    tokio::select! {
        _ = &mut drain => panic!("the drain ended with a chunk still to send"),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    while std::future::poll_fn(|cx| body.as_mut().poll_next(cx))
        .await
        .is_some()
    {}
    assert_eq!(left.get(), 0);
    let summary = drain.await;
    assert_eq!(summary.drained(), 1);
    assert_eq!(summary.interrupted, 0);
}

#[actix_web::test]
async fn a_dropped_body_releases_its_guard() {
    let shutdown = Shutdown::default();
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .route("/", web::get().to(|| async { "hello" })),
    )
    .await;
    let response = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(shutdown.in_flight(), 1);
    drop(response);
    assert_eq!(shutdown.in_flight(), 0);
}

#[actix_web::test]
async fn a_failing_handler_and_a_dropped_handler_release_their_guards() {
    let shutdown = Shutdown::default();
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .route(
                "/fail",
                web::get()
                    .to(|| async { Err::<HttpResponse, _>(ErrorInternalServerError("boom")) }),
            )
            .route(
                "/forever",
                web::get().to(std::future::pending::<HttpResponse>),
            ),
    )
    .await;
    let response = test::call_service(&app, get("/fail").to_request()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    drop(response);
    assert_eq!(shutdown.in_flight(), 0);

    {
        let call = app.call(get("/forever").to_request());
        let mut call = std::pin::pin!(call);
        tokio::select! {
            _ = &mut call => panic!("the handler never returns"),
            () = tokio::task::yield_now() => {}
        }
        assert_eq!(shutdown.in_flight(), 1);
    }
    assert_eq!(
        shutdown.in_flight(),
        0,
        "a future dropped mid-handler releases"
    );
}

#[actix_web::test]
async fn new_request_during_drain_gets_503_with_retry_after_and_connection_close() {
    let shutdown = Shutdown::default();
    let called = Rc::new(Cell::new(false));
    let flag = Rc::clone(&called);
    let app = test::init_service(App::new().wrap(Drain::new(shutdown.clone())).route(
        "/",
        web::get().to(move || {
            flag.set(true);
            async { "hello" }
        }),
    ))
    .await;
    drained(&shutdown).await;

    let response = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "10");
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert!(closes(&response));
    assert_eq!(response.response().body().size(), {
        BodySize::Sized(REJECTION_MESSAGE.len() as u64)
    });
    assert_eq!(test::read_body(response).await, REJECTION_MESSAGE);
    assert!(!called.get(), "the handler is not called");
    assert_eq!(shutdown.rejected(), 1);
    assert_eq!(shutdown.in_flight(), 0);
}

#[actix_web::test]
async fn http2_gets_no_connection_close() {
    let shutdown = Shutdown::default();
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .route("/", web::get().to(|| async { "hello" })),
    )
    .await;
    shutdown.request_shutdown("test");
    let request = || get("/").version(Version::HTTP_2).to_request();

    let served = test::call_service(&app, request()).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert!(!closes(&served));
    drop(served);

    shutdown.drain().await;
    let rejected = test::call_service(&app, request()).await;
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&rejected, "retry-after"), "10");
    assert!(!closes(&rejected));
}

#[actix_web::test]
async fn responses_carry_connection_close_from_the_trigger_on() {
    let shutdown =
        Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(60)));
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .configure(crate::health_routes(shutdown.clone()))
            .route("/", web::get().to(|| async { "hello" })),
    )
    .await;
    let live = test::call_service(&app, get("/health/live").to_request()).await;
    assert!(!closes(&live));

    shutdown.request_shutdown("test");
    let response = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "served during the pre-stop delay"
    );
    assert!(closes(&response));
    let live = test::call_service(&app, get("/health/live").to_request()).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert!(closes(&live), "exempt responses close too");
}

#[actix_web::test]
async fn a_response_started_before_the_trigger_and_finished_after_it_closes() {
    let shutdown = Shutdown::default();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Rc::new(Cell::new(Some(released)));
    let app = test::init_service(App::new().wrap(Drain::new(shutdown.clone())).route(
        "/slow",
        web::get().to(move || {
            let released = released.take();
            async move {
                if let Some(released) = released {
                    let _ = released.await;
                }
                "done"
            }
        }),
    ))
    .await;
    let call = app.call(get("/slow").to_request());
    let mut call = std::pin::pin!(call);
    tokio::select! {
        _ = &mut call => panic!("waiting for release"),
        () = tokio::task::yield_now() => {}
    }
    shutdown.request_shutdown("test");
    let _ = release.send(());
    let response = call.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(closes(&response));
}

#[actix_web::test]
async fn exempt_paths_are_neither_counted_nor_rejected() {
    let shutdown = Shutdown::default();
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .configure(crate::health_routes(shutdown.clone()))
            .route("/ping", web::get().to(|| async { "pong" })),
    )
    .await;
    let live = test::call_service(&app, get("/health/live").to_request()).await;
    assert_eq!(shutdown.in_flight(), 0, "not counted");
    drop(live);
    drained(&shutdown).await;

    let ready = test::call_service(&app, get("/health/ready").to_request()).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.headers().get("retry-after"), None, "not a rejection");
    assert_eq!(test::read_body(ready).await, "shutting down\n");
    let live = test::call_service(&app, get("/health/live").to_request()).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(shutdown.rejected(), 0);

    let custom = test::init_service(
        App::new()
            .wrap(Drain::from_gate(
                RequestGate::new(shutdown.clone()).with_exempt_paths(["/ping"]),
            ))
            .route("/ping", web::get().to(|| async { "pong" })),
    )
    .await;
    let ping = test::call_service(&custom, get("/ping?x=1").to_request()).await;
    assert_eq!(ping.status(), StatusCode::OK, "compared without the query");
}

#[actix_web::test]
async fn retry_after_can_be_set_per_middleware() {
    let shutdown =
        Shutdown::new(ShutdownConfig::new().with_retry_after(Duration::from_millis(2500)));
    let app = test::init_service(
        App::new()
            .wrap(Drain::new(shutdown.clone()))
            .route("/", web::get().to(|| async { "hello" })),
    )
    .await;
    let other = test::init_service(
        App::new()
            .wrap(Drain::from_gate(
                RequestGate::new(shutdown.clone()).with_retry_after_secs(7),
            ))
            .route("/", web::get().to(|| async { "hello" })),
    )
    .await;
    drained(&shutdown).await;
    let response = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(header(&response, "retry-after"), "3", "rounded up");
    let response = test::call_service(&other, get("/").to_request()).await;
    assert_eq!(header(&response, "retry-after"), "7");
}

/// A request body that counts what is read of it.
struct Counted {
    chunks: u32,
    read: Rc<Cell<u64>>,
}

impl Stream for Counted {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        self.chunks -= 1;
        self.read.set(self.read.get() + 1024);
        Poll::Ready(Some(Ok(Bytes::from(vec![b'x'; 1024]))))
    }
}

/// Rejects a `POST` whose body is `chunks` KiB; returns how much of it was read and the
/// response body.
async fn reject_upload(drain: Drain, version: Version, chunks: u32) -> (u64, Bytes) {
    let shutdown = drain.gate().shutdown().clone();
    let middleware = drain
        .new_transform(fn_service(|request: ServiceRequest| async {
            Ok::<_, actix_web::Error>(request.into_response(HttpResponse::Ok().finish()))
        }))
        .await
        .unwrap_or_else(|()| panic!("transform"));
    drained(&shutdown).await;
    let read = Rc::new(Cell::new(0));
    let mut request = test::TestRequest::post()
        .uri("/upload")
        .version(version)
        .to_srv_request();
    let stream: BoxedPayloadStream = Box::pin(Counted {
        chunks,
        read: Rc::clone(&read),
    });
    request.set_payload(Payload::from(stream));
    let response = middleware
        .call(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(read.get(), 0, "nothing is read before the head is sent");
    let body = test::read_body(response).await;
    (read.get(), body)
}

#[actix_web::test]
async fn a_rejected_request_body_is_read_and_discarded_up_to_the_limit() {
    let shutdown = Shutdown::default();
    let (read, body) = reject_upload(Drain::new(shutdown.clone()), Version::HTTP_11, 256).await;
    assert_eq!(read, 256 * 1024, "read to its end");
    assert_eq!(body, REJECTION_MESSAGE);

    let (read, body) = reject_upload(
        Drain::from_gate(RequestGate::new(shutdown.clone()).with_discard_limit(10 * 1024)),
        Version::HTTP_11,
        4096,
    )
    .await;
    assert_eq!(read, 10 * 1024, "read up to the limit");
    assert_eq!(body, REJECTION_MESSAGE);

    let (read, body) = reject_upload(
        Drain::from_gate(RequestGate::new(shutdown.clone()).with_discard_limit(0)),
        Version::HTTP_11,
        4,
    )
    .await;
    assert_eq!(read, 0, "a limit of 0 reads nothing");
    assert_eq!(body, REJECTION_MESSAGE);

    let (read, _) = reject_upload(Drain::new(shutdown), Version::HTTP_2, 4).await;
    assert_eq!(read, 0, "HTTP/2 resets just the stream: nothing to read");
}

#[actix_web::test]
async fn an_upgrade_keeps_its_connection_during_the_shutdown() {
    let shutdown = Shutdown::default();
    let app = test::init_service(App::new().wrap(Drain::new(shutdown.clone())).route(
        "/ws",
        web::get().to(|| async {
            let mut response = HttpResponse::SwitchingProtocols().finish();
            response
                .head_mut()
                .set_connection_type(ConnectionType::Upgrade);
            response
        }),
    ))
    .await;
    shutdown.request_shutdown("test");
    let response = test::call_service(&app, get("/ws").to_request()).await;
    assert_eq!(
        response.response().head().connection_type(),
        ConnectionType::Upgrade
    );
    assert!(response.headers().get("connection").is_none());
}
