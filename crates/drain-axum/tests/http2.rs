//! `serve` speaks HTTP/2 (h2c, prior knowledge) through hyper's automatic builder: a
//! request in flight finishes, a new one on the same connection gets its `503` (without
//! `Connection`, which HTTP/2 forbids), and the connection is closed after the drain.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shutdown_core::{Phase, Shutdown, ShutdownConfig};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(10);

fn get_request(path: &str) -> Request<Body> {
    Request::get(format!("http://localhost{path}"))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn http2_requests_drain_and_the_connection_closes_after_the_drain() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(10)));
    let release = Arc::new(Notify::new());
    let routes = {
        let release = Arc::clone(&release);
        Router::new().route("/", get(|| async { "hello" })).route(
            "/slow",
            get(move || {
                let release = Arc::clone(&release);
                async move {
                    release.notified().await;
                    "done"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = drain_axum::drained(routes, &shutdown);
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { drain_axum::serve(listener, app, &shutdown).await }
    });

    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    let connection = tokio::spawn(connection);

    let response = sender
        .clone()
        .send_request(get_request("/"))
        .await
        .expect("GET /");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), axum::http::Version::HTTP_2);

    let slow = tokio::spawn({
        let mut sender = sender.clone();
        async move {
            let response = sender.send_request(get_request("/slow")).await?;
            let status = response.status();
            let close = response.headers().get(header::CONNECTION).cloned();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, close, body))
        }
    });
    tokio::time::timeout(WAIT, async {
        while shutdown.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("/slow in flight");

    shutdown.request_shutdown("test");
    tokio::time::timeout(WAIT, shutdown.reached(Phase::Draining))
        .await
        .expect("drain begins");
    let rejected = sender
        .clone()
        .send_request(get_request("/"))
        .await
        .expect("a new stream during the drain");
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()[header::RETRY_AFTER], "10");
    assert!(
        rejected.headers().get(header::CONNECTION).is_none(),
        "no Connection header on HTTP/2"
    );

    release.notify_one();
    let (status, close, body) = tokio::time::timeout(WAIT, slow)
        .await
        .expect("/slow finishes")
        .expect("task")
        .expect("/slow");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "done");
    assert!(close.is_none(), "no Connection header on HTTP/2");

    tokio::time::timeout(WAIT, connection)
        .await
        .expect("the server closes the connection after the drain")
        .expect("task")
        .expect("a clean close (GOAWAY), not an error");
    let report = support::served(server, WAIT).await;
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        report.drain.drained(),
        1,
        "/slow, in flight when the drain began"
    );
    assert_eq!(report.drain.rejected, 1);
}
