use std::fmt;

use shutdown_core::{RequestGate, Shutdown};
use tower_layer::Layer;

use super::Drain;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

/// Applies [`Drain`] to a service: see the [module docs](crate::drain).
#[derive(Clone)]
pub struct DrainLayer {
    pub(crate) gate: RequestGate,
}

impl DrainLayer {
    /// Tracks requests on `shutdown`, exempting [`DEFAULT_EXEMPT_PATHS`], and answers
    /// rejected requests with the `Retry-After` of its configuration.
    pub fn new(shutdown: Shutdown) -> Self {
        Self::from_gate(RequestGate::new(shutdown))
    }

    /// Uses a configured [`RequestGate`]: its exempt paths (a list or a predicate),
    /// `Retry-After` and discard limit.
    ///
    /// ```
    /// use drain_tower::DrainLayer;
    /// use shutdown_core::{RequestGate, Shutdown};
    ///
    /// # let shutdown = Shutdown::default();
    /// let layer = DrainLayer::from_gate(
    ///     RequestGate::new(shutdown)
    ///         .with_exempt(|path| path.starts_with("/health/") || path == "/metrics")
    ///         .with_discard_limit(64 * 1024),
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

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
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
