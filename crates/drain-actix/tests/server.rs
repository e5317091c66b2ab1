//! `serve_server` with a real actix `HttpServer` on 127.0.0.1 port 0 and blocking
//! clients on their own threads. Every wait is bounded, so a bug fails instead of hanging.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use drain_actix::DrainLayer;
use shutdown_core::{Phase, Shutdown, ShutdownConfig, ShutdownReport};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves an app with `/slow` (a 30 s handler) and `/upload` on one worker with
/// [`drain_actix::serve_server`], while `client` runs on a blocking thread; returns the
/// report and what the client returned.
async fn with_server<T: Send + 'static>(
    listener: TcpListener,
    shutdown: Shutdown,
    configure: impl FnOnce(&mut Options),
    client: impl FnOnce(SocketAddr, Shutdown) -> T + Send + 'static,
) -> (ShutdownReport, T) {
    let mut options = Options {
        drain: DrainLayer::new(shutdown.clone()),
        half_closed: true,
    };
    configure(&mut options);
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let drain = options.drain;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(drain.clone())
            .route(
                "/slow",
                web::get().to(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    HttpResponse::Ok().body("done")
                }),
            )
            .route("/upload", web::post().to(|| async { "received" }))
    })
    .workers(1)
    .h1_allow_half_closed(options.half_closed);

    let client = {
        let shutdown = shutdown.clone();
        tokio::task::spawn_blocking(move || client(addr, shutdown))
    };
    let served = drain_actix::serve_server(listener, server, &shutdown);
    let (report, client) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(served, client)
    })
    .await
    .unwrap_or_else(|_| panic!("the test hung"));
    let report = report.unwrap_or_else(|e| panic!("serve: {e}"));
    (report, client.unwrap_or_else(|e| panic!("client: {e}")))
}

struct Options {
    drain: DrainLayer,
    half_closed: bool,
}

fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    stream
}

/// Reads a response's status line and headers (lower case).
fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Vec<String>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok((status, headers));
        }
        headers.push(line.trim().to_ascii_lowercase());
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_draining(shutdown: &Shutdown) {
    wait_until("draining", || shutdown.phase() >= Phase::Draining);
}

#[actix_web::test]
async fn a_post_rejected_during_the_drain_is_answered_after_its_body_is_read() {
    let shutdown = Shutdown::default();
    let held = shutdown.try_enter();
    let (report, answer) = with_server(
        bind(),
        shutdown,
        |_| {},
        move |addr, shutdown| {
            shutdown.request_shutdown("test");
            wait_draining(&shutdown);
            let mut stream = connect(addr);
            let size = 256 * 1024;
            let head =
                format!("POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: {size}\r\n\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(&vec![b'x'; size])?;
            let mut reader = BufReader::new(stream);
            let (status, headers) = read_head(&mut reader)?;
            let mut body = String::new();
            reader.read_to_string(&mut body)?;
            drop(held);
            Ok::<_, io::Error>((status, headers, body))
        },
    )
    .await;
    let (status, headers, body) = answer.unwrap_or_else(|e| panic!("the client lost the 503: {e}"));
    assert_eq!(status, 503);
    assert!(
        headers.contains(&"retry-after: 10".to_owned()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"connection: close".to_owned()),
        "{headers:?}"
    );
    assert_eq!(
        body,
        shutdown_core::REJECTION_MESSAGE,
        "read to the end: closed cleanly"
    );
    assert_eq!(report.drain.rejected, 1);
}

/// The documented limit: actix keeps running a handler whose client has gone, so its
/// guard is held until the deadline, where it counts as interrupted.
#[actix_web::test]
async fn a_client_that_disconnects_keeps_its_handler_in_flight_until_the_deadline() {
    let shutdown =
        Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_millis(500)));
    let (report, still_in_flight) = with_server(
        bind(),
        shutdown,
        |_| {},
        |addr, shutdown| {
            let mut stream = connect(addr);
            let _ = stream.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n");
            wait_until("the handler started", || shutdown.in_flight() == 1);
            drop(stream);
            std::thread::sleep(Duration::from_millis(300));
            let in_flight = shutdown.in_flight();
            shutdown.request_shutdown("test");
            in_flight
        },
    )
    .await;
    assert_eq!(still_in_flight, 1, "the handler outlived its client");
    assert_eq!(report.drain.interrupted, 1);
    assert_eq!(report.exit_code(), 3);
}

/// The knob the docs mention: with `h1_allow_half_closed(false)` actix drops the handler
/// once it sees the client's end of the connection close.
#[actix_web::test]
async fn without_half_closed_connections_a_disconnect_drops_the_handler() {
    let shutdown = Shutdown::default();
    let (report, released) = with_server(
        bind(),
        shutdown,
        |options| options.half_closed = false,
        |addr, shutdown| {
            let mut stream = connect(addr);
            let _ = stream.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n");
            wait_until("the handler started", || shutdown.in_flight() == 1);
            drop(stream);
            let released = Instant::now() + Duration::from_secs(5);
            while shutdown.in_flight() > 0 && Instant::now() < released {
                std::thread::sleep(Duration::from_millis(10));
            }
            shutdown.request_shutdown("test");
            shutdown.in_flight() == 0
        },
    )
    .await;
    assert!(released, "the guard was released when the client left");
    assert_eq!(report.drain.interrupted, 0);
}

/// After the drain deadline the server is stopped, bounded by `server_stop_timeout`
/// (rounded up to whole seconds) plus the margin, even with a handler still running;
/// the listener is closed by the time cleanup runs.
#[actix_web::test]
async fn the_server_stop_is_bounded_and_precedes_cleanup() {
    let shutdown = Shutdown::new(
        ShutdownConfig::new()
            .with_drain_timeout(Duration::from_millis(200))
            .with_server_stop_timeout(Duration::from_millis(300)),
    );
    let listener = bind();
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let listener_closed = Arc::new(AtomicBool::new(false));
    let closed = Arc::clone(&listener_closed);
    shutdown.register_cleanup("check the listener", move || {
        let refused = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err();
        closed.store(refused, Ordering::SeqCst);
    });
    let (report, stopped_after) = with_server(
        listener,
        shutdown,
        |_| {},
        |addr, shutdown| {
            let mut stream = connect(addr);
            let _ = stream.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n");
            wait_until("the handler started", || shutdown.in_flight() == 1);
            let triggered = Instant::now();
            shutdown.request_shutdown("test");
            wait_until("cleanup", || shutdown.phase() >= Phase::CleaningUp);
            triggered.elapsed()
        },
    )
    .await;
    assert_eq!(report.drain.interrupted, 1);
    // The drain deadline, then the stop: 300 ms round up to actix's 1 s.
    let bound = Duration::from_millis(200) + Duration::from_secs(1) + shutdown_core::STOP_GRACE;
    assert!(stopped_after < bound, "took {stopped_after:?}");
    assert!(
        listener_closed.load(Ordering::SeqCst),
        "the listener was closed before cleanup ran"
    );
}

/// `serve` needs no actix `System`: a plain `#[tokio::main]` runtime works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_on_a_plain_tokio_runtime() {
    let shutdown = Shutdown::default();
    let (report, status) = with_server(
        bind(),
        shutdown,
        |_| {},
        |addr, shutdown| {
            let mut stream = connect(addr);
            stream
                .write_all(b"POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n")?;
            let (status, _) = read_head(&mut BufReader::new(stream))?;
            shutdown.request_shutdown("test");
            Ok::<_, io::Error>(status)
        },
    )
    .await;
    assert_eq!(status.unwrap_or_else(|e| panic!("{e}")), 200);
    assert!(report.is_clean());
}
