//! `serve` and `serve_with` on 127.0.0.1 (port 0): the settings of tonic's `Server`
//! that they apply (the `grpc-timeout` deadline, `ServeConfig`'s timeout, limits and
//! HTTP/2 keep-alive), seen by real clients. Every wait is bounded.
//!
//! These run in real time: a paused clock advances to the next timer while a socket
//! still holds unread bytes, which would fire the tests' own bounds. The deadline
//! arithmetic is checked on a paused clock in the unit tests of `serve/timeout.rs`.
//!
//! The client that sets `grpc-timeout` is tonic's `Grpc` client over a plain hyper
//! connection: tonic's `Channel` enforces the same deadline on the client side, so
//! with it a server that ignores the header would look the same.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drain_tonic::{DrainLayer, ServeConfig};
use http::uri::PathAndQuery;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shutdown_core::{Shutdown, ShutdownConfig, ShutdownReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::Code;
use tonic::client::Grpc;
use tonic_prost::ProstCodec;
use tower::Layer;

const BOUND: Duration = Duration::from_secs(10);

/// A handler that answers once released.
const SLOW: &str = "/test.Test/Slow";
/// A handler that never answers.
const FOREVER: &str = "/test.Test/Forever";
/// A handler that answers at once.
const FAST: &str = "/test.Test/Fast";

struct Server {
    shutdown: Shutdown,
    addr: SocketAddr,
    /// The path of each RPC that reaches the handler, as it does.
    arrived: mpsc::UnboundedReceiver<String>,
    /// `true` releases every `SLOW` RPC, those to come included.
    release: watch::Sender<bool>,
    served: JoinHandle<ShutdownReport>,
}

impl Server {
    /// `serve_with(config)`, or `serve` without one, of the three handlers behind
    /// `DrainLayer`.
    async fn start(config: Option<ServeConfig>) -> Self {
        let shutdown = Shutdown::new(ShutdownConfig::new());
        let (arrivals, arrived) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let app = tower::service_fn(move |request: Request<Incoming>| {
            let path = request.uri().path().to_owned();
            let _ = arrivals.send(path.clone());
            let mut released = released.clone();
            async move {
                match path.as_str() {
                    SLOW => {
                        let _ = released.wait_for(|released| *released).await;
                    }
                    FOREVER => std::future::pending().await,
                    _ => {}
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        });
        let app = DrainLayer::new(shutdown.clone()).layer(app);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let served = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let served = match config {
                    Some(config) => drain_tonic::serve_with(listener, app, &shutdown, config).await,
                    None => drain_tonic::serve(listener, app, &shutdown).await,
                };
                served.expect("served")
            }
        });
        Self {
            shutdown,
            addr,
            arrived,
            release,
            served,
        }
    }

    /// Waits until an RPC for `path` has reached its handler.
    async fn arrival(&mut self, path: &str) {
        let arrived = timeout(BOUND, self.arrived.recv())
            .await
            .expect("an RPC reached the handler in time")
            .expect("the server is up");
        assert_eq!(arrived, path);
    }

    /// Shuts down and returns the report, which must come well before the default
    /// 30 s drain deadline: nothing holds the drain.
    async fn stop_without_waiting(self) -> ShutdownReport {
        self.shutdown.request_shutdown("test");
        let started = Instant::now();
        let report = timeout(BOUND, self.served)
            .await
            .expect("serve returns")
            .expect("task");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the drain waited for nothing: {:?}",
            started.elapsed()
        );
        report
    }
}

/// An HTTP/2 connection with hyper's client; the task driving it ends when the
/// connection does.
async fn connect<B>(addr: SocketAddr) -> SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// tonic's gRPC client on one hyper connection, without a client-side deadline.
async fn grpc_client(
    addr: SocketAddr,
) -> Grpc<
    impl tonic::client::GrpcService<tonic::body::Body, ResponseBody = Incoming, Error = hyper::Error>,
> {
    let sender = connect::<tonic::body::Body>(addr).await;
    let service = tower::service_fn(move |request| {
        let mut sender = sender.clone();
        async move {
            sender.ready().await?;
            sender.send_request(request).await
        }
    });
    Grpc::with_origin(service, "http://127.0.0.1".parse().expect("a URI"))
}

/// A unary call of `path` with an empty message, its `grpc-timeout` set by tonic;
/// the status it ends with and how long it took.
async fn call(
    addr: SocketAddr,
    path: &'static str,
    grpc_timeout: Option<Duration>,
) -> (tonic::Status, Duration) {
    let mut client = grpc_client(addr).await;
    let mut request = tonic::Request::new(());
    if let Some(grpc_timeout) = grpc_timeout {
        request.set_timeout(grpc_timeout);
    }
    client.ready().await.expect("connected");
    let started = Instant::now();
    let answer = timeout(
        BOUND,
        client.unary(
            request,
            PathAndQuery::from_static(path),
            ProstCodec::<(), ()>::default(),
        ),
    )
    .await
    .expect("answered in time");
    let status = answer.expect_err("a handler that never answers is cut with a status");
    (status, started.elapsed())
}

/// A raw request for `path`, with `grpc-timeout: <value>` if given.
fn rpc(path: &str, grpc_timeout: Option<&str>) -> Request<Empty<Bytes>> {
    let mut request = Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(value) = grpc_timeout {
        request = request.header("grpc-timeout", value);
    }
    request.body(Empty::new()).expect("a request")
}

/// An RPC sent by hyper's client, its answer to come.
type Sent = JoinHandle<Result<Response<Incoming>, hyper::Error>>;

/// Sends an RPC for `path` on `client`'s connection, with `grpc-timeout: <value>` if
/// given.
async fn send(
    client: &mut SendRequest<Empty<Bytes>>,
    path: &str,
    grpc_timeout: Option<&str>,
) -> Sent {
    client.ready().await.expect("connected");
    tokio::spawn(client.send_request(rpc(path, grpc_timeout)))
}

/// The answer to `sent`, which must come in time.
async fn answer(sent: Sent) -> Response<Incoming> {
    timeout(BOUND, sent)
        .await
        .expect("answered in time")
        .expect("task")
        .expect("answered")
}

/// Asserts that `sent` is still waiting for its answer after a while.
async fn still_waiting(sent: &mut Sent, what: &str) {
    assert!(
        timeout(Duration::from_millis(300), sent).await.is_err(),
        "{what}"
    );
}

/// The body of a response that answered `done` (the handler's own answer).
async fn answered_done(response: Response<Incoming>) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("grpc-status"), None, "not a status");
    let body = timeout(BOUND, response.into_body().collect())
        .await
        .expect("the body in time")
        .expect("the body")
        .to_bytes();
    assert_eq!(body, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_past_its_grpc_timeout_is_cancelled_as_tonic_does_and_leaves_the_drain() {
    let mut server = Server::start(None).await;
    let (status, took) = call(server.addr, FOREVER, Some(Duration::from_millis(200))).await;
    server.arrival(FOREVER).await;
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(status.message(), "Timeout expired");
    assert!(
        took >= Duration::from_millis(200),
        "not before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "promptly after it: {took:?}");
    assert_eq!(
        server.shutdown.in_flight(),
        0,
        "the handler is dropped before the status is sent"
    );
    let report = server.stop_without_waiting().await;
    assert_eq!(report.drain.interrupted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grpc_timeout_does_not_cut_the_rpc() {
    let mut server = Server::start(None).await;
    let mut client = connect::<Empty<Bytes>>(server.addr).await;
    // Each would be a deadline of 1 to 123 ms if misread; none is one per the protocol
    // (1 to 8 digits, then one of `H M S m u n`). tonic's own parser reads `+1m` as
    // 1 ms (Rust's integer parsing takes the sign); the protocol has no sign.
    let malformed = ["123456789n", "+1m", "-1m", "1.5m", "1x", "1", "m", "1mm"];
    let mut pending = Vec::new();
    for value in malformed {
        pending.push((value, send(&mut client, SLOW, Some(value)).await));
        server.arrival(SLOW).await;
    }
    // A well-formed header on the same connection: it is cut within the window below.
    let cut = send(&mut client, SLOW, Some("100m")).await;
    server.arrival(SLOW).await;
    let cut = timeout(Duration::from_millis(600), cut)
        .await
        .expect("a well-formed 100 ms deadline cuts the RPC")
        .expect("task")
        .expect("answered");
    assert_eq!(cut.headers()["grpc-status"], "1", "CANCELLED");

    for (value, rpc) in &pending {
        assert!(!rpc.is_finished(), "grpc-timeout: {value:?} cut the RPC");
    }
    assert_eq!(server.shutdown.in_flight(), malformed.len());
    server.release.send_replace(true);
    for (_, rpc) in pending {
        answered_done(answer(rpc).await).await;
    }
    server.stop_without_waiting().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_timeout_applies_without_a_header_and_when_shorter_than_it() {
    let config = ServeConfig::new().timeout(Duration::from_millis(200));
    let mut server = Server::start(Some(config)).await;
    for grpc_timeout in [None, Some(Duration::from_secs(60))] {
        let (status, took) = call(server.addr, FOREVER, grpc_timeout).await;
        server.arrival(FOREVER).await;
        assert_eq!(
            status.code(),
            Code::Cancelled,
            "{grpc_timeout:?}: {status:?}"
        );
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{grpc_timeout:?}: cut at the server's 200 ms, took {took:?}"
        );
    }
    assert_eq!(server.shutdown.in_flight(), 0);
    server.stop_without_waiting().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_makes_a_second_rpc_on_the_connection_wait_for_the_first() {
    let mut server = Server::start(Some(ServeConfig::new().max_concurrent_streams(1))).await;
    let mut client = connect::<Empty<Bytes>>(server.addr).await;
    // A first answer: the client has read the server's SETTINGS, which precede it.
    let first = send(&mut client, FAST, None).await;
    server.arrival(FAST).await;
    answered_done(answer(first).await).await;

    let slow = send(&mut client, SLOW, None).await;
    server.arrival(SLOW).await;
    let mut second = send(&mut client, FAST, None).await;
    // Another connection is served meanwhile: the limit is per connection.
    let mut other = connect::<Empty<Bytes>>(server.addr).await;
    let elsewhere = send(&mut other, FAST, None).await;
    server.arrival(FAST).await;
    answered_done(answer(elsewhere).await).await;
    still_waiting(
        &mut second,
        "the second stream waits while the first is open",
    )
    .await;
    assert!(server.arrived.is_empty(), "it has not reached the server");

    server.release.send_replace(true);
    answered_done(answer(slow).await).await;
    server.arrival(FAST).await;
    answered_done(answer(second).await).await;
    server.stop_without_waiting().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_per_connection_queues_rpcs_or_sheds_them() {
    // Queued: the second RPC reaches the handler once the first has ended.
    let config = ServeConfig::new().concurrency_limit_per_connection(1);
    let mut server = Server::start(Some(config)).await;
    let mut client = connect::<Empty<Bytes>>(server.addr).await;
    let slow = send(&mut client, SLOW, None).await;
    server.arrival(SLOW).await;
    let mut second = send(&mut client, FAST, None).await;
    still_waiting(&mut second, "the second RPC waits for the first").await;
    assert!(server.arrived.is_empty(), "it has not reached the handler");
    assert_eq!(server.shutdown.in_flight(), 1, "nor the drain layer");
    server.release.send_replace(true);
    answered_done(answer(slow).await).await;
    server.arrival(FAST).await;
    answered_done(answer(second).await).await;
    server.stop_without_waiting().await;

    // Shed: the second RPC is answered RESOURCE_EXHAUSTED at once.
    let config = ServeConfig::new()
        .concurrency_limit_per_connection(1)
        .load_shed(true);
    let mut server = Server::start(Some(config)).await;
    let mut client = connect::<Empty<Bytes>>(server.addr).await;
    let slow = send(&mut client, SLOW, None).await;
    server.arrival(SLOW).await;
    let shed = answer(send(&mut client, FAST, None).await).await;
    assert_eq!(shed.status(), 200);
    assert_eq!(shed.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
    assert!(server.arrived.is_empty(), "it did not reach the handler");
    server.release.send_replace(true);
    answered_done(answer(slow).await).await;
    let report = server.stop_without_waiting().await;
    assert_eq!(report.drain.interrupted, 0);
}

/// The HTTP/2 frame types this test reads.
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// One frame's type and flags, its payload skipped; `None` at the end of the stream.
async fn next_frame(stream: &mut TcpStream) -> Option<(u8, u8)> {
    let mut header = [0_u8; 9];
    stream.read_exact(&mut header).await.ok()?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0_u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some((header[3], header[4]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_keepalive_sends_pings_and_closes_a_connection_that_does_not_answer() {
    let config = ServeConfig::new()
        .http2_keepalive_interval(Some(Duration::from_millis(200)))
        .http2_keepalive_timeout(Some(Duration::from_millis(200)));
    let server = Server::start(Some(config)).await;
    // A raw HTTP/2 client: the preface and empty SETTINGS, then it acknowledges the
    // server's SETTINGS and nothing else.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let connected = Instant::now();
    let pinged = timeout(BOUND, async {
        loop {
            match next_frame(&mut stream)
                .await
                .expect("the connection is open")
            {
                (SETTINGS, flags) if flags & ACK == 0 => {
                    stream
                        .write_all(b"\0\0\0\x04\x01\0\0\0\0")
                        .await
                        .expect("SETTINGS ACK");
                }
                (PING, flags) if flags & ACK == 0 => return Instant::now(),
                _ => {}
            }
        }
    })
    .await
    .expect("a keep-alive PING");
    assert!(
        pinged - connected >= Duration::from_millis(200),
        "after the interval: {:?}",
        pinged - connected
    );
    // Unanswered, the PING closes the connection after the keep-alive timeout.
    timeout(BOUND, async {
        while let Some((kind, _)) = next_frame(&mut stream).await {
            if kind == GOAWAY {
                break;
            }
        }
    })
    .await
    .expect("the connection is closed");
    assert!(
        pinged.elapsed() >= Duration::from_millis(200),
        "after the keep-alive timeout: {:?}",
        pinged.elapsed()
    );
    server.stop_without_waiting().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_age_sends_goaway_and_its_grace_closes_the_connection() {
    const AGE: Duration = Duration::from_millis(500);
    const GRACE: Duration = Duration::from_millis(1500);
    let config = ServeConfig::new()
        .max_connection_age(AGE)
        .max_connection_age_grace(GRACE);
    let mut server = Server::start(Some(config)).await;

    // Past its age, the connection is sent `GOAWAY`: the RPC open on it is served to its
    // end, a new one is refused, and a new connection is served.
    let opened = Instant::now();
    let mut client = connect::<Empty<Bytes>>(server.addr).await;
    let slow = send(&mut client, SLOW, None).await;
    server.arrival(SLOW).await;
    // New RPCs on the connection are served until its `GOAWAY` arrives, then refused.
    timeout(BOUND, async {
        loop {
            let sent = async {
                client.ready().await?;
                client.send_request(rpc(FAST, None)).await
            };
            if sent.await.is_err() {
                break;
            }
            server.arrival(FAST).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a new RPC is refused once the connection is old enough");
    assert!(
        opened.elapsed() >= AGE,
        "not before the age: {:?}",
        opened.elapsed()
    );
    server.release.send_replace(true);
    answered_done(answer(slow).await).await;
    let mut other = connect::<Empty<Bytes>>(server.addr).await;
    let fast = send(&mut other, FAST, None).await;
    server.arrival(FAST).await;
    answered_done(answer(fast).await).await;
    assert!(server.arrived.is_empty(), "the refused RPC reached nothing");

    // An RPC still open when the grace is over is cut with its connection, and leaves
    // the in-flight count.
    let opened = Instant::now();
    let mut client = connect::<Empty<Bytes>>(server.addr).await;
    let forever = send(&mut client, FOREVER, None).await;
    server.arrival(FOREVER).await;
    let cut = timeout(BOUND, forever)
        .await
        .expect("ended in time")
        .expect("task");
    assert!(cut.is_err(), "cut with its connection: {cut:?}");
    assert!(
        opened.elapsed() >= AGE + GRACE,
        "not before the age and the grace: {:?}",
        opened.elapsed()
    );
    assert_eq!(server.shutdown.in_flight(), 0);
    server.stop_without_waiting().await;
}
