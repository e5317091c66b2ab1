use std::fmt;

use poem::http::HeaderValue;
use poem::{Endpoint, Middleware};
use shutdown_core::{RequestGate, Shutdown};

use super::DrainEndpoint;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

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

    /// Uses a configured [`RequestGate`]: its exempt paths, `Retry-After` and discard
    /// limit.
    ///
    /// ```
    /// use shutdown_core::{RequestGate, Shutdown};
    ///
    /// # let shutdown = Shutdown::default();
    /// let drain = drain_poem::Drain::from_gate(
    ///     RequestGate::new(shutdown).with_exempt(|path| path.starts_with("/health/")),
    /// );
    /// ```
    pub fn from_gate(gate: RequestGate) -> Self {
        Self {
            retry_after: HeaderValue::from(gate.retry_after_secs()),
            discard_limit: gate.discard_limit(),
            gate,
        }
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
