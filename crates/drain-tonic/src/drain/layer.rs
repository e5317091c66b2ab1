use tower_layer::Layer;

use super::Drain;

pub use shutdown_core::DEFAULT_EXEMPT_PATHS;

shutdown_core::drain_layer! {
    /// Applies [`Drain`] to a gRPC service (tonic's `Routes`, a generated
    /// `FooServer<T>`, or any tower service on `http` requests): see the
    /// [module docs](crate::drain).
    ///
    /// ```
    /// use drain_tonic::DrainLayer;
    /// use shutdown_core::{RequestGate, Shutdown};
    ///
    /// # let shutdown = Shutdown::default();
    /// let layer = DrainLayer::from_gate(
    ///     RequestGate::new(shutdown)
    ///         .with_exempt(|path| path.starts_with("/grpc.health.v1.Health/"))
    ///         .with_retry_after_secs(2),
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
