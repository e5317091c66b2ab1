//! `serve` takes what `axum::serve` takes: a Unix-socket listener, and a router whose
//! handlers read `ConnectInfo` (also through a `HandoffListener`). Real sockets, every
//! wait bounded.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::serve::ListenerExt;
use shutdown_core::{Phase, Shutdown, ShutdownConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(10);

/// Sends one HTTP/1.1 request that closes its connection and returns the whole answer.
async fn get_close(mut stream: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_is_served_and_drained() {
    let dir = std::env::temp_dir().join(format!("drain-axum-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join("http.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind the socket");

    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
    let release = Arc::new(Notify::new());
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get({
            let release = release.clone();
            move || async move {
                release.notified().await;
                "done"
            }
        }),
    );
    let app = drain_axum::drained(app, &shutdown);
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { drain_axum::serve(listener, app, &shutdown).await }
    });
    let connect = || tokio::net::UnixStream::connect(&path);

    let answer = get_close(connect().await.expect("connect"), "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let slow = tokio::spawn(get_close(connect().await.expect("connect"), "/slow"));
    tokio::time::timeout(WAIT, async {
        while shutdown.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the slow request is in flight");
    shutdown.request_shutdown("test");
    tokio::time::timeout(WAIT, shutdown.reached(Phase::Draining))
        .await
        .expect("the drain begins");

    let late = get_close(connect().await.expect("still listening"), "/").await;
    assert!(late.starts_with("HTTP/1.1 503"), "{late}");
    assert!(late.contains("retry-after: 10\r\n"), "{late}");

    release.notify_one();
    let slow = slow.await.expect("client");
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(slow.contains("connection: close\r\n"), "{slow}");
    let report = support::served(server, WAIT).await;
    assert_eq!(report.drain.drained(), 1);
    assert_eq!(report.drain.rejected, 1);
    assert_eq!(report.exit_code(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reads_connect_info() {
    let shutdown = Shutdown::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    connect_info_is_served(listener, &shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reads_connect_info_through_a_tapped_handoff_listener() {
    let shutdown = Shutdown::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listener = drain_axum::HandoffListener::new(listener, &shutdown).tap_io(|_| ());
    connect_info_is_served(listener, &shutdown).await;
}

/// Serves a route answering `ConnectInfo<SocketAddr>` on `listener`, checks that it
/// answers the client's own address, then shuts down.
async fn connect_info_is_served<L>(listener: L, shutdown: &Shutdown)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    SocketAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let app = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let make_service =
        drain_axum::drained(app, shutdown).into_make_service_with_connect_info::<SocketAddr>();
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { drain_axum::serve(listener, make_service, &shutdown).await }
    });

    let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let peer = client.local_addr().expect("the client's address");
    let answer = get_close(client, "/peer").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&peer.to_string()), "{answer} from {peer}");
    let probe = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let ready = get_close(probe, "/health/ready").await;
    assert!(
        ready.starts_with("HTTP/1.1 200"),
        "health routes come with `drained`"
    );

    shutdown.request_shutdown("test");
    assert_eq!(support::served(server, WAIT).await.exit_code(), 0);
}
