use std::fmt;

use http::HeaderValue;
use shutdown_core::{RequestGate, Shutdown};
use tower_layer::Layer;

use super::Drain;

pub use shutdown_core::DEFAULT_EXEMPT_PATHS;

/// How much of a rejected request's body [`DrainLayer::new`] reads and discards before
/// sending the `503` message: 1 MiB.
pub const DEFAULT_DISCARD_LIMIT: u64 = 1024 * 1024;

/// Applies [`Drain`] to a service: see the [module docs](crate::drain).
#[derive(Clone)]
pub struct DrainLayer {
    pub(crate) gate: RequestGate,
    pub(crate) retry_after: HeaderValue,
    pub(crate) discard_limit: u64,
}

impl DrainLayer {
    /// Tracks requests on `shutdown`, exempting [`DEFAULT_EXEMPT_PATHS`], and answers
    /// rejected requests with the `Retry-After` of its configuration.
    pub fn new(shutdown: Shutdown) -> Self {
        Self::from_gate(RequestGate::new(shutdown))
    }

    /// Uses a [`RequestGate`] configured elsewhere (shared with other adapters).
    pub fn from_gate(gate: RequestGate) -> Self {
        Self {
            retry_after: HeaderValue::from(gate.retry_after_secs()),
            gate,
            discard_limit: DEFAULT_DISCARD_LIMIT,
        }
    }

    /// Exempts exactly these paths (compared with the request URI's path, without the
    /// query), replacing the defaults. An empty list exempts nothing.
    pub fn with_exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.gate = self.gate.with_exempt_paths(paths);
        self
    }

    /// Exempts the requests whose path satisfies `predicate`, replacing the defaults.
    /// It runs on every request: keep it cheap.
    ///
    /// ```
    /// # let shutdown = shutdown_core::Shutdown::default();
    /// let layer = drain_tower::DrainLayer::new(shutdown)
    ///     .with_exempt(|path| path.starts_with("/health/") || path == "/metrics");
    /// ```
    pub fn with_exempt<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.gate = self.gate.with_exempt(predicate);
        self
    }

    /// Sets the `Retry-After` of rejected requests, in seconds, instead of the
    /// configuration's.
    pub fn with_retry_after_secs(mut self, secs: u64) -> Self {
        self.gate = self.gate.with_retry_after_secs(secs);
        self.retry_after = HeaderValue::from(secs);
        self
    }

    /// Sets how many bytes of a rejected HTTP/1.x request's body are read and thrown
    /// away before the `503` body is sent (default [`DEFAULT_DISCARD_LIMIT`]). A larger
    /// body is cut off when the connection closes after the `503`, and a client still
    /// sending it may see a reset instead of the answer. `0` reads nothing.
    pub fn with_discard_limit(mut self, bytes: u64) -> Self {
        self.discard_limit = bytes;
        self
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain {
            inner,
            gate: self.gate.clone(),
            retry_after: self.retry_after.clone(),
            discard_limit: self.discard_limit,
        }
    }
}

impl fmt::Debug for DrainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer")
            .field("gate", &self.gate)
            .field("discard_limit", &self.discard_limit)
            .finish()
    }
}
