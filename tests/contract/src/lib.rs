//! The drain contract of `docs/adapters.md`, written once and run in process against
//! every adapter: [`contract_tests!`] expands to one `#[test]` per scenario for a type
//! implementing [`Adapter`]. A dev-dependency of the adapters, never published.
//!
//! An adapter's harness serves the contract's routes behind its middleware and maps
//! requests and responses between its framework's types and the plain ones here
//! ([`Request`], [`Response`]); the scenarios decide nothing about a framework.
//!
//! The routes every harness serves (each counts its call with [`Routes::called`]):
//!
//! - `GET /` and `HEAD /` → `200 ok`;
//! - `GET /stream` → `200`, a body of the chunks the test feeds through
//!   [`Routes::stream`], ending when the test drops the sender;
//! - `GET /upgrade` → `101 Switching Protocols` with `Connection: upgrade` and
//!   `Upgrade: websocket` (the handshake only: nothing is upgraded in process);
//! - `POST /upload` → reads the whole body, `200 received <n> bytes`;
//! - `GET /wait` → waits for [`Routes::release`], then `200 done`;
//! - `GET /fail` → the handler fails (an error of the framework's kind, `500`);
//! - `GET /forever` → never answers;
//! - `GET /drain-signal` → takes the adapter's drain signal extractor (`OnDrain`),
//!   waits for it, then `200 drain began`;
//! - `GET /events` → the adapter's SSE helper over the data the test feeds through
//!   [`Routes::events`], one event (`data: <text>`) each;
//! - `/health/live` and `/health/ready` from the adapter's health routes.

#![deny(missing_docs)]

#[cfg(feature = "http")]
pub mod http1;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use shutdown_core::{DrainSummary, REJECTION_MESSAGE, RequestGate, Shutdown, ShutdownConfig};
use tokio::sync::{Notify, mpsc};

/// The `Retry-After` the scenarios configure (not the default, so that a harness that
/// ignores the configuration fails).
pub const RETRY_AFTER_SECS: u64 = 7;

/// An adapter under test: its middleware around the contract's routes, in process.
pub trait Adapter: Sized {
    /// Serves the contract's routes (see the [crate docs](crate)) behind the adapter's
    /// middleware, built from `gate`, and its health routes on `gate.shutdown()`.
    fn build(gate: RequestGate, routes: Routes) -> impl Future<Output = Self>;

    /// Sends `request` through the middleware. An error the handler returns becomes
    /// the response the framework would send for it.
    fn send(&self, request: Request) -> impl Future<Output = Response>;

    /// Runs a scenario on the runtime the framework needs.
    fn block_on(scenario: impl Future<Output = ()>);
}

/// Runs `scenario` on a current-thread tokio runtime: [`Adapter::block_on`] for
/// frameworks that need nothing more.
pub fn block_on_tokio(scenario: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(scenario);
}

/// The request methods the scenarios use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
}

/// The HTTP versions the scenarios use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
    /// HTTP/2
    Http2,
}

impl Version {
    /// Every version, for scenarios that hold for all of them.
    pub const ALL: [Version; 3] = [Version::Http10, Version::Http11, Version::Http2];

    /// `true` for HTTP/1.0 and HTTP/1.1.
    pub fn is_http1(self) -> bool {
        self != Version::Http2
    }
}

/// A request in plain values.
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: &'static str,
    /// The HTTP version.
    pub version: Version,
    /// The body; `None` is an empty body.
    pub body: Option<Upload>,
}

impl Request {
    /// `GET path` over HTTP/1.1.
    pub fn get(path: &'static str) -> Self {
        Self {
            method: Method::Get,
            path,
            version: Version::Http11,
            body: None,
        }
    }

    /// `HEAD path` over HTTP/1.1.
    pub fn head(path: &'static str) -> Self {
        Self {
            method: Method::Head,
            ..Self::get(path)
        }
    }

    /// `POST /upload` with `upload` as its body, over HTTP/1.1.
    pub fn upload(upload: Upload) -> Self {
        Self {
            method: Method::Post,
            path: "/upload",
            version: Version::Http11,
            body: Some(upload),
        }
    }

    /// The same request over `version`.
    pub fn over(mut self, version: Version) -> Self {
        self.version = version;
        self
    }
}

/// A request body of `chunks` chunks of [`Upload::CHUNK`] bytes that counts the bytes
/// read from it, so that a scenario can tell whether and when the middleware read it.
#[derive(Debug)]
pub struct Upload {
    left: usize,
    read: Arc<AtomicU64>,
}

impl Upload {
    /// Bytes per chunk.
    pub const CHUNK: usize = 1024;

    /// A body of `chunks` chunks, and the count of bytes read from it.
    pub fn new(chunks: usize) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            Self {
                left: chunks,
                read: Arc::clone(&read),
            },
            read,
        )
    }
}

impl Stream for Upload {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        this.left -= 1;
        this.read.fetch_add(Upload::CHUNK as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Bytes::from_static(&[b'x'; Upload::CHUNK]))))
    }
}

/// A response body, read chunk by chunk.
pub trait Chunks {
    /// The next chunk, `None` at the end, or the body's error.
    fn poll_chunk(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, String>>>;
}

/// A response in plain values.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Every header, names in lower case, in the order the framework gives them. A
    /// harness whose framework keeps the connection's fate outside the header map (actix)
    /// adds the `connection` header that would be written.
    pub headers: Vec<(String, String)>,
    /// The body, unread.
    pub body: Pin<Box<dyn Chunks>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The value of header `name`, if there is exactly one.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "more than one {name} header");
        first
    }

    /// The tokens of the `connection` header, in lower case.
    pub fn connection(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .map(|token| token.trim().to_ascii_lowercase())
            .collect()
    }

    /// `true` when the response asks to close the connection.
    pub fn closes(&self) -> bool {
        self.connection().iter().any(|token| token == "close")
    }

    /// The next chunk of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.body.as_mut().poll_chunk(cx))
            .await
            .map(|chunk| chunk.expect("the body fails"))
    }

    /// The whole body as text.
    pub async fn text(mut self) -> String {
        let mut text = Vec::new();
        while let Some(chunk) = self.chunk().await {
            text.extend_from_slice(&chunk);
        }
        String::from_utf8(text).expect("a UTF-8 body")
    }
}

/// The shared state of the contract's handlers.
#[derive(Clone, Default)]
pub struct Routes {
    calls: Arc<AtomicUsize>,
    stream: Arc<Mutex<Option<mpsc::UnboundedReceiver<io::Result<Bytes>>>>>,
    events: Arc<Mutex<Option<mpsc::UnboundedReceiver<String>>>>,
    release: Arc<Notify>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Counts a call of a handler: every handler calls it first.
    pub fn called(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    /// Handler calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A sender whose chunks (or error) the next `GET /stream` body yields; the body
    /// ends when the sender is dropped.
    pub fn stream(&self) -> mpsc::UnboundedSender<io::Result<Bytes>> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.stream.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
        tx
    }

    /// The body of `GET /stream`: what the test sends through [`stream`](Self::stream).
    pub fn stream_body(&self) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + use<> {
        let rx = self
            .stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        StreamBody { rx }
    }

    /// A sender whose texts the next `GET /events` sends as events (`data: <text>`).
    pub fn events(&self) -> mpsc::UnboundedSender<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
        tx
    }

    /// The data of `GET /events`' events: what the test sends through
    /// [`events`](Self::events). Never ends by itself while the sender lives.
    pub fn events_data(&self) -> impl Stream<Item = String> + Send + use<> {
        let rx = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        StreamBody { rx }
    }

    /// Lets one waiting `GET /wait` answer.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// What `GET /wait` awaits.
    pub async fn released(&self) {
        self.release.notified().await;
    }
}

struct StreamBody<T> {
    rx: Option<mpsc::UnboundedReceiver<T>>,
}

impl<T> Stream for StreamBody<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.rx.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}

/// Where the shutdown stands when a scenario sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    PreStop,
    Draining,
}

/// One adapter built for a scenario, with its shutdown and handlers.
struct Setup<A> {
    shutdown: Shutdown,
    routes: Routes,
    app: A,
}

impl<A: Adapter> Setup<A> {
    async fn new() -> Self {
        Self::with(|gate| gate).await
    }

    async fn with(configure: impl FnOnce(RequestGate) -> RequestGate) -> Self {
        Self::build(Duration::ZERO, configure).await
    }

    /// For `stage`: a pre-stop delay long enough never to end during a test for
    /// [`Stage::PreStop`], none otherwise, so that [`drain`](Self::drain) begins at once.
    async fn in_stage(stage: Stage) -> Self {
        let delay = match stage {
            Stage::PreStop => Duration::from_secs(3600),
            Stage::Running | Stage::Draining => Duration::ZERO,
        };
        Self::build(delay, |gate| gate).await
    }

    async fn build(
        pre_stop_delay: Duration,
        configure: impl FnOnce(RequestGate) -> RequestGate,
    ) -> Self {
        let config = ShutdownConfig::new()
            .with_retry_after(Duration::from_secs(RETRY_AFTER_SECS))
            .with_pre_stop_delay(pre_stop_delay)
            .with_drain_timeout(Duration::from_secs(60));
        let shutdown = Shutdown::new(config);
        let routes = Routes::default();
        let app = A::build(
            configure(RequestGate::new(shutdown.clone())),
            routes.clone(),
        )
        .await;
        Self {
            shutdown,
            routes,
            app,
        }
    }

    async fn send(&self, request: Request) -> Response {
        self.app.send(request).await
    }

    /// Moves the shutdown to `stage`: nothing, the trigger, or the trigger and the drain.
    async fn enter(&self, stage: Stage) -> Option<Pin<Box<dyn Future<Output = DrainSummary>>>> {
        match stage {
            Stage::Running => None,
            Stage::PreStop => {
                self.shutdown.request_shutdown("contract: pre-stop");
                None
            }
            Stage::Draining => Some(self.drain().await),
        }
    }

    /// Triggers the shutdown and begins the drain at once; the returned future ends
    /// with the drain.
    async fn drain(&self) -> Pin<Box<dyn Future<Output = DrainSummary>>> {
        // Without a pre-stop delay, one poll begins the drain.
        let shutdown = self.shutdown.clone();
        shutdown.request_shutdown("contract: drain");
        let mut drain: Pin<Box<dyn Future<Output = DrainSummary>>> =
            Box::pin(async move { shutdown.drain().await });
        std::future::poll_fn(|cx| {
            if let Poll::Ready(summary) = drain.as_mut().poll(cx) {
                let done = summary.clone();
                drain = Box::pin(async move { done });
            }
            Poll::Ready(())
        })
        .await;
        assert!(self.shutdown.is_draining(), "the drain has begun");
        drain
    }
}

/// Asserts a response served normally (`expected` status) and its `Connection` header
/// in `stage` over `version`.
fn assert_served(response: &Response, expected: u16, stage: Stage, version: Version, what: &str) {
    assert_eq!(
        response.status, expected,
        "{what} over {version:?} in {stage:?}"
    );
    let closes = stage != Stage::Running && version.is_http1();
    assert_eq!(
        response.closes(),
        closes,
        "{what} over {version:?} in {stage:?}: Connection: close {}",
        if closes { "expected" } else { "unexpected" }
    );
}

/// Asserts the `503` of a rejection over `version`.
async fn assert_rejected(response: Response, version: Version, what: &str) {
    assert_eq!(response.status, 503, "{what} over {version:?}");
    let retry_after = RETRY_AFTER_SECS.to_string();
    assert_eq!(
        response.header("retry-after"),
        Some(retry_after.as_str()),
        "{what}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{what}"
    );
    assert_eq!(
        response.closes(),
        version.is_http1(),
        "{what} over {version:?}"
    );
    if version == Version::Http2 {
        assert!(
            response.connection().is_empty(),
            "no Connection header on HTTP/2"
        );
    }
    assert_eq!(response.text().await, REJECTION_MESSAGE, "{what}");
}

// ----- the scenarios ------------------------------------------------------------------

/// Before the trigger, every version: requests are served and counted until their body
/// has ended, exempt paths are served uncounted, an upgrade keeps its connection, and
/// nothing asks to close the connection.
pub async fn before_the_trigger_requests_are_served_and_keep_their_connection<A: Adapter>() {
    rules_in_stage::<A>(Stage::Running).await;
}

/// During the pre-stop delay, every version: requests are still served, readiness is
/// `503`, and HTTP/1.x responses (exempt ones included) carry `Connection: close`,
/// except a `101` upgrade, which keeps `Connection: upgrade`.
pub async fn during_the_pre_stop_delay_requests_are_served_with_connection_close<A: Adapter>() {
    rules_in_stage::<A>(Stage::PreStop).await;
}

/// During the drain, every version: new requests get the `503` without reaching the
/// handler (an upgrade too), exempt paths are still served, and HTTP/1.x responses
/// carry `Connection: close`.
pub async fn during_the_drain_new_requests_get_503_and_exempt_paths_are_served<A: Adapter>() {
    rules_in_stage::<A>(Stage::Draining).await;
}

async fn rules_in_stage<A: Adapter>(stage: Stage) {
    for version in Version::ALL {
        let setup = Setup::<A>::in_stage(stage).await;
        let _drain = setup.enter(stage).await;
        let shutdown = &setup.shutdown;

        // An ordinary request.
        let response = setup.send(Request::get("/").over(version)).await;
        if stage == Stage::Draining {
            assert_rejected(response, version, "GET /").await;
            assert_eq!(
                setup.routes.calls(),
                0,
                "a rejected request reaches no handler"
            );
            assert_eq!(shutdown.rejected(), 1);
        } else {
            assert_served(&response, 200, stage, version, "GET /");
            assert_eq!(shutdown.in_flight(), 1, "counted until its body has ended");
            assert_eq!(response.text().await, "ok");
            assert_eq!(shutdown.in_flight(), 0);
        }

        // A protocol upgrade (the handshake of a WebSocket).
        let upgrade = setup.send(Request::get("/upgrade").over(version)).await;
        if stage == Stage::Draining {
            assert_rejected(upgrade, version, "GET /upgrade").await;
        } else {
            assert_eq!(upgrade.status, 101, "over {version:?} in {stage:?}");
            assert!(
                !upgrade.closes(),
                "a 101 keeps its connection over {version:?} in {stage:?}: {:?}",
                upgrade.headers
            );
            assert!(
                upgrade.connection().iter().any(|token| token == "upgrade"),
                "a 101 keeps Connection: upgrade over {version:?} in {stage:?}: {:?}",
                upgrade.headers
            );
            drop(upgrade);
        }
        // Exempt paths: served, neither counted nor rejected.
        let live = setup.send(Request::get("/health/live").over(version)).await;
        assert_served(&live, 200, stage, version, "/health/live");
        assert_eq!(shutdown.in_flight(), 0, "an exempt request is not counted");
        assert_eq!(live.text().await, "alive\n");
        let ready = setup
            .send(Request::get("/health/ready").over(version))
            .await;
        let status = if stage == Stage::Running { 200 } else { 503 };
        assert_served(&ready, status, stage, version, "/health/ready");
        assert!(
            ready.header("retry-after").is_none(),
            "readiness is not a rejection"
        );

        assert_eq!(shutdown.in_flight(), 0);
        let rejected = if stage == Stage::Draining { 2 } else { 0 };
        assert_eq!(shutdown.rejected(), rejected, "only rejections are counted");
    }
}

/// A `HEAD` request is served and counted like a `GET` until its (empty) response is
/// done, and gets the `503` head during the drain.
pub async fn a_head_request_is_counted_and_rejected_like_any_other<A: Adapter>() {
    let setup = Setup::<A>::new().await;
    let response = setup.send(Request::head("/")).await;
    assert_eq!(response.status, 200);
    assert!(!response.closes());
    drop(response);
    assert_eq!(setup.shutdown.in_flight(), 0, "released with its response");
    assert_eq!(setup.routes.calls(), 1);

    let _drain = setup.drain().await;
    let response = setup.send(Request::head("/")).await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response.header("retry-after"),
        Some(RETRY_AFTER_SECS.to_string().as_str())
    );
    assert!(response.closes());
    assert_eq!(setup.routes.calls(), 1, "the handler is not called");
}

/// A streaming body keeps its request in flight, and the drain open, until its last
/// chunk; the request then counts as drained, not interrupted. Its response, whose head
/// was ready before the trigger, carries no `Connection: close`.
pub async fn a_streaming_body_holds_its_request_in_flight_until_its_last_chunk<A: Adapter>() {
    let setup = Setup::<A>::new().await;
    let stream = setup.routes.stream();
    let mut response = setup.send(Request::get("/stream")).await;
    assert_eq!(response.status, 200);
    assert!(!response.closes());
    stream
        .send(Ok(Bytes::from_static(b"one")))
        .expect("body alive");
    assert_eq!(response.chunk().await.as_deref(), Some(&b"one"[..]));

    let mut drain = setup.drain().await;
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let pending = std::future::poll_fn(|cx| Poll::Ready(drain.as_mut().poll(cx).is_pending()));
    assert!(pending.await, "the drain waits for the stream");
    assert_eq!(setup.shutdown.in_flight(), 1);

    stream
        .send(Ok(Bytes::from_static(b"two")))
        .expect("body alive");
    assert_eq!(response.chunk().await.as_deref(), Some(&b"two"[..]));
    assert_eq!(setup.shutdown.in_flight(), 1, "not before its last chunk");
    drop(stream);
    assert_eq!(response.chunk().await, None);
    assert_eq!(setup.shutdown.in_flight(), 0);
    let summary = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the drain ends with the stream");
    assert_eq!((summary.drained(), summary.interrupted), (1, 0));
}

/// A request whose handler was still running at the trigger gets `Connection: close`
/// on HTTP/1.x when its response is ready, and none on HTTP/2.
pub async fn a_response_ready_after_the_trigger_carries_connection_close<A: Adapter>() {
    for version in Version::ALL {
        let setup = Setup::<A>::new().await;
        let response = {
            let call = setup.send(Request::get("/wait").over(version));
            let mut call = std::pin::pin!(call);
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_pending()));
            assert!(pending.await, "the handler waits");
            assert_eq!(setup.shutdown.in_flight(), 1);
            setup.shutdown.request_shutdown("contract");
            setup.routes.release();
            call.await
        };
        assert_eq!(response.status, 200);
        assert_eq!(response.closes(), version.is_http1(), "over {version:?}");
        assert_eq!(response.text().await, "done");
        assert_eq!(setup.shutdown.in_flight(), 0);
    }
}

/// A rejected HTTP/1.x request's unread body is read and thrown away before the `503`
/// message, after the head: the server must not close a connection with unread input.
/// Nothing is read on HTTP/2, where the stream is reset instead.
pub async fn a_rejected_request_body_is_read_after_the_head_and_before_the_message<A: Adapter>() {
    const CHUNKS: usize = 64;
    for version in [Version::Http11, Version::Http2] {
        let setup = Setup::<A>::new().await;
        let _drain = setup.drain().await;
        let (upload, read) = Upload::new(CHUNKS);
        let response = setup.send(Request::upload(upload).over(version)).await;
        assert_eq!(response.status, 503);
        assert_eq!(read.load(Ordering::SeqCst), 0, "the head goes out first");
        assert_eq!(response.text().await, REJECTION_MESSAGE);
        let expected = if version.is_http1() {
            (CHUNKS * Upload::CHUNK) as u64
        } else {
            0
        };
        assert_eq!(read.load(Ordering::SeqCst), expected, "over {version:?}");
        assert_eq!(setup.routes.calls(), 0);
    }
}

/// The discard limit of the gate bounds how much of a rejected body is read.
pub async fn a_rejected_request_body_is_read_up_to_the_discard_limit<A: Adapter>() {
    const LIMIT: u64 = 16 * Upload::CHUNK as u64;
    let setup = Setup::<A>::with(|gate| gate.with_discard_limit(LIMIT)).await;
    let _drain = setup.drain().await;
    let (upload, read) = Upload::new(64);
    let response = setup.send(Request::upload(upload)).await;
    assert_eq!(response.text().await, REJECTION_MESSAGE);
    let read = read.load(Ordering::SeqCst);
    assert!(
        (LIMIT..LIMIT + 2 * Upload::CHUNK as u64).contains(&read),
        "read {read} bytes with a limit of {LIMIT}"
    );

    let setup = Setup::<A>::with(|gate| gate.with_discard_limit(0)).await;
    let _drain = setup.drain().await;
    let (upload, read) = Upload::new(64);
    let response = setup.send(Request::upload(upload)).await;
    assert_eq!(response.text().await, REJECTION_MESSAGE);
    assert_eq!(read.load(Ordering::SeqCst), 0, "a limit of 0 reads nothing");
}

/// An admitted upload reaches its handler whole.
pub async fn an_admitted_upload_reaches_its_handler_whole<A: Adapter>() {
    let setup = Setup::<A>::new().await;
    let (upload, _) = Upload::new(8);
    let response = setup.send(Request::upload(upload)).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text().await,
        format!("received {} bytes", 8 * Upload::CHUNK)
    );
    assert_eq!(setup.shutdown.in_flight(), 0);
}

/// A request leaves the count exactly once however it ends: a body dropped unread, a
/// streaming body dropped or failing mid-stream, a failing handler, a handler future
/// dropped before it answers.
pub async fn a_request_is_released_however_it_ends<A: Adapter>() {
    let setup = Setup::<A>::new().await;
    let response = setup.send(Request::get("/")).await;
    assert_eq!(setup.shutdown.in_flight(), 1);
    drop(response);
    assert_eq!(setup.shutdown.in_flight(), 0, "a body dropped unread");

    let stream = setup.routes.stream();
    let mut response = setup.send(Request::get("/stream")).await;
    stream
        .send(Ok(Bytes::from_static(b"one")))
        .expect("body alive");
    assert!(response.chunk().await.is_some());
    drop(response);
    assert_eq!(setup.shutdown.in_flight(), 0, "a stream dropped mid-way");

    let stream = setup.routes.stream();
    let mut response = setup.send(Request::get("/stream")).await;
    stream
        .send(Err(io::Error::other("upstream lost")))
        .expect("body alive");
    let failed = std::future::poll_fn(|cx| response.body.as_mut().poll_chunk(cx)).await;
    assert!(matches!(failed, Some(Err(_))), "the body fails");
    assert_eq!(setup.shutdown.in_flight(), 0, "a body that failed");
    drop(response);

    let response = setup.send(Request::get("/fail")).await;
    assert_eq!(response.status, 500);
    drop(response);
    assert_eq!(setup.shutdown.in_flight(), 0, "a failing handler");

    {
        let call = setup.send(Request::get("/forever"));
        let mut call = std::pin::pin!(call);
        let pending = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_pending()));
        assert!(pending.await, "the handler never answers");
        assert_eq!(setup.shutdown.in_flight(), 1);
    }
    assert_eq!(setup.shutdown.in_flight(), 0, "a handler future dropped");
    assert_eq!(setup.routes.calls(), 5);
}

/// The gate's exempt paths (a list or a predicate) replace the defaults.
pub async fn exempt_paths_follow_the_gate<A: Adapter>() {
    let setup = Setup::<A>::with(|gate| gate.with_exempt_paths(["/"])).await;
    let _drain = setup.drain().await;
    let response = setup.send(Request::get("/")).await;
    assert_eq!(response.status, 200, "exempt by the list");
    assert_eq!(response.text().await, "ok");
    let live = setup.send(Request::get("/health/live")).await;
    assert_eq!(live.status, 503, "no longer exempt");

    let setup = Setup::<A>::with(|gate| gate.with_exempt(|path| path.starts_with("/up"))).await;
    let _drain = setup.drain().await;
    let (upload, _) = Upload::new(1);
    let response = setup.send(Request::upload(upload)).await;
    assert_eq!(response.status, 200, "exempt by the predicate");
    assert_eq!(setup.shutdown.rejected(), 0);
}

/// The drain signal fires when the drain begins, not at the trigger (the pre-stop
/// delay serves as usual): a handler waiting on it answers then, and its request counts
/// as drained.
pub async fn the_drain_signal_fires_at_the_start_of_the_drain_not_at_the_trigger<A: Adapter>() {
    let setup = Setup::<A>::new().await;
    let call = setup.send(Request::get("/drain-signal"));
    let mut call = std::pin::pin!(call);
    assert!(is_pending(call.as_mut()).await, "the handler waits");
    assert_eq!(setup.shutdown.in_flight(), 1);
    setup.shutdown.request_shutdown("contract");
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(is_pending(call.as_mut()).await, "not at the trigger");

    let drain = setup.drain().await;
    let response = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the signal fired at the start of the drain");
    assert_eq!(response.status, 200);
    assert!(
        response.closes(),
        "answered after the trigger, over HTTP/1.1"
    );
    assert_eq!(response.text().await, "drain began");
    let summary = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the drain ends with the handler");
    assert_eq!((summary.drained(), summary.interrupted), (1, 0));
    assert_eq!(setup.routes.calls(), 1);
}

/// An SSE response made with the adapter's helper streams as usual through the
/// pre-stop delay, and when the drain begins sends one last `event: shutdown` with
/// `retry:` (the configuration's `Retry-After` in milliseconds) and ends: the request
/// counts as drained and as closed by the drain, not as interrupted.
pub async fn an_sse_stream_ends_with_a_shutdown_event_when_the_drain_begins<A: Adapter>() {
    let setup = Setup::<A>::new().await;
    let events = setup.routes.events();
    let mut response = setup.send(Request::get("/events")).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        response.headers
    );
    events.send("one".into()).expect("stream alive");
    let first = text_until(&mut response, "\n\n").await;
    assert_eq!(first, "data: one\n\n");

    setup.shutdown.request_shutdown("contract");
    events.send("two".into()).expect("stream alive");
    assert_eq!(
        text_until(&mut response, "\n\n").await,
        "data: two\n\n",
        "served through the trigger"
    );

    let drain = setup.drain().await;
    let last = text_until(&mut response, "\n\n").await;
    let mut fields: Vec<&str> = last.lines().filter(|l| !l.is_empty()).collect();
    fields.sort_unstable();
    let retry = format!("retry: {}", RETRY_AFTER_SECS * 1000);
    assert_eq!(
        fields,
        ["data: shutting down", "event: shutdown", retry.as_str()],
        "{last:?}"
    );
    assert_eq!(response.chunk().await, None, "the body ends");
    assert_eq!(setup.shutdown.in_flight(), 0);
    let summary = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the drain ends with the stream");
    assert_eq!((summary.drained(), summary.interrupted), (1, 0));
    assert_eq!(summary.streams_closed_by_drain, 1);
    drop(events);
}

/// Polls `future` once: `true` when it is still pending.
async fn is_pending<F: Future>(mut future: Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_pending())).await
}

/// The body's text up to and including the first `end`, read chunk by chunk (an event
/// may come in one chunk or several).
async fn text_until(response: &mut Response, end: &str) -> String {
    let mut text = String::new();
    while !text.contains(end) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("a chunk in time")
            .unwrap_or_else(|| panic!("the body ended after {text:?}"));
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    text
}

/// Expands to one `#[test]` per contract scenario for the [`Adapter`] `$adapter`.
#[macro_export]
macro_rules! contract_tests {
    ($adapter:ty) => {
        $crate::contract_tests!(@each $adapter;
            before_the_trigger_requests_are_served_and_keep_their_connection,
            during_the_pre_stop_delay_requests_are_served_with_connection_close,
            during_the_drain_new_requests_get_503_and_exempt_paths_are_served,
            a_head_request_is_counted_and_rejected_like_any_other,
            a_streaming_body_holds_its_request_in_flight_until_its_last_chunk,
            a_response_ready_after_the_trigger_carries_connection_close,
            a_rejected_request_body_is_read_after_the_head_and_before_the_message,
            a_rejected_request_body_is_read_up_to_the_discard_limit,
            an_admitted_upload_reaches_its_handler_whole,
            a_request_is_released_however_it_ends,
            exempt_paths_follow_the_gate,
            the_drain_signal_fires_at_the_start_of_the_drain_not_at_the_trigger,
            an_sse_stream_ends_with_a_shutdown_event_when_the_drain_begins,
        );
    };
    (@each $adapter:ty; $($scenario:ident),* $(,)?) => {
        $(
            // Spelled out: a harness may import a `test` of its framework's.
            #[::core::prelude::v1::test]
            fn $scenario() {
                <$adapter as $crate::Adapter>::block_on(
                    $crate::$scenario::<$adapter>(),
                );
            }
        )*
    };
}
