use poem::{Endpoint, Middleware};

use super::Drain;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

shutdown_core::drain_layer! {
    /// Applies [`Drain`] to an endpoint (`app.with(DrainLayer::new(shutdown))`): see the
    /// [module docs](crate::drain).
    ///
    /// Apply it to the whole application, last (outermost), not to a nested route: it
    /// compares [`DEFAULT_EXEMPT_PATHS`] with the request path as it sees it, and a nested
    /// route sees the path without its prefix.
    pub struct DrainLayer;
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
