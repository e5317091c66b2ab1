//! Pins a limit of actix-web 4: stopping the server sends no HTTP/2 `GOAWAY`.
//!
//! actix-http's HTTP/2 dispatcher has no API to send `GOAWAY` when the server stops: a
//! graceful stop (`ServerHandle::stop(true)`, as `serve_server` does once the drain has
//! ended) only waits for the workers' connections, up to the server's
//! `shutdown_timeout`, and then drops them. (With actix-server 2.6 a worker may also
//! exit at once, when the stopped acceptor closes its channel before the worker has
//! read the stop message: the idle connection then closes within a millisecond instead
//! of a second. Both happen here; neither sends `GOAWAY`.) An HTTP/2 client just sees
//! its connection close, with no word on which streams were processed. The docs say so
//! (`docs/adapters.md`, the crate's README); this file pins it.
//!
//! - `stopping_the_server_sends_no_http2_goaway`: an actix-web app wrapped in
//!   [`Drain`], served over cleartext HTTP/2 with prior knowledge (h2c) by
//!   [`drain_actix::serve_server`], answers one request on a raw HTTP/2 connection;
//!   then the shutdown is triggered, the server stops and the connection closes
//!   without a `GOAWAY` frame.
//! - `a_hyper_http2_server_does_send_goaway`: the same client against a plain hyper
//!   HTTP/2 connection shut down with `graceful_shutdown()` sees `GOAWAY`, which
//!   proves the client can tell the difference.
//!
//! If a future actix-web sends `GOAWAY` on stop, the first test fails: update the docs
//! (the README's pitfall, `docs/adapters.md`) and turn this test around.
//!
//! The client is a blocking `TcpStream` on its own thread speaking just enough HTTP/2
//! by hand (RFC 9113): the preface, `SETTINGS` and `PING` acknowledgements, one `GET /`
//! encoded with HPACK static-table entries. Every wait is bounded, so a bug fails
//! instead of hanging.

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use bytes::Bytes;
use drain_actix::DrainLayer;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shutdown_core::Shutdown;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

// Frame flags.
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// `:status 200`, HPACK static table index 8: how the `h2` crate (under both actix and
/// hyper) encodes a `200` as the first field of a response.
const STATUS_200: u8 = 0x88;

/// One HTTP/2 frame: the 9-byte header (24-bit length, type, flags, 31-bit stream id)
/// and the payload.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Writes one frame.
fn write_frame(
    out: &mut impl Write,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len < 1 << 24)
        .ok_or_else(|| io::Error::other("frame payload too long"))?
        .to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    out.write_all(&frame)
}

/// Reads one frame; `None` when the peer closed the connection between frames.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut head = [0; 9];
    let mut filled = 0;
    while filled < head.len() {
        match input.read(&mut head[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    input.read_exact(&mut payload)?;
    Ok(Some(Frame {
        kind: head[3],
        flags: head[4],
        stream,
        payload,
    }))
}

/// Acknowledges the peer's `SETTINGS` and `PING` frames, as a client must.
fn acknowledge(out: &mut impl Write, frame: &Frame) -> io::Result<()> {
    match frame.kind {
        SETTINGS if frame.flags & ACK == 0 => write_frame(out, SETTINGS, ACK, 0, &[]),
        PING if frame.flags & ACK == 0 => write_frame(out, PING, ACK, 0, &frame.payload),
        _ => Ok(()),
    }
}

/// The HPACK block of `GET http://{addr}/`: `:method GET` (static index 2), `:scheme
/// http` (6), `:path /` (4), then `:authority` as a literal without indexing, its name
/// from static index 1.
fn get_request(addr: SocketAddr) -> Vec<u8> {
    let authority = addr.to_string();
    let mut block = vec![0x82, 0x86, 0x84, 0x01];
    block.push(u8::try_from(authority.len()).unwrap_or_else(|e| panic!("{e}")) & 0x7f);
    block.extend_from_slice(authority.as_bytes());
    block
}

/// What the raw client saw.
#[derive(Debug)]
struct Seen {
    /// The first byte of the response's header block (`STATUS_200` for a `200`).
    status: Option<u8>,
    /// Every frame received after the trigger, in order.
    after_trigger: Vec<Frame>,
    /// How the connection ended: `"eof"` or `"reset"`.
    ended: &'static str,
}

impl Seen {
    fn kinds_after_trigger(&self) -> Vec<u8> {
        self.after_trigger.iter().map(|frame| frame.kind).collect()
    }
}

/// Opens an HTTP/2 connection with prior knowledge, makes one `GET /` on stream 1 and
/// reads its response to the end, calls `trigger`, then reads frames until the server
/// closes the connection, acknowledging `SETTINGS` and `PING` throughout.
fn h2_client(addr: SocketAddr, trigger: impl FnOnce()) -> io::Result<Seen> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(PREFACE)?;
    write_frame(&mut stream, SETTINGS, 0, 0, &[])?;
    write_frame(
        &mut stream,
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_request(addr),
    )?;

    let mut status = None;
    loop {
        let frame = read_frame(&mut stream)?
            .ok_or_else(|| io::Error::other("closed before the response ended"))?;
        acknowledge(&mut stream, &frame)?;
        if frame.stream == 1 && frame.kind == HEADERS && status.is_none() {
            status = frame.payload.first().copied();
        }
        if frame.stream == 1
            && matches!(frame.kind, HEADERS | DATA)
            && frame.flags & END_STREAM != 0
        {
            break;
        }
    }

    trigger();
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut after_trigger = Vec::new();
    let ended = loop {
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "the connection stayed open; frames so far: {after_trigger:?}"
            )));
        }
        match read_frame(&mut stream) {
            Ok(Some(frame)) => {
                // The server may close before an acknowledgement arrives: reading decides.
                let _ = acknowledge(&mut stream, &frame);
                after_trigger.push(frame);
            }
            Ok(None) => break "eof",
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => return Err(e),
        }
    };
    Ok(Seen {
        status,
        after_trigger,
        ended,
    })
}

fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"))
}

/// `serve_server` attaches its own listener with actix's plain `listen`, which speaks
/// HTTP/1.x only; the h2c listener is added beforehand with `listen_auto_h2c` (actix-web's
/// `http2` feature), so one server serves both and `serve_server` stops both.
#[actix_web::test]
async fn stopping_the_server_sends_no_http2_goaway() {
    let shutdown = Shutdown::default();
    let drain = DrainLayer::new(shutdown.clone());
    let h2c = bind();
    let addr = h2c.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let server = HttpServer::new(move || {
        App::new()
            .wrap(drain.clone())
            .route("/", web::get().to(|| async { "hello" }))
    })
    .workers(1)
    .listen_auto_h2c(h2c)
    .unwrap_or_else(|e| panic!("listen_auto_h2c: {e}"));

    let client = {
        let shutdown = shutdown.clone();
        tokio::task::spawn_blocking(move || {
            h2_client(addr, || {
                shutdown.request_shutdown("test");
            })
        })
    };
    let served = drain_actix::serve_server(bind(), server, &shutdown);
    let (report, seen) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(served, client)
    })
    .await
    .unwrap_or_else(|_| panic!("the test hung"));
    let report = report.unwrap_or_else(|e| panic!("serve: {e}"));
    let seen = seen
        .unwrap_or_else(|e| panic!("client: {e}"))
        .unwrap_or_else(|e| panic!("client: {e}"));

    assert_eq!(
        seen.status,
        Some(STATUS_200),
        "served over HTTP/2: {seen:?}"
    );
    assert_eq!(
        report.exit_code(),
        0,
        "the server stopped after a clean drain"
    );
    assert_eq!(report.drain.interrupted, 0);
    assert_eq!(
        seen.ended, "eof",
        "the server closed the connection: {seen:?}"
    );
    assert!(
        !seen.kinds_after_trigger().contains(&GOAWAY),
        "actix-web now sends GOAWAY on stop: update the docs and this test. {seen:?}"
    );
}

/// The control: hyper's `graceful_shutdown()` on an HTTP/2 connection sends `GOAWAY`,
/// and the raw client sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hyper_http2_server_does_send_goaway() {
    let listener = bind();
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
    let (trigger, triggered) = tokio::sync::oneshot::channel::<()>();

    let server = async move {
        let (stream, _) = listener.accept().await?;
        let service = service_fn(|_request| async {
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                b"hello",
            ))))
        });
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => return result.map_err(io::Error::other),
            _ = triggered => connection.as_mut().graceful_shutdown(),
        }
        connection.await.map_err(io::Error::other)
    };
    let client = tokio::task::spawn_blocking(move || {
        h2_client(addr, move || {
            let _ = trigger.send(());
        })
    });
    let (served, seen) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(server, client)
    })
    .await
    .unwrap_or_else(|_| panic!("the test hung"));
    served.unwrap_or_else(|e| panic!("hyper: {e}"));
    let seen = seen
        .unwrap_or_else(|e| panic!("client: {e}"))
        .unwrap_or_else(|e| panic!("client: {e}"));

    assert_eq!(
        seen.status,
        Some(STATUS_200),
        "served over HTTP/2: {seen:?}"
    );
    assert!(
        seen.kinds_after_trigger().contains(&GOAWAY),
        "hyper sends GOAWAY on a graceful shutdown: {seen:?}"
    );
    // A graceful GOAWAY: last stream id, then error code NO_ERROR (RFC 9113 §6.8).
    assert!(
        seen.after_trigger
            .iter()
            .filter(|frame| frame.kind == GOAWAY)
            .all(|frame| frame.payload.get(4..8) == Some(&[0; 4][..])),
        "{seen:?}"
    );
    assert_eq!(seen.ended, "eof", "{seen:?}");
}
