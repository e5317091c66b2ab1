use std::fmt;

use poem::{Endpoint, Middleware};
use shutdown_core::{RequestGate, Shutdown};

use super::Drain;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

/// Applies [`Drain`] to an endpoint (`app.with(DrainLayer::new(shutdown))`): see the
/// [module docs](crate::drain).
///
/// Apply it to the whole application, last (outermost), not to a nested route: it
/// compares [`DEFAULT_EXEMPT_PATHS`] with the request path as it sees it, and a nested
/// route sees the path without its prefix.
#[derive(Clone)]
pub struct DrainLayer {
    gate: RequestGate,
}

impl DrainLayer {
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
    /// let layer = drain_poem::DrainLayer::from_gate(
    ///     RequestGate::new(shutdown).with_exempt(|path| path.starts_with("/health/")),
    /// );
    /// ```
    pub fn from_gate(gate: RequestGate) -> Self {
        Self { gate }
    }

    /// The gate that decides for each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }
}

impl<E: Endpoint> Middleware<E> for DrainLayer {
    type Output = Drain<E>;

    fn transform(&self, inner: E) -> Self::Output {
        Drain {
            inner,
            gate: self.gate.clone(),
        }
    }
}

impl fmt::Debug for DrainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer")
            .field("gate", &self.gate)
            .finish()
    }
}
