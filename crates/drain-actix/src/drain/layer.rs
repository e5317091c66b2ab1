use std::fmt;
use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use shutdown_core::{RequestGate, Shutdown};

use super::body::GuardedBody;
use super::service::Drain;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

/// Applies [`Drain`] to an application, in actix's idiom: a [`Transform`] for
/// [`App::wrap`](actix_web::App::wrap) that makes a [`Drain`] on each worker. See the
/// [module docs](crate::drain).
///
/// Build it once and clone it into the application factory: every worker's middleware
/// shares the same [`Shutdown`] state (an `Arc`).
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
    /// let layer = drain_actix::DrainLayer::from_gate(RequestGate::new(shutdown).with_retry_after_secs(5));
    /// ```
    pub fn from_gate(gate: RequestGate) -> Self {
        Self { gate }
    }

    /// The gate that decides for each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }
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

impl fmt::Debug for DrainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer")
            .field("gate", &self.gate)
            .finish()
    }
}
