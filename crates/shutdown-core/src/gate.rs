//! The drain policy: every HTTP rule of the drain, decided once, in plain values.
//!
//! An adapter asks its [`RequestGate`] about each request and maps the answer to its
//! framework's types; it decides nothing itself:
//!
//! - [`RequestGate::admit`] gives an [`Admission`]: an exempt path or an admitted
//!   request (each with a [`Pass`]), or a [`Rejection`].
//! - A [`Pass`] is kept until the response head is ready, then answers whether that
//!   response carries `Connection: close` ([`Pass::close_connection`]) and gives up the
//!   request's guard ([`Pass::take_guard`]), which the adapter keeps in the response body
//!   until the body has ended.
//! - A [`Rejection`] says what the `503` is ([`Rejection::response`]: status, headers,
//!   body text) and whether the request's body must be read first
//!   ([`Rejection::discard_limit`]).
//!
//! The values are plain (status numbers, `&'static str` header names, flags), so that
//! adapters on `http` 0.2 (actix-web) and `http` 1 (hyper, axum, poem, tonic) share them.
//! `docs/adapters.md` states these rules as the contract a custom adapter follows.

use std::fmt;
use std::sync::Arc;

use crate::{RequestGuard, Shutdown};

/// The paths exempt by default: probes and the last metrics scrapes keep working while
/// the service drains. The HTTP probes, `/metrics`, and the two methods of the standard
/// gRPC health service (`grpc.health.v1.Health`), whose `Watch` streams never end by
/// themselves and must not hold the drain open.
pub const DEFAULT_EXEMPT_PATHS: [&str; 5] = [
    "/health/live",
    "/health/ready",
    "/metrics",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// How much of a rejected HTTP/1.x request's body adapters read and throw away before
/// sending the `503` message, by default: 1 MiB (see [`RequestGate::with_discard_limit`]).
pub const DEFAULT_DISCARD_LIMIT: u64 = 1024 * 1024;

/// The body of a `503` sent to a request turned away during the drain.
pub const REJECTION_MESSAGE: &str = "503 Service Unavailable: shutting down, retry later\n";

/// The `Content-Type` of the short text responses of this module.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The HTTP version of a request, as the policy tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/0.9, 1.0 and 1.1: one request at a time on a connection, whose fate the
    /// `Connection` header decides.
    Http1,
    /// HTTP/2 and later: streams on a shared connection, where connection-specific
    /// headers such as `Connection` are illegal (the server ends the connection with a
    /// `GOAWAY` instead).
    Http2,
}

/// What to do with one request: [`RequestGate::admit`]'s answer.
#[derive(Debug)]
#[must_use]
pub enum Admission<'g> {
    /// An exempt path: serve it; it is neither counted nor rejected.
    Exempt(Pass),
    /// Serve it; it is counted in flight until the guard taken from the pass (kept in
    /// the response body) is dropped.
    Admitted(Pass),
    /// The drain has begun: answer with the rejection at once, without calling the
    /// handler.
    Rejected(Rejection<'g>),
}

impl<'g> Admission<'g> {
    /// The pass of a request to serve (exempt or admitted), or its rejection: the two
    /// ways an adapter acts.
    #[inline]
    pub fn into_pass(self) -> Result<Pass, Rejection<'g>> {
        match self {
            Admission::Exempt(pass) | Admission::Admitted(pass) => Ok(pass),
            Admission::Rejected(rejection) => Err(rejection),
        }
    }
}

/// A request being served, from its admission until its response head is ready.
///
/// Dropping it releases the request's guard, if it still holds it: a handler that fails
/// or is cancelled leaves the count.
#[derive(Debug)]
#[must_use]
pub struct Pass {
    guard: Option<RequestGuard>,
    http1: bool,
    /// For an exempt request (no guard to ask): whether the shutdown had begun when it
    /// arrived. Exempt requests are answered at once, so that moment stands for the
    /// response's.
    closing: bool,
}

impl Pass {
    /// `true` for an exempt request: it is not counted.
    pub fn is_exempt(&self) -> bool {
        self.guard.is_none()
    }

    /// Whether the response must carry `Connection: close`, given its status and the
    /// values of its `Connection` header (called only when it matters).
    ///
    /// `true` when the request came over HTTP/1.x and the shutdown has been triggered
    /// (the pre-stop delay included: keep-alive clients then reconnect elsewhere),
    /// unless the response is a protocol switch: a `101` or a response carrying
    /// `Connection: upgrade` keeps its connection, which the upgraded protocol then
    /// owns. Never on HTTP/2, where the header is illegal. Call it once the response
    /// head is ready, before [`take_guard`](Self::take_guard).
    #[inline]
    pub fn close_connection<'h, I>(&self, status: u16, connection: impl FnOnce() -> I) -> bool
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        let shutting_down = match &self.guard {
            Some(guard) => guard.is_shutting_down(),
            None => self.closing,
        };
        self.http1 && shutting_down && !is_upgrade(status, connection())
    }

    /// The request's guard, to keep in the response body until the body has ended,
    /// failed or been dropped; `None` for an exempt request (or once taken).
    #[inline]
    pub fn take_guard(&mut self) -> Option<RequestGuard> {
        self.guard.take()
    }
}

/// `true` for a `101 Switching Protocols` or a response whose `Connection` header has
/// the `upgrade` token.
#[cold]
#[inline(never)]
fn is_upgrade<'h>(status: u16, connection: impl IntoIterator<Item = &'h [u8]>) -> bool {
    status == 101
        || connection.into_iter().any(|value| {
            value
                .split(|byte| *byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// A request turned away because the drain has begun.
#[derive(Debug)]
#[must_use]
pub struct Rejection<'g> {
    policy: &'g RejectionPolicy,
    http1: bool,
}

/// What a [`Rejection`] sends: kept by each gate, and by the handle for
/// [`Shutdown::admit_upgrade`]. Behind one reference in a rejection, so that an
/// [`Admission`] stays as small as a [`Pass`] and a pointer.
#[derive(Debug, Clone)]
pub(crate) struct RejectionPolicy {
    retry_after_secs: u64,
    /// `retry_after_secs` as the header's text.
    retry_after_text: Box<str>,
    discard_limit: u64,
}

impl RejectionPolicy {
    pub(crate) fn new(retry_after_secs: u64, discard_limit: u64) -> Self {
        Self {
            retry_after_secs,
            retry_after_text: retry_after_secs.to_string().into_boxed_str(),
            discard_limit,
        }
    }
}

impl<'g> Rejection<'g> {
    /// The `503` to send: `Retry-After`, `Content-Type: text/plain; charset=utf-8`,
    /// `Connection: close` on HTTP/1.x (never on HTTP/2), and [`REJECTION_MESSAGE`].
    /// Send the head at once; on HTTP/1.x the body waits for the request's own body to
    /// be read (see [`discard_limit`](Self::discard_limit)).
    pub fn response(&self) -> PlainResponse<'g> {
        let mut response = PlainResponse::text(503, REJECTION_MESSAGE)
            .with_header("retry-after", &self.policy.retry_after_text);
        if self.http1 {
            response = response.with_header("connection", "close");
        }
        response
    }

    /// Whether the connection closes after the `503` (HTTP/1.x).
    pub fn close_connection(&self) -> bool {
        self.http1
    }

    /// How many bytes of the request's unread body to read and throw away before the
    /// `503`'s message, or `None` to read nothing.
    ///
    /// On HTTP/1.x the server closes the connection after the `503`; closing it with
    /// unread input makes the kernel send a reset, and a client still sending its body
    /// would get a write error instead of the answer. So the body is read first, up to
    /// [`RequestGate::with_discard_limit`] (a larger body is cut off when the connection
    /// closes). HTTP/2 resets just the stream: nothing to read.
    pub fn discard_limit(&self) -> Option<u64> {
        let limit = self.policy.discard_limit;
        (self.http1 && limit > 0).then_some(limit)
    }

    /// The `Retry-After` value, in whole seconds (gRPC adapters turn it into
    /// `grpc-retry-pushback-ms`).
    pub fn retry_after_secs(&self) -> u64 {
        self.policy.retry_after_secs
    }
}

impl Shutdown {
    /// Counts in a session that outlives its request's response: a WebSocket, whose
    /// `101` response (and the guard in its body) ends before the session does. Call it
    /// from the handler of an admitted upgrade request, before answering `101`, and
    /// keep the guard in the session until it is closed.
    ///
    /// `Err` once the drain has begun (it may have begun since the request was
    /// admitted): answer the upgrade with the rejection's `503` instead of a `101`. The
    /// rejection carries the configuration's `Retry-After` and reads no request body
    /// (an upgrade request has none).
    ///
    /// ```
    /// use shutdown_core::{Protocol, Shutdown};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::default();
    /// let session = shutdown.admit_upgrade(Protocol::Http1).expect("running");
    /// assert_eq!(shutdown.in_flight(), 1);
    /// drop(session);
    ///
    /// shutdown.request_shutdown("example");
    /// shutdown.drain().await;
    /// let rejection = shutdown.admit_upgrade(Protocol::Http1).unwrap_err();
    /// assert_eq!(rejection.response().status(), 503);
    /// assert_eq!(shutdown.rejected(), 1);
    /// # }
    /// ```
    pub fn admit_upgrade(&self, protocol: Protocol) -> Result<RequestGuard, Rejection<'_>> {
        self.try_enter().ok_or_else(|| Rejection {
            policy: self.upgrade_rejection(),
            http1: protocol == Protocol::Http1,
        })
    }
}

/// A short text response in plain values: the `503` of a [`Rejection`], the health
/// endpoints ([`readiness`](Self::readiness), [`liveness`](Self::liveness)). Each
/// adapter maps it to its framework's response in one function.
#[derive(Debug, Clone)]
pub struct PlainResponse<'a> {
    status: u16,
    headers: [(&'static str, &'a str); 4],
    len: usize,
    body: &'static str,
}

impl<'a> PlainResponse<'a> {
    fn text(status: u16, body: &'static str) -> Self {
        Self {
            status,
            headers: [("content-type", TEXT_PLAIN), ("", ""), ("", ""), ("", "")],
            len: 1,
            body,
        }
    }

    fn with_header(mut self, name: &'static str, value: &'a str) -> Self {
        self.headers[self.len] = (name, value);
        self.len += 1;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, names in lower case.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &'a str)> + '_ {
        self.headers[..self.len].iter().copied()
    }

    /// The body.
    pub fn body(&self) -> &'static str {
        self.body
    }
}

impl PlainResponse<'static> {
    /// `/health/ready`: `200 ready` while running, `503 shutting down` from the first
    /// moment of the shutdown (the pre-stop delay included): that takes the instance
    /// out of a load balancer's rotation before it turns requests away. With
    /// `Cache-Control: no-store`; no `Retry-After` (it is not a rejection).
    pub fn readiness(shutdown: &Shutdown) -> Self {
        let response = if shutdown.is_ready() {
            Self::text(200, "ready\n")
        } else {
            Self::text(503, "shutting down\n")
        };
        response.with_header("cache-control", "no-store")
    }

    /// `/health/live`: `200 alive` for as long as the process answers: a draining
    /// service is not dead, and an orchestrator that restarted it would cut the drain
    /// short. With `Cache-Control: no-store`.
    pub fn liveness() -> Self {
        Self::text(200, "alive\n").with_header("cache-control", "no-store")
    }
}

/// The drain policy of one service: decides, for each request, between
/// [`Admission::Exempt`], [`Admission::Admitted`] and [`Admission::Rejected`], and
/// carries what a rejection sends. Cheap to clone (one reference count).
///
/// ```
/// use shutdown_core::{Admission, Protocol, RequestGate, Shutdown};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = Shutdown::default();
/// let gate = RequestGate::new(shutdown.clone());
/// assert!(matches!(gate.admit("/health/ready", Protocol::Http1), Admission::Exempt(_)));
///
/// // Admitted: counted until the guard (kept in the response body) is dropped.
/// let Ok(mut pass) = gate.admit("/orders", Protocol::Http1).into_pass() else { unreachable!() };
/// assert_eq!(shutdown.in_flight(), 1);
/// assert!(!pass.close_connection(200, || [&b"keep-alive"[..]]));
/// drop(pass.take_guard());
/// assert_eq!(shutdown.in_flight(), 0);
///
/// shutdown.request_shutdown("example");
/// shutdown.drain().await;
/// let Err(rejection) = gate.admit("/orders", Protocol::Http1).into_pass() else { unreachable!() };
/// let response = rejection.response();
/// assert_eq!(response.status(), 503);
/// assert!(response.headers().any(|header| header == ("retry-after", "10")));
/// assert!(response.headers().any(|header| header == ("connection", "close")));
/// assert_eq!(rejection.discard_limit(), Some(shutdown_core::DEFAULT_DISCARD_LIMIT));
///
/// // Configured once, handed to an adapter (`DrainLayer::from_gate`):
/// let gate = RequestGate::new(shutdown)
///     .with_exempt(|path| path.starts_with("/internal/"))
///     .with_retry_after_secs(5)
///     .with_discard_limit(64 * 1024);
/// assert!(gate.is_exempt("/internal/stats"));
/// # }
/// ```
#[derive(Clone)]
pub struct RequestGate {
    // One reference count for everything: middleware that is cloned per request (axum
    // clones each route's service for every request) pays one atomic pair for the gate.
    state: Arc<GateState>,
}

#[derive(Clone)]
struct GateState {
    shutdown: Shutdown,
    exempt: Exempt,
    policy: RejectionPolicy,
}

impl fmt::Debug for GateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateState")
            .field("retry_after_secs", &self.policy.retry_after_secs)
            .field("discard_limit", &self.policy.discard_limit)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Exempt {
    Nothing,
    Paths(ExemptPaths),
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

/// A list of exact paths, with a one-word filter on their lengths so that most
/// requests (whose path has none of those lengths) are told apart without a comparison.
#[derive(Clone)]
struct ExemptPaths {
    /// Bit `n` is set when some path is `n` bytes long (`63` stands for 63 or more).
    lengths: u64,
    paths: Arc<[Box<str>]>,
}

impl ExemptPaths {
    fn new(paths: Arc<[Box<str>]>) -> Self {
        let lengths = paths.iter().fold(0, |bits, p| bits | length_bit(p));
        Self { lengths, paths }
    }

    #[inline]
    fn contains(&self, path: &str) -> bool {
        self.lengths & length_bit(path) != 0 && self.paths.iter().any(|p| **p == *path)
    }
}

#[inline]
fn length_bit(path: &str) -> u64 {
    1 << path.len().min(63)
}

impl RequestGate {
    /// A gate on `shutdown` exempting [`DEFAULT_EXEMPT_PATHS`], with the `Retry-After`
    /// of its configuration and [`DEFAULT_DISCARD_LIMIT`].
    pub fn new(shutdown: Shutdown) -> Self {
        let retry_after_secs = shutdown.config().retry_after_secs();
        Self {
            state: Arc::new(GateState {
                policy: RejectionPolicy::new(retry_after_secs, DEFAULT_DISCARD_LIMIT),
                shutdown,
                exempt: Exempt::Paths(ExemptPaths::new(
                    DEFAULT_EXEMPT_PATHS.iter().map(|p| Box::from(*p)).collect(),
                )),
            }),
        }
    }

    /// Exempts exactly these paths (compared with the request path, without the query),
    /// replacing the defaults. An empty list exempts nothing.
    pub fn with_exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let paths: Arc<[Box<str>]> = paths
            .into_iter()
            .map(|p| p.into().into_boxed_str())
            .collect();
        Arc::make_mut(&mut self.state).exempt = if paths.is_empty() {
            Exempt::Nothing
        } else {
            Exempt::Paths(ExemptPaths::new(paths))
        };
        self
    }

    /// Exempts the requests whose path satisfies `predicate`, replacing the defaults.
    /// It runs on every request: keep it cheap.
    pub fn with_exempt<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.state).exempt = Exempt::Predicate(Arc::new(predicate));
        self
    }

    /// Sets the `Retry-After` of rejected requests, in seconds, instead of the
    /// configuration's.
    pub fn with_retry_after_secs(mut self, secs: u64) -> Self {
        let state = Arc::make_mut(&mut self.state);
        state.policy = RejectionPolicy::new(secs, state.policy.discard_limit);
        self
    }

    /// Sets how many bytes of a rejected HTTP/1.x request's body the adapter reads and
    /// throws away before it sends the `503` message (default [`DEFAULT_DISCARD_LIMIT`];
    /// see [`Rejection::discard_limit`]). `0` reads nothing.
    pub fn with_discard_limit(mut self, bytes: u64) -> Self {
        Arc::make_mut(&mut self.state).policy.discard_limit = bytes;
        self
    }

    /// The decision for a request to `path` (without the query) over `protocol`.
    /// Lock-free, and allocation-free but for a rejection's; a rejection is counted in
    /// [`Shutdown::rejected`].
    #[inline]
    pub fn admit(&self, path: &str, protocol: Protocol) -> Admission<'_> {
        let http1 = protocol == Protocol::Http1;
        if self.is_exempt(path) {
            return Admission::Exempt(self.exempt_pass(http1));
        }
        match self.state.shutdown.try_enter() {
            Some(guard) => Admission::Admitted(Pass {
                guard: Some(guard),
                http1,
                closing: false,
            }),
            None => self.refused(http1),
        }
    }

    /// A request the drain refused: rejected, unless the shutdown is a handoff. Then
    /// the service as a whole stays up (a successor accepts new connections), so a
    /// request that still arrives on an open connection is served, uncounted, with
    /// `Connection: close`; the server's stop lets it finish.
    #[cold]
    #[inline(never)]
    fn refused(&self, http1: bool) -> Admission<'_> {
        if self.state.shutdown.is_handing_off() {
            Admission::Admitted(Pass {
                guard: None,
                http1,
                closing: true,
            })
        } else {
            Admission::Rejected(Rejection {
                policy: &self.state.policy,
                http1,
            })
        }
    }

    #[cold]
    #[inline(never)]
    fn exempt_pass(&self, http1: bool) -> Pass {
        Pass {
            guard: None,
            http1,
            closing: !self.state.shutdown.is_ready(),
        }
    }

    /// `true` when `path` is exempt.
    #[inline]
    pub fn is_exempt(&self, path: &str) -> bool {
        match &self.state.exempt {
            Exempt::Nothing => false,
            Exempt::Paths(paths) => paths.contains(path),
            Exempt::Predicate(predicate) => predicate(path),
        }
    }

    /// The handle this gate admits requests on.
    pub fn shutdown(&self) -> &Shutdown {
        &self.state.shutdown
    }
}

/// Defines an adapter's layer type: what a user applies to an application (a tower
/// `Layer`, an actix-web `Transform`, a poem `Middleware`), holding the [`RequestGate`]
/// it hands to the service it wraps. The adapter implements its framework's trait for it.
///
/// The type gets `Clone`, `Debug`, and:
///
/// - `new(shutdown)`: a gate on `shutdown` with the defaults of [`RequestGate::new`]
///   (exempt [`DEFAULT_EXEMPT_PATHS`], the configuration's `Retry-After`,
///   [`DEFAULT_DISCARD_LIMIT`]);
/// - `from_gate(gate)`: a configured gate;
/// - `gate()`: the gate.
///
/// ```
/// shutdown_core::drain_layer! {
///     /// Applies the drain to a service of my framework.
///     pub struct DrainLayer;
/// }
///
/// let shutdown = shutdown_core::Shutdown::default();
/// let layer = DrainLayer::from_gate(shutdown_core::RequestGate::new(shutdown.clone()).with_retry_after_secs(3));
/// assert!(layer.gate().is_exempt("/health/ready"));
/// let layer = DrainLayer::new(shutdown);
/// # let _ = layer;
/// ```
#[macro_export]
macro_rules! drain_layer {
    ($(#[$attr:meta])* $vis:vis struct $name:ident;) => {
        $(#[$attr])*
        #[derive(Clone, Debug)]
        $vis struct $name {
            gate: $crate::RequestGate,
        }

        impl $name {
            /// Tracks requests on `shutdown` with the default policy: exempts
            /// `/health/live`, `/health/ready`, `/metrics` and the gRPC health service
            /// (`shutdown_core::DEFAULT_EXEMPT_PATHS`), answers rejected requests
            /// with the `Retry-After` of the shutdown's configuration, and reads up to
            /// 1 MiB of a rejected HTTP/1.x request's body (see
            /// `shutdown_core::RequestGate::new`).
            $vis fn new(shutdown: $crate::Shutdown) -> Self {
                Self::from_gate($crate::RequestGate::new(shutdown))
            }

            /// Uses a configured `shutdown_core::RequestGate`: its exempt paths (a list
            /// or a predicate), `Retry-After` and discard limit.
            $vis fn from_gate(gate: $crate::RequestGate) -> Self {
                Self { gate }
            }

            /// The gate that decides for each request.
            $vis fn gate(&self) -> &$crate::RequestGate {
                &self.gate
            }
        }
    };
}

impl fmt::Debug for RequestGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exempt: &dyn fmt::Debug = match &self.state.exempt {
            Exempt::Nothing => &"nothing",
            Exempt::Paths(exempt) => &exempt.paths,
            Exempt::Predicate(_) => &"predicate",
        };
        f.debug_struct("RequestGate")
            .field("exempt", exempt)
            .field("retry_after_secs", &self.state.policy.retry_after_secs)
            .field("discard_limit", &self.state.policy.discard_limit)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(shutdown: &Shutdown) {
        shutdown.request_shutdown("test");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(shutdown.drain());
    }

    #[test]
    fn default_paths_are_exempt_before_and_during_the_drain() {
        let shutdown = Shutdown::default();
        let gate = RequestGate::new(shutdown.clone());
        for path in DEFAULT_EXEMPT_PATHS {
            assert!(
                matches!(gate.admit(path, Protocol::Http1), Admission::Exempt(_)),
                "{path}"
            );
        }
        drained(&shutdown);
        for path in DEFAULT_EXEMPT_PATHS {
            assert!(
                matches!(gate.admit(path, Protocol::Http1), Admission::Exempt(_)),
                "{path}"
            );
        }
        assert!(matches!(
            gate.admit("/health", Protocol::Http1),
            Admission::Rejected(_)
        ));
        assert!(matches!(
            gate.admit("/metrics/x", Protocol::Http1),
            Admission::Rejected(_)
        ));
        assert_eq!(shutdown.rejected(), 2);
        assert_eq!(shutdown.in_flight(), 0, "exempt requests are not counted");
    }

    #[test]
    fn exempt_paths_can_be_a_list_a_predicate_or_nothing() {
        let shutdown = Shutdown::default();
        let list = RequestGate::new(shutdown.clone()).with_exempt_paths(["/ping"]);
        assert!(list.is_exempt("/ping"));
        assert!(!list.is_exempt("/metrics"));
        let predicate =
            RequestGate::new(shutdown.clone()).with_exempt(|p| p.starts_with("/internal/"));
        assert!(predicate.is_exempt("/internal/x"));
        assert!(!predicate.is_exempt("/health/ready"));
        let nothing = RequestGate::new(shutdown).with_exempt_paths(Vec::<String>::new());
        assert!(!nothing.is_exempt("/health/live"));
    }

    #[test]
    fn the_length_filter_never_decides_alone() {
        let long = format!("/{}", "x".repeat(80));
        let other_long = format!("/{}", "y".repeat(90));
        let gate = RequestGate::new(Shutdown::default()).with_exempt_paths(["/a", long.as_str()]);
        assert!(gate.is_exempt("/a"));
        assert!(!gate.is_exempt("/b"), "same length, other path");
        assert!(!gate.is_exempt("/ab"), "a length no exempt path has");
        assert!(gate.is_exempt(&long), "lengths past 63 share one bit");
        assert!(!gate.is_exempt(&other_long), "and are then compared");
        assert!(!gate.is_exempt(""));
    }

    #[test]
    fn builders_on_a_cloned_gate_leave_the_clone_alone() {
        let shutdown = Shutdown::default();
        drained(&shutdown);
        let gate = RequestGate::new(shutdown);
        let custom = gate
            .clone()
            .with_retry_after_secs(1)
            .with_exempt_paths(["/x"]);
        let retry_after = |gate: &RequestGate| match gate.admit("/y", Protocol::Http1) {
            Admission::Rejected(rejection) => rejection
                .response()
                .headers()
                .find(|(name, _)| *name == "retry-after")
                .map(|(_, value)| value.to_owned()),
            _ => None,
        };
        assert_eq!(retry_after(&gate).as_deref(), Some("10"));
        assert!(gate.is_exempt("/metrics") && !gate.is_exempt("/x"));
        assert_eq!(retry_after(&custom).as_deref(), Some("1"));
        assert!(custom.is_exempt("/x") && !custom.is_exempt("/metrics"));
    }

    /// The close rule for a pass admitted over `protocol` and answered with `status`
    /// and these `Connection` values.
    fn closes(pass: &Pass, status: u16, connection: &[&str]) -> bool {
        pass.close_connection(status, || connection.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn connection_close_on_http1_from_the_trigger_on_but_never_on_an_upgrade() {
        let shutdown = Shutdown::default();
        let gate = RequestGate::new(shutdown.clone());
        let pass = |path, protocol| match gate.admit(path, protocol) {
            Admission::Exempt(pass) | Admission::Admitted(pass) => pass,
            Admission::Rejected(_) => panic!("not draining"),
        };
        let before = pass("/", Protocol::Http1);
        let before_exempt = pass("/metrics", Protocol::Http1);
        assert!(!closes(&before, 200, &[]));
        assert!(!closes(&before_exempt, 200, &[]));

        shutdown.request_shutdown("test");
        assert!(
            closes(&before, 200, &[]),
            "decided when the response is ready"
        );
        assert!(
            !closes(&before_exempt, 200, &[]),
            "an exempt response is decided when its request arrives"
        );
        for (protocol, path) in [(Protocol::Http1, "/"), (Protocol::Http1, "/metrics")] {
            let pass = pass(path, protocol);
            assert!(closes(&pass, 200, &[]), "{path}");
            assert!(closes(&pass, 503, &["keep-alive"]), "{path}");
            assert!(!closes(&pass, 101, &["upgrade"]), "{path}: a 101");
            assert!(!closes(&pass, 101, &[]), "{path}: a 101 without the header");
            assert!(
                !closes(&pass, 200, &["keep-alive, Upgrade"]),
                "{path}: the upgrade token, in any case, among others"
            );
            assert!(!closes(&pass, 200, &["close", " upgrade "]), "{path}");
            assert!(
                closes(&pass, 200, &["upgrades"]),
                "{path}: a token, not a prefix"
            );
        }
        for path in ["/", "/metrics"] {
            assert!(
                !closes(&pass(path, Protocol::Http2), 200, &[]),
                "HTTP/2: {path}"
            );
        }
    }

    #[test]
    fn the_guard_leaves_with_the_pass_or_with_the_body() {
        let shutdown = Shutdown::default();
        let gate = RequestGate::new(shutdown.clone());
        let Ok(mut pass) = gate.admit("/", Protocol::Http1).into_pass() else {
            panic!("admitted");
        };
        assert!(!pass.is_exempt());
        let guard = pass.take_guard();
        drop(pass);
        assert_eq!(shutdown.in_flight(), 1, "the body holds it");
        drop(guard);
        assert_eq!(shutdown.in_flight(), 0);

        let pass = gate.admit("/", Protocol::Http2).into_pass();
        assert_eq!(shutdown.in_flight(), 1);
        drop(pass);
        assert_eq!(
            shutdown.in_flight(),
            0,
            "a pass dropped before the response"
        );

        let Ok(mut exempt) = gate.admit("/health/live", Protocol::Http1).into_pass() else {
            panic!("exempt");
        };
        assert!(exempt.is_exempt() && exempt.take_guard().is_none());
    }

    #[test]
    fn a_rejection_is_a_503_whose_connection_and_discard_follow_the_protocol() {
        let shutdown = Shutdown::new(
            crate::ShutdownConfig::new().with_retry_after(std::time::Duration::from_secs(3)),
        );
        drained(&shutdown);
        let gate = RequestGate::new(shutdown.clone()).with_discard_limit(64);
        let Err(http1) = gate.admit("/", Protocol::Http1).into_pass() else {
            panic!("rejected");
        };
        let response = http1.response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.body(), REJECTION_MESSAGE);
        assert_eq!(
            response.headers().collect::<Vec<_>>(),
            [
                ("content-type", "text/plain; charset=utf-8"),
                ("retry-after", "3"),
                ("connection", "close"),
            ]
        );
        assert!(http1.close_connection());
        assert_eq!(http1.discard_limit(), Some(64));
        assert_eq!(http1.retry_after_secs(), 3);

        let Err(http2) = gate.admit("/", Protocol::Http2).into_pass() else {
            panic!("rejected");
        };
        assert!(
            http2
                .response()
                .headers()
                .all(|(name, _)| name != "connection"),
            "no Connection header on HTTP/2"
        );
        assert!(!http2.close_connection());
        assert_eq!(http2.discard_limit(), None, "HTTP/2 resets the stream");

        let nothing = RequestGate::new(shutdown.clone()).with_discard_limit(0);
        let Err(rejection) = nothing.admit("/", Protocol::Http1).into_pass() else {
            panic!("rejected");
        };
        assert_eq!(
            rejection.discard_limit(),
            None,
            "a limit of 0 reads nothing"
        );
        assert_eq!(shutdown.rejected(), 3);
    }

    #[test]
    fn health_answers_follow_the_trigger() {
        let shutdown = Shutdown::default();
        let ready = PlainResponse::readiness(&shutdown);
        assert_eq!((ready.status(), ready.body()), (200, "ready\n"));
        assert!(ready.headers().any(|h| h == ("cache-control", "no-store")));
        shutdown.request_shutdown("test");
        let ready = PlainResponse::readiness(&shutdown);
        assert_eq!((ready.status(), ready.body()), (503, "shutting down\n"));
        assert!(ready.headers().all(|(name, _)| name != "retry-after"));
        let live = PlainResponse::liveness();
        assert_eq!((live.status(), live.body()), (200, "alive\n"));
    }
}
