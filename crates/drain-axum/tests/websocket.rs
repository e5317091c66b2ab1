//! `drain_axum::ws` on a real server and a real client (`tungstenite`) on 127.0.0.1: a
//! session counts in flight until it is closed, the drain closes it with 1001, and a
//! handshake admitted before the drain but upgraded after it gets the `503`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::Message;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use drain_axum::ServeError;
use drain_axum::ws::WebSocketUpgrade;
use shutdown_core::{Shutdown, ShutdownConfig, ShutdownReport};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(text) = message {
                if socket.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        }
    })
}

/// Holds a request in its handler until the drain has begun.
struct UntilDraining;

impl<S: Send + Sync> FromRequestParts<S> for UntilDraining
where
    Shutdown: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Shutdown::from_ref(state).drain_signal().wait().await;
        Ok(Self)
    }
}

async fn late(_: UntilDraining, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|_socket| async {})
}

async fn start(
    shutdown: &Shutdown,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<ShutdownReport, ServeError>>,
) {
    let app = Router::new()
        .route("/ws", get(echo))
        .route("/late", get(late))
        .with_state(shutdown.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = drain_axum::drained(app, shutdown);
    let shutdown = shutdown.clone();
    let server = tokio::spawn(async move { drain_axum::serve(listener, app, &shutdown).await });
    (addr, server)
}

fn shutdown() -> Shutdown {
    Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(20)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_counts_in_flight_until_it_closes_and_the_drain_closes_it_with_1001() {
    let shutdown = shutdown();
    let (addr, server) = start(&shutdown).await;
    let client = tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let (mut socket, response) =
            tungstenite::client(format!("ws://{addr}/ws"), stream).expect("handshake");
        assert_eq!(response.status(), 101);
        socket
            .send(tungstenite::Message::text("hello"))
            .expect("send");
        let echo = socket.read().expect("echo");
        assert_eq!(echo.into_text().expect("text").as_str(), "hello");
        socket
    })
    .await
    .expect("client");
    assert_eq!(shutdown.in_flight(), 1, "the session, after its 101");

    shutdown.request_shutdown("test");
    let closed = tokio::task::spawn_blocking(move || {
        let mut socket = client;
        let frame = loop {
            match socket.read().expect("the Close frame") {
                tungstenite::Message::Close(frame) => break frame,
                _ => continue,
            }
        };
        // tungstenite answers the Close; the server then closes the connection.
        let end = socket.read();
        (frame, end)
    })
    .await
    .expect("client");
    let (frame, end) = closed;
    let frame = frame.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "server shutting down");
    assert!(
        matches!(end, Err(tungstenite::Error::ConnectionClosed)),
        "a clean close: {end:?}"
    );
    let report = support::served(server, WAIT).await;
    assert_eq!(report.drain.streams_closed_by_drain, 1);
    assert_eq!((report.drain.drained(), report.drain.interrupted), (1, 0));
    assert!(
        report.drain.duration < Duration::from_secs(5),
        "closed at the drain's start, not at its deadline: {:?}",
        report.drain.duration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_admitted_before_the_drain_but_upgraded_after_it_gets_503() {
    let shutdown = shutdown();
    let (addr, server) = start(&shutdown).await;
    let client = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream
            .write_all(
                b"GET /late HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                  sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .expect("handshake");
        let mut head = Vec::new();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("head");
            if line.trim_end().is_empty() {
                break;
            }
            head.push(line.trim_end().to_ascii_lowercase());
        }
        head
    });
    // The request is admitted and waits in its handler.
    let deadline = tokio::time::Instant::now() + WAIT;
    while shutdown.in_flight() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never admitted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.request_shutdown("test");
    let head = client.await.expect("client");
    assert_eq!(head[0], "http/1.1 503 service unavailable", "{head:?}");
    assert!(head.contains(&"retry-after: 10".to_owned()), "{head:?}");
    assert!(head.contains(&"connection: close".to_owned()), "{head:?}");
    let report = support::served(server, WAIT).await;
    assert_eq!(report.drain.rejected, 1);
    assert_eq!(report.drain.interrupted, 0);
}
