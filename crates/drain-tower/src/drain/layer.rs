use tower_layer::Layer;

use super::Drain;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

shutdown_core::drain_layer! {
    /// Applies [`Drain`] to a service: see the [module docs](crate::drain).
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
    pub struct DrainLayer;
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
