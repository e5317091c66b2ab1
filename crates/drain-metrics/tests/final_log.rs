//! The final values reach the logs as one event.
//!
//! Alone in its test binary: tracing caches per call site whether anyone listens, and a
//! test on another thread with no subscriber could race with the capture here.

mod support;

use metrics_util::debugging::DebuggingRecorder;
use support::{paused_runtime, scripted_shutdown};
use test_support::logs::Captured;

#[test]
fn final_values_are_logged_as_one_event_with_fields() {
    let recorder = DebuggingRecorder::new();
    let (captured, _guard) = Captured::install();
    metrics::with_local_recorder(&recorder, || {
        paused_runtime().block_on(scripted_shutdown(|_| {}));
    });

    let events = captured.with_message("final metrics");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.target, "drain_metrics");
    assert_eq!(event.level, tracing::Level::INFO);
    assert_eq!(event.field("shutdown_duration_seconds"), "11.0");
    assert_eq!(event.field("requests_interrupted"), "1");
    assert_eq!(event.field("requests_rejected"), "1");
    assert_eq!(event.field("requests_drained"), "1");
    assert_eq!(event.field("in_flight_at_drain"), "2");
    assert_eq!(event.field("cleanup_tasks"), "2");
    assert_eq!(event.field("cleanup_tasks_failed"), "1");
}
