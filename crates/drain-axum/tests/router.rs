//! `with_drain`, `drained` and `serve`, in process. The full scenario list runs against a real
//! process in `tests/tests/adapter_axum.rs` (the `e2e-tests` crate).

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use std::convert::Infallible;

use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use drain_axum::{DrainLayer, DrainRouterExt};
use http_body_util::BodyExt;
use shutdown_core::{Phase, RequestGate, Shutdown, ShutdownConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

fn get_request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// Triggers the shutdown and waits until the drain has begun; the task ends with it.
async fn begin_drain(shutdown: &Shutdown) -> tokio::task::JoinHandle<()> {
    shutdown.request_shutdown("test");
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.drain().await;
        }
    });
    tokio::time::timeout(Duration::from_secs(10), shutdown.reached(Phase::Draining))
        .await
        .expect("drain begins");
    drain
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

#[tokio::test]
async fn with_drain_adds_health_routes_and_rejects_during_the_drain() {
    let shutdown = Shutdown::default();
    health_routes_and_rejection(hello().with_drain(&shutdown), &shutdown).await;
}

#[tokio::test]
async fn drained_adds_health_routes_and_rejects_during_the_drain() {
    let shutdown = Shutdown::default();
    health_routes_and_rejection(drain_axum::drained(hello(), &shutdown), &shutdown).await;
}

#[tokio::test]
async fn drained_takes_a_configured_layer() {
    let shutdown = Shutdown::default();
    let layer = DrainLayer::from_gate(
        RequestGate::new(shutdown.clone())
            .with_exempt_paths(["/"])
            .with_retry_after_secs(3),
    );
    let app = drain_axum::Drained::new(hello().route("/other", get(|| async { "other" })), layer);
    let drain = begin_drain(&shutdown).await;
    let exempt = app
        .clone()
        .oneshot(get_request("/"))
        .await
        .expect("infallible");
    assert_eq!(exempt.status(), StatusCode::OK, "exempt by the gate's list");
    let rejected = app
        .oneshot(get_request("/other"))
        .await
        .expect("infallible");
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "3");
    drain.await.expect("drain task");
}

/// The contract of both ways of adding the layer: the guard lives in the body, the
/// health routes answer, readiness flips, new requests get `503`.
async fn health_routes_and_rejection<S>(app: S, shutdown: &Shutdown)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let response = app
        .clone()
        .oneshot(get_request("/"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(shutdown.in_flight(), 1, "held by the body");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "hello");
    assert_eq!(shutdown.in_flight(), 0);

    let ready = app
        .clone()
        .oneshot(get_request("/health/ready"))
        .await
        .expect("infallible");
    assert_eq!(ready.status(), StatusCode::OK);

    let drain = begin_drain(shutdown).await;

    let ready = app
        .clone()
        .oneshot(get_request("/health/ready"))
        .await
        .expect("infallible");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let live = app
        .clone()
        .oneshot(get_request("/health/live"))
        .await
        .expect("infallible");
    assert_eq!(live.status(), StatusCode::OK);
    let rejected = app.oneshot(get_request("/")).await.expect("infallible");
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "10");
    drain.await.expect("drain task");
}

#[tokio::test]
async fn serve_keeps_answering_during_the_drain_then_stops_and_runs_cleanup() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(10)));
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = {
        let gate = gate.clone();
        let app = Router::new().route(
            "/slow",
            get(move || {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    "done"
                }
            }),
        );
        drain_axum::drained(app, &shutdown)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (cleaned, cleaned_rx) = tokio::sync::oneshot::channel();
    shutdown.register_cleanup("probe listener", move || {
        let closed = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err();
        let _ = cleaned.send(closed);
    });
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { drain_axum::serve(listener, app, &shutdown).await }
    });

    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("write");
    tokio::time::timeout(Duration::from_secs(10), async {
        while shutdown.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("slow request in flight");

    shutdown.request_shutdown("test");
    tokio::time::timeout(Duration::from_secs(10), shutdown.reached(Phase::Draining))
        .await
        .expect("drain begins");
    let mut late = tokio::net::TcpStream::connect(addr)
        .await
        .expect("listener open during the drain");
    late.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("write");
    let mut answer = vec![0; 12];
    late.read_exact(&mut answer).await.expect("answer");
    assert_eq!(&answer, b"HTTP/1.1 503");

    gate.notify_one();
    let report = support::served(server, Duration::from_secs(10)).await;
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.drain.drained(), 1);
    assert_eq!(report.drain.rejected, 1);
    assert_eq!(
        cleaned_rx.await.ok(),
        Some(true),
        "cleanup ran after the listener closed"
    );
}
