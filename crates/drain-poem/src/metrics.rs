//! `/metrics`: the Prometheus text of `drain-metrics`. Only with the `prometheus`
//! feature.

use drain_metrics::PrometheusMetrics;
use poem::http::HeaderValue;
use poem::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use poem::{Endpoint, Request, Response, Result};

/// Answers with [`PrometheusMetrics::render`] and the Prometheus text `Content-Type`.
/// Mount it at `/metrics`, a path [`Drain`](crate::Drain) exempts by default, so the
/// last scrapes during the drain still succeed.
///
/// ```no_run
/// use drain_metrics::{DrainMetrics, PrometheusMetrics};
/// use poem::Route;
/// use shutdown_core::Shutdown;
///
/// # fn main() -> Result<(), drain_metrics::InstallError> {
/// let prometheus = PrometheusMetrics::install()?;
/// let shutdown = Shutdown::default().with_observer(DrainMetrics::new());
/// let app = Route::new().at("/metrics", drain_poem::Metrics::new(prometheus));
/// # let _ = (app, shutdown);
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
#[derive(Debug, Clone)]
pub struct Metrics {
    prometheus: PrometheusMetrics,
}

impl Metrics {
    /// Renders `prometheus` on every request.
    pub fn new(prometheus: PrometheusMetrics) -> Self {
        Self { prometheus }
    }
}

impl Endpoint for Metrics {
    type Output = Response;

    async fn call(&self, _request: Request) -> Result<Response> {
        let mut response = Response::builder().body(self.prometheus.render());
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(drain_metrics::prometheus::CONTENT_TYPE),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}
