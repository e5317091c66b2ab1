//! `DrainLayer` in a real hyper server on 127.0.0.1 (port 0), driven by real clients.
//! Every wait is bounded, so a bug fails the test instead of hanging it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drain_tower::{DrainLayer, Liveness, Readiness};
use http::{Request, Response, StatusCode};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use shutdown_core::{DrainSummary, Phase, RequestGate, Shutdown, ShutdownConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tower::ServiceBuilder;

const BOUND: Duration = Duration::from_secs(10);

type ResBody = Either<Full<Bytes>, Channel<Bytes, Infallible>>;

/// The application behind the layer: `/slow` waits for `gate`, `/stream` answers with a
/// body fed through `streams`, the health paths answer from `drain-tower`.
#[derive(Clone)]
struct App {
    shutdown: Shutdown,
    gate: Arc<Notify>,
    streams: Arc<Mutex<Vec<Sender<Bytes>>>>,
    stream_opened: Arc<Notify>,
    layer: DrainLayer,
}

impl App {
    fn new(config: ShutdownConfig) -> Self {
        let shutdown = Shutdown::new(config);
        Self {
            layer: DrainLayer::new(shutdown.clone()),
            shutdown,
            gate: Arc::default(),
            streams: Arc::default(),
            stream_opened: Arc::default(),
        }
    }

    fn with_discard_limit(mut self, bytes: u64) -> Self {
        self.layer = DrainLayer::from_gate(
            RequestGate::new(self.shutdown.clone()).with_discard_limit(bytes),
        );
        self
    }

    async fn handle(self, request: Request<Incoming>) -> Result<Response<ResBody>, Infallible> {
        let full = |r: Response<Full<Bytes>>| r.map(Either::Left);
        Ok(match request.uri().path() {
            "/health/ready" => full(Readiness::new(self.shutdown.clone()).response()),
            "/health/live" => full(Liveness.response()),
            "/slow" => {
                self.gate.notified().await;
                Response::new(Either::Left(Full::new(Bytes::from_static(b"done"))))
            }
            "/stream" => {
                let (tx, body) = Channel::new(1);
                self.streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(tx);
                self.stream_opened.notify_one();
                Response::new(Either::Right(body))
            }
            _ => Response::new(Either::Left(Full::new(Bytes::from_static(b"ok")))),
        })
    }

    /// Serves HTTP/1.1 on 127.0.0.1:0 until the test ends. The listener stays open
    /// during the drain, as the adapters keep it.
    async fn serve(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = self.clone();
        let service = ServiceBuilder::new()
            .layer(self.layer.clone())
            .service_fn(move |request| app.clone().handle(request));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn take_stream(&self) -> Sender<Bytes> {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(0)
    }

    /// Triggers the shutdown, runs the drain in the background and waits until it has
    /// begun; the handle resolves when the drain ends.
    async fn begin_drain(&self) -> JoinHandle<DrainSummary> {
        let drain = tokio::spawn({
            let shutdown = self.shutdown.clone();
            async move { shutdown.drain().await }
        });
        self.shutdown.request_shutdown("test");
        timeout(BOUND, self.shutdown.reached(Phase::Draining))
            .await
            .expect("the drain begins");
        drain
    }
}

/// A keep-alive HTTP/1.1 client connection.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = timeout(BOUND, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Self { sender }
    }

    async fn get(&mut self, path: &str) -> Response<Incoming> {
        timeout(BOUND, self.sender.ready())
            .await
            .expect("ready in time")
            .expect("connection usable");
        let request = Request::get(path)
            .header("host", "test")
            .body(Empty::new())
            .expect("request");
        timeout(BOUND, self.sender.send_request(request))
            .await
            .expect("response in time")
            .expect("a response, not a reset")
    }
}

async fn get(addr: SocketAddr, path: &str) -> Response<Incoming> {
    Client::connect(addr).await.get(path).await
}

async fn text(response: Response<Incoming>) -> String {
    let body = timeout(BOUND, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body");
    String::from_utf8(body.to_bytes().to_vec()).expect("utf-8")
}

async fn wait_until_in_flight(shutdown: &Shutdown, n: usize) {
    timeout(BOUND, async {
        while shutdown.in_flight() != n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("in_flight never reached {n} (is {})", shutdown.in_flight()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_over_real_connections() {
    let app = App::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
    let addr = app.serve().await;

    // Before the shutdown: a keep-alive connection, a request that will be in flight.
    let mut keep_alive = Client::connect(addr).await;
    let first = keep_alive.get("/").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("connection").is_none());
    assert_eq!(text(first).await, "ok");
    assert_eq!(get(addr, "/health/ready").await.status(), StatusCode::OK);

    let slow = tokio::spawn(async move { get(addr, "/slow").await });
    wait_until_in_flight(&app.shutdown, 1).await;

    let drain = app.begin_drain().await;

    // Readiness flips, liveness does not.
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(text(ready).await, "shutting down\n");
    assert_eq!(get(addr, "/health/live").await.status(), StatusCode::OK);

    // A new request on a new connection: 503 + Retry-After + Connection: close.
    let rejected = get(addr, "/").await;
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "10");
    assert_eq!(rejected.headers()["connection"], "close");
    assert_eq!(
        text(rejected).await,
        "503 Service Unavailable: shutting down, retry later\n"
    );

    // The next request on the keep-alive connection opened before the drain: 503 too.
    let rejected = keep_alive.get("/").await;
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "10");

    assert!(!drain.is_finished(), "the slow request is still in flight");
    app.gate.notify_one();
    let slow = timeout(BOUND, slow)
        .await
        .expect("slow in time")
        .expect("slow task");
    assert_eq!(slow.status(), StatusCode::OK);
    assert_eq!(
        slow.headers()["connection"],
        "close",
        "in flight when the drain began"
    );
    assert_eq!(text(slow).await, "done");

    let summary = timeout(BOUND, drain)
        .await
        .expect("the drain ends")
        .expect("drain task");
    assert_eq!(summary.in_flight_at_drain, 1);
    assert_eq!(summary.drained(), 1);
    assert_eq!(summary.interrupted, 0);
    assert_eq!(summary.rejected, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_when_the_last_streaming_body_ends() {
    let app = App::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
    let addr = app.serve().await;

    let response = get(addr, "/stream").await;
    timeout(BOUND, app.stream_opened.notified()).await.ok();
    let mut tx = app.take_stream();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.shutdown.in_flight(),
        1,
        "the head is sent, the body is not"
    );

    let drain = app.begin_drain().await;
    let mut body = response.into_body();
    for chunk in ["one\n", "two\n"] {
        timeout(BOUND, tx.send_data(Bytes::from_static(chunk.as_bytes())))
            .await
            .expect("send in time")
            .expect("client still reading");
        let frame = timeout(BOUND, body.frame())
            .await
            .expect("frame in time")
            .expect("a frame")
            .expect("data");
        assert_eq!(
            frame.into_data().ok(),
            Some(Bytes::from_static(chunk.as_bytes()))
        );
        assert!(!drain.is_finished(), "the stream is still open");
        assert_eq!(app.shutdown.in_flight(), 1);
    }

    drop(tx);
    let end = timeout(BOUND, body.frame()).await.expect("end in time");
    assert!(end.is_none(), "the stream ended");
    let summary = timeout(BOUND, drain)
        .await
        .expect("the drain ends with the body")
        .expect("drain task");
    assert_eq!(summary.drained(), 1);
    assert_eq!(summary.interrupted, 0);
}

/// Reads one HTTP/1.1 response head from a raw socket.
async fn read_head(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<String, std::io::Error> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Sends a `size`-byte POST while reading the response head; returns the head and
/// whether the whole body could be sent. The socket stays fully open until the head has
/// been read, as a real client keeps it (a half-close would tell hyper to hang up).
async fn post(addr: SocketAddr, size: usize) -> (String, Result<(), std::io::Error>) {
    let stream = timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let head =
            format!("POST /telemetry HTTP/1.1\r\nhost: test\r\ncontent-length: {size}\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = size;
        let mut sent = writer.write_all(head.as_bytes()).await;
        while sent.is_ok() && left > 0 {
            let n = left.min(chunk.len());
            sent = writer.write_all(&chunk[..n]).await;
            left -= n;
        }
        (writer, sent)
    });
    let head = timeout(BOUND, read_head(&mut reader))
        .await
        .expect("response in time")
        .unwrap_or_else(|e| panic!("{size}-byte POST: no response received: {e}"));
    let (_writer, sent) = timeout(BOUND, sending)
        .await
        .expect("body sent in time")
        .expect("sender task");
    (head, sent)
}

/// The server answers `503` without handing the request to the application. Closing
/// the socket with the body unread would make the kernel send a reset, and a client
/// still sending its body gets a write error instead of the answer. So the body is read
/// and thrown away (up to the layer's limit) and the `503` delivered. 8 MiB is well
/// above the loopback socket buffers, which would otherwise absorb the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_arrives_during_the_drain_gets_its_503_not_a_reset() {
    let app = App::new(ShutdownConfig::new()).with_discard_limit(16 * 1024 * 1024);
    let addr = app.serve().await;
    let _drain = app.begin_drain().await;

    for size in [0, 16 * 1024, 256 * 1024, 8 * 1024 * 1024] {
        let (head, sent) = post(addr, size).await;
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 10\r\n"),
            "{head}"
        );
        assert!(
            sent.is_ok(),
            "{size}-byte POST: the body was refused mid-way: {sent:?}"
        );
    }
}

/// The same POST against a layer that does not read rejected bodies: the client's
/// write fails (32 MiB: more than loopback socket buffers can absorb). This is what
/// the test above guards against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_discarding_a_large_rejected_post_is_cut_off() {
    let app = App::new(ShutdownConfig::new()).with_discard_limit(0);
    let addr = app.serve().await;
    let _drain = app.begin_drain().await;

    let (head, sent) = post(addr, 32 * 1024 * 1024).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(
        sent.is_err(),
        "the unread body was cut off by closing the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_releases_its_guard() {
    let app = App::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
    let addr = app.serve().await;

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    wait_until_in_flight(&app.shutdown, 1).await;
    drop(stream);

    // hyper sees the closed connection and drops the handler's future, and with it
    // the guard: the drain ends without the 30 s deadline.
    let drain = app.begin_drain().await;
    let summary = timeout(BOUND, drain)
        .await
        .expect("the drain ends")
        .expect("drain task");
    assert_eq!(summary.interrupted, 0);
    assert_eq!(app.shutdown.in_flight(), 0);
}
