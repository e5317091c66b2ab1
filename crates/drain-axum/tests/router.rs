//! `with_drain` and `serve`, in process. The full scenario list runs against a real
//! process in `tests/tests/adapter_axum.rs` (the `e2e-tests` crate).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use drain_axum::DrainRouterExt;
use http_body_util::BodyExt;
use shutdown_core::{Phase, Shutdown, ShutdownConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn get_request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn with_drain_adds_health_routes_and_rejects_during_the_drain() {
    let shutdown = Shutdown::default();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .with_drain(&shutdown);

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

    shutdown.request_shutdown("test");
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain().await }
    });
    tokio::time::timeout(Duration::from_secs(10), shutdown.reached(Phase::Draining))
        .await
        .expect("drain begins");

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
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let gate = gate.clone();
                    async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .with_drain(&shutdown)
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
    let report = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns")
        .expect("server task")
        .expect("serve");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.drain.drained(), 1);
    assert_eq!(report.drain.rejected, 1);
    assert_eq!(
        cleaned_rx.await.ok(),
        Some(true),
        "cleanup ran after the listener closed"
    );
}
