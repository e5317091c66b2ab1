//! `drain-poem` over real sockets: poem's server, hyper underneath, a raw HTTP/1.1
//! client. Each wait is bounded, so a bug fails the test instead of hanging it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use drain_poem::{DrainLayer, ServeError, health_routes};
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Body, EndpointExt, Route, Server, get, handler, post};
use shutdown_core::{RequestGate, Shutdown, ShutdownConfig, ShutdownReport, Trigger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

#[handler]
fn hello() -> &'static str {
    "hello"
}

#[handler]
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(500)).await;
    "done"
}

#[handler]
async fn stuck() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "never"
}

#[handler]
fn endless() -> Body {
    let (sender, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(1);
    tokio::spawn(async move {
        let mut sender = sender;
        while sender
            .send_data(Bytes::from_static(b"tick\n"))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Body::from(http_body_util::combinators::BoxBody::new(body))
}

#[handler]
async fn upload(body: Body) -> poem::Result<String> {
    Ok(format!("received {} bytes", body.into_bytes().await?.len()))
}

fn app(shutdown: &Shutdown, drain: DrainLayer) -> impl poem::Endpoint + 'static {
    Route::new()
        .at("/", get(hello))
        .at("/slow", get(slow))
        .at("/stuck", get(stuck))
        .at("/endless", get(endless))
        .at("/upload", post(upload))
        .nest("/health", health_routes(shutdown.clone()))
        .with(drain)
}

/// Serves on 127.0.0.1:0; returns the address and the task that yields the report.
async fn start(
    shutdown: &Shutdown,
    drain: DrainLayer,
) -> (SocketAddr, JoinHandle<Result<ShutdownReport, ServeError>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
    let app = app(shutdown, drain);
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move { drain_poem::serve(acceptor, app, &shutdown).await });
    (addr, task)
}

async fn finished(task: JoinHandle<Result<ShutdownReport, ServeError>>) -> ShutdownReport {
    timeout(BOUND, task)
        .await
        .expect("serve returns in time")
        .expect("serve task")
        .expect("no server error")
}

async fn send(addr: SocketAddr, request: &str) -> TcpStream {
    let mut stream = timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

/// Reads until the peer closes; returns everything.
async fn read_all(mut stream: TcpStream) -> String {
    let mut out = Vec::new();
    timeout(BOUND, stream.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_close(addr: SocketAddr, path: &str) -> String {
    let stream = send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"),
    )
    .await;
    read_all(stream).await
}

async fn wait_until_in_flight(shutdown: &Shutdown, n: usize) {
    timeout(BOUND, async {
        while shutdown.in_flight() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("in flight never reached {n}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_stays_open_during_the_drain_and_cleanup_runs_after_it_closed() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
    let (addr, task) = start(&shutdown, DrainLayer::new(shutdown.clone())).await;
    let closed_at_cleanup = Arc::new(AtomicBool::new(false));
    shutdown.register_cleanup("check listener", {
        let closed = closed_at_cleanup.clone();
        move || {
            let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
            closed.store(refused, Ordering::SeqCst);
        }
    });

    let in_flight = tokio::spawn(get_close(addr, "/slow"));
    wait_until_in_flight(&shutdown, 1).await;
    shutdown.request_shutdown("test");
    shutdown.reached(shutdown_core::Phase::Draining).await;

    let rejected = get_close(addr, "/").await;
    assert!(
        rejected.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{rejected}"
    );
    assert!(rejected.contains("retry-after: 10\r\n"), "{rejected}");
    assert!(
        rejected.ends_with(shutdown_core::REJECTION_MESSAGE),
        "{rejected}"
    );
    let ready = get_close(addr, "/health/ready").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");

    let served = in_flight.await.expect("client");
    assert!(served.starts_with("HTTP/1.1 200 OK\r\n"), "{served}");
    assert!(served.ends_with("done"), "{served}");

    let report = finished(task).await;
    assert_eq!(report.drain.drained(), 1);
    assert_eq!(report.drain.interrupted, 0);
    assert_eq!(report.drain.rejected, 1);
    assert!(
        closed_at_cleanup.load(Ordering::SeqCst),
        "cleanup ran before the listener closed"
    );
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stop_timeout_bounds_an_endless_stream_and_a_stuck_handler() {
    let config = ShutdownConfig::new()
        .with_drain_timeout(Duration::from_millis(200))
        .with_server_stop_timeout(Duration::from_millis(200));
    let shutdown = Shutdown::new(config);
    let (addr, task) = start(&shutdown, DrainLayer::new(shutdown.clone())).await;

    let mut stream = send(addr, "GET /endless HTTP/1.1\r\nhost: test\r\n\r\n").await;
    let mut first = [0u8; 12];
    timeout(BOUND, stream.read_exact(&mut first))
        .await
        .expect("stream started")
        .expect("read");
    let _stuck = send(addr, "GET /stuck HTTP/1.1\r\nhost: test\r\n\r\n").await;
    wait_until_in_flight(&shutdown, 2).await;

    let started = Instant::now();
    shutdown.request_shutdown("test");
    let report = finished(task).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "poem waited past its timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(report.drain.interrupted, 2);
    assert_eq!(report.exit_code(), 3);
    // poem dropped both connections, and with them the guards.
    wait_until_in_flight(&shutdown, 0).await;
    drop(stream);
}

/// poem 3.1 does not cancel a handler whose client hangs up. hyper notices the closed
/// connection at once and returns its error, but poem's `serve_connection` then calls
/// `graceful_shutdown()` on that finished connection and awaits it again, which polls
/// the handler's future on to its end. So the guard is held until the handler returns
/// or, past the drain deadline, until `server_stop_timeout` drops the connection. This
/// is why the poem probe declares `disconnect_cancels_handler: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_does_not_cancel_its_handler() {
    let config = ShutdownConfig::new()
        .with_drain_timeout(Duration::from_millis(300))
        .with_server_stop_timeout(Duration::from_millis(200));
    let shutdown = Shutdown::new(config);
    let (addr, task) = start(&shutdown, DrainLayer::new(shutdown.clone())).await;

    let finite = send(addr, "GET /slow HTTP/1.1\r\nhost: test\r\n\r\n").await;
    wait_until_in_flight(&shutdown, 1).await;
    drop(finite);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        shutdown.in_flight(),
        1,
        "the handler runs on without its client"
    );
    // `/slow` takes 500 ms and then releases its guard: it ran to its end.
    wait_until_in_flight(&shutdown, 0).await;

    let hung = send(addr, "GET /stuck HTTP/1.1\r\nhost: test\r\n\r\n").await;
    wait_until_in_flight(&shutdown, 1).await;
    drop(hung);
    shutdown.request_shutdown("test");
    let report = finished(task).await;
    assert_eq!(report.drain.interrupted, 1, "held until the deadline");
    assert_eq!(report.exit_code(), 3);
    // The stop timeout dropped the connection, and the handler with it.
    wait_until_in_flight(&shutdown, 0).await;
}

/// Sends a `size`-byte POST while reading the response head; returns the head and
/// whether the whole body could be sent. The socket stays open until the head is read.
async fn post_body(addr: SocketAddr, size: usize) -> (String, Result<(), std::io::Error>) {
    let stream = timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: {size}\r\n\r\n");
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
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(BOUND, reader.read(&mut byte))
            .await
            .expect("response in time")
            .unwrap_or_else(|e| panic!("{size}-byte POST: no response: {e}"));
        assert!(n > 0, "{size}-byte POST: closed before the response head");
        head.push(byte[0]);
    }
    let (_writer, sent) = timeout(BOUND, sending)
        .await
        .expect("body sent in time")
        .expect("sender task");
    (String::from_utf8_lossy(&head).into_owned(), sent)
}

/// Serves and begins the drain; a request left in flight (the returned connection)
/// keeps the drain, and so the listener, open for the test.
async fn draining(drain: impl FnOnce(Shutdown) -> DrainLayer) -> (SocketAddr, TcpStream) {
    let shutdown = Shutdown::default();
    let (addr, _task) = start(&shutdown, drain(shutdown.clone())).await;
    let held = send(addr, "GET /stuck HTTP/1.1\r\nhost: test\r\n\r\n").await;
    wait_until_in_flight(&shutdown, 1).await;
    shutdown.request_shutdown("test");
    shutdown.reached(shutdown_core::Phase::Draining).await;
    (addr, held)
}

/// Under poem as under plain hyper, a rejected request whose body is still arriving
/// must have that body read: otherwise the connection closes with unread input, the
/// kernel resets it, and the client's upload fails instead of ending with the `503`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_arrives_during_the_drain_gets_its_503_not_a_reset() {
    let (addr, _held) = draining(|shutdown| {
        DrainLayer::from_gate(RequestGate::new(shutdown).with_discard_limit(16 * 1024 * 1024))
    })
    .await;
    for size in [0, 16 * 1024, 256 * 1024, 8 * 1024 * 1024] {
        let (head, sent) = post_body(addr, size).await;
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 10\r\n"), "{head}");
        assert!(
            sent.is_ok(),
            "{size}-byte POST: the body was refused mid-way: {sent:?}"
        );
    }
}

/// What the test above guards against: with nothing discarded, a 32 MiB upload (more
/// than the loopback socket buffers absorb) is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_discarding_a_large_rejected_post_is_cut_off() {
    let (addr, _held) = draining(|shutdown| {
        DrainLayer::from_gate(RequestGate::new(shutdown).with_discard_limit(0))
    })
    .await;
    let (head, sent) = post_body(addr, 32 * 1024 * 1024).await;
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
async fn a_server_that_cannot_bind_is_an_error_and_the_shutdown_still_runs() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = taken.local_addr().expect("address");
    let shutdown = Shutdown::default();
    let cleaned = Arc::new(AtomicBool::new(false));
    shutdown.register_cleanup("flush", {
        let cleaned = cleaned.clone();
        move || cleaned.store(true, Ordering::SeqCst)
    });

    let server = Server::new(TcpListener::bind(addr));
    let app = app(&shutdown, DrainLayer::new(shutdown.clone()));
    let error = timeout(BOUND, drain_poem::serve_server(server, app, &shutdown))
        .await
        .expect("returns in time")
        .expect_err("the address is taken");
    assert_eq!(error.io_error().kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        error.to_string().starts_with("the server failed: "),
        "{error}"
    );
    assert!(matches!(
        &error.report().drain.trigger,
        Trigger::TaskFailed { task, .. } if task == shutdown_core::SERVER_TASK
    ));
    assert!(cleaned.load(Ordering::SeqCst));
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_acceptor_tells_its_real_port() {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind");
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a socket address");
    assert_ne!(addr.port(), 0);
    let shutdown = Shutdown::default();
    let app = app(&shutdown, DrainLayer::new(shutdown.clone()));
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { drain_poem::serve(acceptor, app, &shutdown).await }
    });
    let response = get_close(addr, "/").await;
    assert!(response.ends_with("hello"), "{response}");
    shutdown.request_shutdown("test");
    assert_eq!(finished(task).await.exit_code(), 0);
}
