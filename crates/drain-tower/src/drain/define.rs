//! [`tower_drain!`](crate::tower_drain): the layer and service types of a drain adapter
//! on tower, written once for `drain-tower` and the adapters that differ from it only in
//! how they answer (gRPC's `drain-tonic`).

/// Defines a tower drain adapter's two types: its layer (through
/// [`shutdown_core::drain_layer!`]: `new`, `from_gate`, `gate`) with its
/// `tower_layer::Layer` impl, and the service that layer makes, with `new`,
/// `from_gate`, `gate`, `get_ref`, `get_mut`, `into_inner`, `Clone` and `Debug`.
///
/// The caller implements `tower_service::Service` for the service: that is where
/// adapters differ (the answer to a rejected request). Within the calling crate the
/// service's fields are `inner` (the wrapped service) and `gate` (its
/// [`RequestGate`](shutdown_core::RequestGate)).
///
/// ```
/// drain_tower::tower_drain! {
///     /// Applies [`Drain`] to a service.
///     pub struct DrainLayer;
///     /// The service [`DrainLayer`] makes.
///     pub struct Drain<S>;
/// }
///
/// let shutdown = shutdown_core::Shutdown::default();
/// let service = tower_layer::Layer::layer(&DrainLayer::new(shutdown), ());
/// assert!(service.gate().is_exempt("/health/ready"));
/// ```
#[macro_export]
macro_rules! tower_drain {
    (
        $(#[$layer_attr:meta])* $layer_vis:vis struct $layer:ident;
        $(#[$service_attr:meta])* $vis:vis struct $service:ident<$s:ident>;
    ) => {
        $crate::__private::shutdown_core::drain_layer! {
            $(#[$layer_attr])* $layer_vis struct $layer;
        }

        impl<$s> $crate::__private::tower_layer::Layer<$s> for $layer {
            type Service = $service<$s>;

            fn layer(&self, inner: $s) -> Self::Service {
                $service::from_gate(inner, self.gate().clone())
            }
        }

        $(#[$service_attr])*
        ///
        /// Cloning it clones the inner service and one reference count (the gate's).
        #[derive(Clone)]
        $vis struct $service<$s> {
            pub(crate) inner: $s,
            pub(crate) gate: $crate::__private::shutdown_core::RequestGate,
        }

        impl<$s> $service<$s> {
            /// Wraps `inner` with the default policy on `shutdown` (see
            /// `shutdown_core::RequestGate::new`).
            $vis fn new(inner: $s, shutdown: $crate::__private::shutdown_core::Shutdown) -> Self {
                Self::from_gate(inner, $crate::__private::shutdown_core::RequestGate::new(shutdown))
            }

            /// Wraps `inner` with a configured gate.
            $vis fn from_gate(inner: $s, gate: $crate::__private::shutdown_core::RequestGate) -> Self {
                Self { inner, gate }
            }

            /// The gate that decides for each request.
            $vis fn gate(&self) -> &$crate::__private::shutdown_core::RequestGate {
                &self.gate
            }

            /// The wrapped service.
            $vis fn get_ref(&self) -> &$s {
                &self.inner
            }

            /// The wrapped service, mutably.
            $vis fn get_mut(&mut self) -> &mut $s {
                &mut self.inner
            }

            /// Unwraps the inner service.
            $vis fn into_inner(self) -> $s {
                self.inner
            }
        }

        impl<$s: ::core::fmt::Debug> ::core::fmt::Debug for $service<$s> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($service))
                    .field("inner", &self.inner)
                    .field("gate", &self.gate)
                    .finish()
            }
        }
    };
}
