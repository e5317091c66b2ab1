use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use shutdown_core::Shutdown;
use tower_layer::Layer;

use super::Drain;

/// The paths that [`DrainLayer::new`] exempts: probes and the last metrics scrapes keep
/// working while the service drains.
pub const DEFAULT_EXEMPT_PATHS: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

/// How much of a rejected request's body [`DrainLayer::new`] reads and discards before
/// sending the `503` message: 1 MiB.
pub const DEFAULT_DISCARD_LIMIT: u64 = 1024 * 1024;

/// Applies [`Drain`] to a service: see the [module docs](crate::drain).
#[derive(Clone)]
pub struct DrainLayer {
    pub(crate) shutdown: Shutdown,
    pub(crate) exempt: Exempt,
    pub(crate) retry_after: HeaderValue,
    pub(crate) discard_limit: u64,
}

/// Which requests pass through without being counted or rejected.
#[derive(Clone)]
pub(crate) enum Exempt {
    Nothing,
    Paths(Arc<[Box<str>]>),
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Exempt {
    #[inline]
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Exempt::Nothing => false,
            Exempt::Paths(paths) => paths.iter().any(|p| **p == *path),
            Exempt::Predicate(predicate) => predicate(path),
        }
    }
}

impl fmt::Debug for Exempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exempt::Nothing => f.write_str("Nothing"),
            Exempt::Paths(paths) => f.debug_tuple("Paths").field(paths).finish(),
            Exempt::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

impl DrainLayer {
    /// Tracks requests on `shutdown`, exempting [`DEFAULT_EXEMPT_PATHS`], and answers
    /// rejected requests with the `Retry-After` of its configuration.
    pub fn new(shutdown: Shutdown) -> Self {
        let retry_after = HeaderValue::from(shutdown.config().retry_after_secs());
        Self {
            shutdown,
            exempt: Exempt::Paths(DEFAULT_EXEMPT_PATHS.iter().map(|p| Box::from(*p)).collect()),
            retry_after,
            discard_limit: DEFAULT_DISCARD_LIMIT,
        }
    }

    /// Exempts exactly these paths (compared with the request URI's path, without the
    /// query), replacing the defaults. An empty list exempts nothing.
    pub fn with_exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let paths: Arc<[Box<str>]> = paths
            .into_iter()
            .map(|p| p.into().into_boxed_str())
            .collect();
        self.exempt = if paths.is_empty() {
            Exempt::Nothing
        } else {
            Exempt::Paths(paths)
        };
        self
    }

    /// Exempts the requests whose path satisfies `predicate`, replacing the defaults.
    /// It runs on every request: keep it cheap.
    ///
    /// ```
    /// # let shutdown = shutdown_core::Shutdown::default();
    /// let layer = drain_tower::DrainLayer::new(shutdown)
    ///     .with_exempt(|path| path.starts_with("/health/") || path == "/metrics");
    /// ```
    pub fn with_exempt<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.exempt = Exempt::Predicate(Arc::new(predicate));
        self
    }

    /// Sets the `Retry-After` of rejected requests, in seconds, instead of the
    /// configuration's.
    pub fn with_retry_after_secs(mut self, secs: u64) -> Self {
        self.retry_after = HeaderValue::from(secs);
        self
    }

    /// Sets how many bytes of a rejected HTTP/1.x request's body are read and thrown
    /// away before the `503` body is sent (default [`DEFAULT_DISCARD_LIMIT`]). A larger
    /// body is cut off when the connection closes after the `503`, and a client still
    /// sending it may see a reset instead of the answer. `0` reads nothing.
    pub fn with_discard_limit(mut self, bytes: u64) -> Self {
        self.discard_limit = bytes;
        self
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain {
            inner,
            shutdown: self.shutdown.clone(),
            exempt: self.exempt.clone(),
            retry_after: self.retry_after.clone(),
            discard_limit: self.discard_limit,
        }
    }
}

impl fmt::Debug for DrainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer")
            .field("exempt", &self.exempt)
            .field("retry_after", &self.retry_after)
            .field("discard_limit", &self.discard_limit)
            .finish_non_exhaustive()
    }
}
