//! [`RequestGate`]: the per-request decision every HTTP adapter makes, written once.
//!
//! An adapter asks the gate about each request's path and acts on the
//! [`Admission`]: serve an exempt path untouched, serve an admitted request and keep
//! its guard until the response body has ended, or answer a rejected one at once with
//! `503 Service Unavailable`, `Retry-After: `[`retry_after_secs`](RequestGate::retry_after_secs),
//! `Connection: close` on HTTP/1.x, and [`REJECTION_MESSAGE`]. The values are plain
//! (no `http` types), so adapters on `http` 0.2 and 1 share them.

use std::fmt;
use std::sync::Arc;

use crate::{RequestGuard, Shutdown};

/// The paths exempt by default: probes and the last metrics scrapes keep working while
/// the service drains.
pub const DEFAULT_EXEMPT_PATHS: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

/// How much of a rejected HTTP/1.x request's body adapters read and throw away before
/// sending the `503` message, by default: 1 MiB (see [`RequestGate::with_discard_limit`]).
pub const DEFAULT_DISCARD_LIMIT: u64 = 1024 * 1024;

/// The body of a `503` sent to a request turned away during the drain.
pub const REJECTION_MESSAGE: &str = "503 Service Unavailable: shutting down, retry later\n";

/// What to do with one request.
#[derive(Debug)]
#[must_use]
pub enum Admission {
    /// An exempt path: serve it; it is neither counted nor rejected.
    Exempt,
    /// Serve it, and keep the guard until the response body has ended or is dropped.
    Admitted(RequestGuard),
    /// The drain has begun: answer `503` at once without calling the handler.
    Rejected,
}

/// Decides, for each request, between [`Admission::Exempt`], [`Admission::Admitted`]
/// and [`Admission::Rejected`], and carries what a rejection sends. Cheap to clone.
///
/// ```
/// use shutdown_core::{Admission, RequestGate, Shutdown};
///
/// let shutdown = Shutdown::default();
/// let gate = RequestGate::new(shutdown.clone());
/// assert!(matches!(gate.admit("/health/ready"), Admission::Exempt));
/// let Admission::Admitted(guard) = gate.admit("/orders") else { unreachable!() };
/// assert_eq!(shutdown.in_flight(), 1);
/// drop(guard);
/// assert_eq!(gate.retry_after_secs(), 10);
///
/// // Configured once, handed to an adapter (`DrainLayer::from_gate`, `Drain::from_gate`):
/// let gate = RequestGate::new(shutdown)
///     .with_exempt(|path| path.starts_with("/internal/"))
///     .with_retry_after_secs(5)
///     .with_discard_limit(64 * 1024);
/// assert!(gate.is_exempt("/internal/stats"));
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
    retry_after_secs: u64,
    discard_limit: u64,
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
    /// of its configuration.
    pub fn new(shutdown: Shutdown) -> Self {
        Self {
            state: Arc::new(GateState {
                retry_after_secs: shutdown.config().retry_after_secs(),
                discard_limit: DEFAULT_DISCARD_LIMIT,
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
        Arc::make_mut(&mut self.state).retry_after_secs = secs;
        self
    }

    /// Sets how many bytes of a rejected HTTP/1.x request's body the adapter reads and
    /// throws away before it sends the `503` message (default [`DEFAULT_DISCARD_LIMIT`]).
    /// Reading it keeps the server from closing the connection with unread input, which
    /// makes the kernel send a reset: a client still sending its body would get an error
    /// instead of the `503`. A larger body is cut off when the connection closes after
    /// the `503`. `0` reads nothing.
    pub fn with_discard_limit(mut self, bytes: u64) -> Self {
        Arc::make_mut(&mut self.state).discard_limit = bytes;
        self
    }

    /// The decision for a request to `path`. Lock-free and allocation-free; a rejection
    /// is counted in [`Shutdown::rejected`].
    #[inline]
    pub fn admit(&self, path: &str) -> Admission {
        if self.is_exempt(path) {
            return Admission::Exempt;
        }
        match self.state.shutdown.try_enter() {
            Some(guard) => Admission::Admitted(guard),
            None => Admission::Rejected,
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

    /// How many bytes of a rejected HTTP/1.x request's body to read and discard.
    pub fn discard_limit(&self) -> u64 {
        self.state.discard_limit
    }

    /// The `Retry-After` value of a rejection, in whole seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.state.retry_after_secs
    }

    /// Whether an HTTP/1.x response sent now should carry `Connection: close`: from the
    /// trigger on (including the pre-stop delay), so that keep-alive clients reconnect
    /// elsewhere. Never send it on HTTP/2, where the header is illegal.
    pub fn should_close_connection(&self) -> bool {
        self.state.shutdown.is_shutting_down()
    }

    /// The handle this gate admits requests on.
    pub fn shutdown(&self) -> &Shutdown {
        &self.state.shutdown
    }
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
            .field("retry_after_secs", &self.state.retry_after_secs)
            .field("discard_limit", &self.state.discard_limit)
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
            assert!(matches!(gate.admit(path), Admission::Exempt), "{path}");
        }
        drained(&shutdown);
        for path in DEFAULT_EXEMPT_PATHS {
            assert!(matches!(gate.admit(path), Admission::Exempt), "{path}");
        }
        assert!(matches!(gate.admit("/health"), Admission::Rejected));
        assert!(matches!(gate.admit("/metrics/x"), Admission::Rejected));
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
        let gate = RequestGate::new(Shutdown::default());
        let custom = gate
            .clone()
            .with_retry_after_secs(1)
            .with_exempt_paths(["/x"]);
        assert_eq!(gate.retry_after_secs(), 10);
        assert!(gate.is_exempt("/metrics") && !gate.is_exempt("/x"));
        assert_eq!(custom.retry_after_secs(), 1);
        assert!(custom.is_exempt("/x") && !custom.is_exempt("/metrics"));
    }

    #[test]
    fn connection_close_from_the_trigger_on() {
        let shutdown = Shutdown::new(
            crate::ShutdownConfig::new().with_retry_after(std::time::Duration::from_secs(3)),
        );
        let gate = RequestGate::new(shutdown.clone());
        assert_eq!(gate.retry_after_secs(), 3);
        assert!(!gate.should_close_connection());
        shutdown.request_shutdown("test");
        assert!(gate.should_close_connection());
        assert!(
            matches!(gate.admit("/"), Admission::Admitted(_)),
            "still admitted before the drain"
        );
    }
}
