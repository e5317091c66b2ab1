//! `/metrics` for actix-web: the text of `drain-metrics`' Prometheus exporter.

use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, web};
use drain_metrics::prometheus::PrometheusMetrics;

/// The path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// `GET /metrics` rendering `metrics`, for [`App::configure`](actix_web::App::configure).
/// The [`Drain`](crate::Drain) middleware exempts the path by default, so the last
/// scrapes during the drain still work.
///
/// ```no_run
/// use actix_web::App;
/// use drain_metrics::PrometheusMetrics;
///
/// # fn main() -> Result<(), drain_metrics::InstallError> {
/// let prometheus = PrometheusMetrics::install()?;
/// let factory = move || App::new().configure(drain_actix::metrics_routes(prometheus.clone()));
/// # let _ = factory;
/// # Ok(())
/// # }
/// ```
pub fn metrics_routes(metrics: PrometheusMetrics) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.route(
            METRICS_PATH,
            web::get().to(move || std::future::ready(response(&metrics))),
        );
    }
}

/// The `/metrics` response: [`PrometheusMetrics::render`]'s text with the Prometheus
/// content type.
pub fn response(metrics: &PrometheusMetrics) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            CONTENT_TYPE,
            HeaderValue::from_static(drain_metrics::prometheus::CONTENT_TYPE),
        ))
        .body(metrics.render())
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{App, test};
    use drain_metrics::prometheus::PrometheusBuilder;
    use shutdown_core::Shutdown;

    use super::*;

    #[actix_web::test]
    async fn metrics_are_served_during_the_drain() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = PrometheusMetrics::from_handle(recorder.handle());
        let shutdown = Shutdown::default();
        let app = test::init_service(
            App::new()
                .wrap(crate::DrainLayer::new(shutdown.clone()))
                .configure(metrics_routes(metrics)),
        )
        .await;
        shutdown.request_shutdown("test");
        shutdown.drain().await;

        let request = test::TestRequest::get().uri(METRICS_PATH).to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(drain_metrics::prometheus::CONTENT_TYPE.as_bytes())
        );
        assert_eq!(shutdown.rejected(), 0);
    }
}
