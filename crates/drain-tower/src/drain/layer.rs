pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

crate::tower_drain! {
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
    /// Middleware that tracks each request on a [`Shutdown`](shutdown_core::Shutdown)
    /// handle and turns requests away once the drain has begun: see the
    /// [module docs](crate::drain).
    pub struct Drain<S>;
}
