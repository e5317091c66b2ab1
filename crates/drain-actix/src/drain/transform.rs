use std::fmt;
use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderValue;
use shutdown_core::{RequestGate, Shutdown};

use super::body::DrainBody;
use super::service::DrainMiddleware;

pub use shutdown_core::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS};

/// The drain middleware, in actix's idiom: a [`Transform`] for
/// [`App::wrap`](actix_web::App::wrap) that makes a [`DrainMiddleware`] on each worker.
/// See the [module docs](crate::drain).
///
/// Build it once and clone it into the application factory: every worker's middleware
/// shares the same [`Shutdown`] state (an `Arc`).
#[derive(Clone)]
pub struct Drain {
    pub(crate) gate: RequestGate,
    pub(crate) retry_after: HeaderValue,
    pub(crate) discard_limit: u64,
}

impl Drain {
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
    /// let drain = drain_actix::Drain::from_gate(RequestGate::new(shutdown).with_retry_after_secs(5));
    /// ```
    pub fn from_gate(gate: RequestGate) -> Self {
        Self {
            retry_after: HeaderValue::from(gate.retry_after_secs()),
            discard_limit: gate.discard_limit(),
            gate,
        }
    }

    /// The gate that decides each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }
}

impl<S, B> Transform<S, ServiceRequest> for Drain
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    B: MessageBody,
{
    type Response = ServiceResponse<DrainBody<B>>;
    type Error = S::Error;
    type Transform = DrainMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(DrainMiddleware {
            service,
            drain: self.clone(),
        }))
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("gate", &self.gate)
            .field("discard_limit", &self.discard_limit)
            .finish()
    }
}
