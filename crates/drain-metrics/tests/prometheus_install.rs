//! `PrometheusMetrics::install` sets the process-wide recorder: alone in its test binary.

#![cfg(feature = "prometheus")]

use drain_metrics::{DrainMetrics, InstallError, PrometheusMetrics};
use shutdown_core::ShutdownObserver;

#[test]
fn install_sets_the_global_recorder_describes_the_metrics_and_refuses_a_second_install() {
    let prometheus = PrometheusMetrics::install().expect("first install");
    let observer = DrainMetrics::new();
    observer.request_started();
    observer.request_started();
    observer.request_finished();

    let text = prometheus.render();
    assert!(text.contains("\nin_flight_requests 1\n"), "{text}");
    assert!(
        text.contains("# HELP in_flight_requests Requests admitted and not yet finished."),
        "install describes the metrics: {text}"
    );

    let second = PrometheusMetrics::install().expect_err("one global recorder per process");
    assert!(
        matches!(second, InstallError::AlreadyInstalled),
        "{second:?}"
    );
    assert!(second.to_string().contains("already installed"), "{second}");
}
