use std::fmt;

use poem::http::HeaderValue;
use poem::{Endpoint, Middleware};
use shutdown_core::{RequestGate, Shutdown};

use super::DrainEndpoint;

pub use drain_tower::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

/// Middleware that tracks each request on a [`Shutdown`] handle and turns requests
/// away once the drain has begun: see the [module docs](crate::drain).
///
/// Apply it to the whole application (`app.with(Drain::new(shutdown))`), not to a
/// nested route: it compares [`DEFAULT_EXEMPT_PATHS`] with the request path as it
/// sees it, and a nested route sees the path without its prefix.
#[derive(Clone)]
pub struct Drain {
    pub(crate) gate: RequestGate,
    pub(crate) retry_after: HeaderValue,
    pub(crate) discard_limit: u64,
}

impl Drain {
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
    /// let drain = drain_poem::Drain::new(shutdown)
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
    /// away before the `503` body is sent (default [`DEFAULT_DISCARD_LIMIT`], 1 MiB). A
    /// larger body is cut off when the connection closes after the `503`, and a client
    /// still sending it may see a reset instead of the answer. `0` reads nothing.
    pub fn with_discard_limit(mut self, bytes: u64) -> Self {
        self.discard_limit = bytes;
        self
    }

    /// The gate that decides for each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }
}

impl<E: Endpoint> Middleware<E> for Drain {
    type Output = DrainEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        DrainEndpoint {
            inner,
            gate: self.gate.clone(),
            retry_after: self.retry_after.clone(),
            discard_limit: self.discard_limit,
        }
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("gate", &self.gate)
            .field("discard_limit", &self.discard_limit)
            .finish()
    }
}
