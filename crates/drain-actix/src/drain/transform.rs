use std::fmt;
use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderValue;
use shutdown_core::{RequestGate, Shutdown};

use super::body::DrainBody;
use super::service::DrainMiddleware;

pub use shutdown_core::DEFAULT_EXEMPT_PATHS;

/// How much of a rejected request's body [`Drain::new`] reads and discards before
/// sending the `503` message: 1 MiB.
pub const DEFAULT_DISCARD_LIMIT: u64 = 1024 * 1024;

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

    /// Uses a [`RequestGate`] configured elsewhere (shared with other adapters).
    pub fn from_gate(gate: RequestGate) -> Self {
        Self {
            retry_after: HeaderValue::from(gate.retry_after_secs()),
            gate,
            discard_limit: DEFAULT_DISCARD_LIMIT,
        }
    }

    /// Exempts exactly these paths (compared with the request path, without the query),
    /// replacing the defaults. An empty list exempts nothing.
    pub fn with_exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.gate = self.gate.with_exempt_paths(paths);
        self
    }

    /// Exempts the requests whose path satisfies `predicate`, replacing the defaults.
    /// It runs on every request: keep it cheap.
    ///
    /// ```
    /// # let shutdown = shutdown_core::Shutdown::default();
    /// let drain = drain_actix::Drain::new(shutdown)
    ///     .with_exempt(|path| path.starts_with("/health/") || path == "/metrics");
    /// ```
    pub fn with_exempt<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.gate = self.gate.with_exempt(predicate);
        self
    }

    /// Sets the `Retry-After` of rejected requests, in seconds, instead of the
    /// configuration's.
    pub fn with_retry_after_secs(mut self, secs: u64) -> Self {
        self.gate = self.gate.with_retry_after_secs(secs);
        self.retry_after = HeaderValue::from(secs);
        self
    }

    /// Sets how many bytes of a rejected HTTP/1.x request's body are read and thrown
    /// away before the `503` message is sent (default [`DEFAULT_DISCARD_LIMIT`]). When a
    /// larger body is cut off, actix closes the connection with input unread, and a
    /// client still sending may see a reset instead of the answer. `0` reads nothing.
    pub fn with_discard_limit(mut self, bytes: u64) -> Self {
        self.discard_limit = bytes;
        self
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
