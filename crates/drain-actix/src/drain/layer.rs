use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};

use super::body::GuardedBody;
use super::service::Drain;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

shutdown_core::drain_layer! {
    /// Applies [`Drain`] to an application, in actix's idiom: a [`Transform`] for
    /// [`App::wrap`](actix_web::App::wrap) that makes a [`Drain`] on each worker. See the
    /// [module docs](crate::drain).
    ///
    /// Build it once and clone it into the application factory: every worker's middleware
    /// shares the same [`Shutdown`](shutdown_core::Shutdown) state (an `Arc`).
    pub struct DrainLayer;
}

impl<S, B> Transform<S, ServiceRequest> for DrainLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    B: MessageBody,
{
    type Response = ServiceResponse<GuardedBody<B>>;
    type Error = S::Error;
    type Transform = Drain<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(Drain {
            service,
            gate: self.gate.clone(),
        }))
    }
}
