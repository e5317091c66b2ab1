pub use shutdown_core::DEFAULT_EXEMPT_PATHS;

drain_tower::tower_drain! {
    /// Applies [`Drain`] to a gRPC service (tonic's `Routes`, a generated
    /// `FooServer<T>`, or any tower service on `http` requests): see the
    /// [module docs](crate::drain).
    ///
    /// ```
    /// use drain_tonic::DrainLayer;
    /// use shutdown_core::{RequestGate, Shutdown};
    ///
    /// # let shutdown = Shutdown::default();
    /// // Exempt a whole gRPC service, and ask clients to wait 2 s before a retry.
    /// let layer = DrainLayer::from_gate(
    ///     RequestGate::new(shutdown)
    ///         .with_exempt(|path| path.starts_with("/grpc.reflection."))
    ///         .with_retry_after_secs(2),
    /// );
    /// ```
    pub struct DrainLayer;
    /// Middleware that counts each RPC on a [`Shutdown`](shutdown_core::Shutdown)
    /// handle until its response stream has ended, and answers RPCs arriving during the
    /// drain with `UNAVAILABLE`: see the [module docs](crate::drain).
    pub struct Drain<S>;
}
