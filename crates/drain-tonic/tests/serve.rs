//! `drain_tonic::serve` on 127.0.0.1 (port 0) with hyper's HTTP/2 client: what the
//! connections and the listener do through the shutdown. Every wait is bounded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drain_tonic::DrainLayer;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shutdown_core::{Shutdown, ShutdownConfig, ShutdownReport, Trigger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tower::Layer;

const BOUND: Duration = Duration::from_secs(10);

/// Serves `/slow` (answers once `release` is notified) and any other path at once,
/// behind `DrainLayer`.
async fn start(
    config: ShutdownConfig,
) -> (
    Shutdown,
    SocketAddr,
    Arc<Notify>,
    JoinHandle<ShutdownReport>,
) {
    let shutdown = Shutdown::new(config);
    let release = Arc::new(Notify::new());
    let app = {
        let release = Arc::clone(&release);
        tower::service_fn(move |request: Request<hyper::body::Incoming>| {
            let release = Arc::clone(&release);
            async move {
                if request.uri().path() == "/slow" {
                    release.notified().await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        })
    };
    let app = DrainLayer::new(shutdown.clone()).layer(app);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            drain_tonic::serve(listener, app, &shutdown)
                .await
                .expect("served")
        }
    });
    (shutdown, addr, release, served)
}

/// An HTTP/2 connection; the task driving it ends when the connection does.
async fn connect(addr: SocketAddr) -> (SendRequest<Empty<Bytes>>, JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    let driven = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driven)
}

/// Resolves once `sender`'s connection takes no new RPC (it got a `GOAWAY`).
async fn goes_away(sender: &mut SendRequest<Empty<Bytes>>) {
    loop {
        if sender.ready().await.is_err() {
            return;
        }
        match sender.send_request(rpc("/")).await {
            Err(_) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn rpc(path: &str) -> Request<Empty<Bytes>> {
    Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .body(Empty::new())
        .expect("a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_sends_goaway_keeps_the_listener_open_and_lets_open_rpcs_finish() {
    let (shutdown, addr, release, served) = start(ShutdownConfig::new()).await;
    let (mut early, early_connection) = connect(addr).await;
    let slow = tokio::spawn(early.send_request(rpc("/slow")));
    // The slow RPC is in flight once the server counts it.
    timeout(BOUND, async {
        while shutdown.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the RPC reached the server");

    shutdown.request_shutdown("test");
    timeout(BOUND, shutdown.draining())
        .await
        .expect("drain begun");
    // The early connection was told to go away: it takes no new stream.
    assert!(
        timeout(BOUND, goes_away(&mut early)).await.is_ok(),
        "GOAWAY: no new RPC on an old connection"
    );

    // A new connection during the drain is accepted and its RPC answered UNAVAILABLE.
    let (mut late, _late_connection) = connect(addr).await;
    let response = timeout(
        BOUND,
        late.send_request(rpc("/helloworld.Greeter/SayHello")),
    )
    .await
    .expect("answered in time")
    .expect("answered, not refused");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "14");
    // ... after which it is told to go away too.
    assert!(
        timeout(BOUND, goes_away(&mut late)).await.is_ok(),
        "GOAWAY after the first RPC of a late connection"
    );

    // The RPC that was open finishes on its old connection.
    release.notify_one();
    let response = timeout(BOUND, slow)
        .await
        .expect("in time")
        .expect("task")
        .expect("the open RPC completes");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "done");
    let report = timeout(BOUND, served)
        .await
        .expect("serve returns")
        .expect("task");
    assert_eq!(report.drain.drained(), 1);
    assert_eq!(report.drain.interrupted, 0);
    assert!(report.drain.rejected >= 1);
    timeout(BOUND, early_connection)
        .await
        .expect("the old connection is closed")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_by_the_deadline_plus_the_stop_bound_whatever_a_client_does() {
    let config = ShutdownConfig::new()
        .with_drain_timeout(Duration::from_millis(300))
        .with_server_stop_timeout(Duration::from_millis(300));
    let (shutdown, addr, _release, served) = start(config).await;
    let (mut client, _connection) = connect(addr).await;
    // Never released: past the deadline it is interrupted, then dropped at the stop.
    let _stuck = tokio::spawn(client.send_request(rpc("/slow")));
    timeout(BOUND, async {
        while shutdown.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the RPC reached the server");
    let started = std::time::Instant::now();
    shutdown.request_shutdown("test");
    let report = timeout(BOUND, served)
        .await
        .expect("serve returns")
        .expect("task");
    let took = started.elapsed();
    assert_eq!(report.drain.interrupted, 1);
    assert_eq!(report.exit_code(), 3);
    assert!(
        took < Duration::from_secs(3),
        "the deadline (0.3 s) and the stop bound (0.3 s), not the client: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_handoff_the_listener_stops_accepting_and_open_rpcs_finish() {
    let config = ShutdownConfig::new().with_handoff_grace(Duration::from_millis(500));
    let (shutdown, addr, release, served) = start(config).await;
    let (mut open, _connection) = connect(addr).await;
    let slow = tokio::spawn(open.send_request(rpc("/slow")));
    timeout(BOUND, async {
        while shutdown.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the RPC reached the server");
    shutdown.trigger(Trigger::Handoff { successor: 1 });
    timeout(BOUND, shutdown.handed_over())
        .await
        .expect("handed over");

    // A new connection is no longer served: the successor accepts on this socket.
    let late = timeout(Duration::from_millis(500), async {
        let (mut late, _connection) = connect(addr).await;
        late.send_request(rpc("/")).await
    })
    .await;
    assert!(late.is_err(), "not served after the handoff: {late:?}");
    release.notify_one();
    let response = timeout(BOUND, slow)
        .await
        .expect("in time")
        .expect("task")
        .expect("the open RPC completes");
    assert_eq!(response.headers().get("grpc-status"), None);
    let report = timeout(BOUND, served)
        .await
        .expect("serve returns")
        .expect("task");
    assert_eq!(report.drain.rejected, 0, "a handoff rejects nothing");
}
