//! [`describe_metrics`]: the description and unit of every metric, for the recorder.

use metrics::{Unit, describe_counter, describe_gauge};

use crate::names;

/// Sends the description and [`Unit`] of every metric in [`names`] to the current
/// recorder (the global one, or a local one set with [`metrics::with_local_recorder`]).
///
/// Call it once, **after** the recorder is installed: a description sent before that
/// goes to the no-op recorder and is lost. Calling it again is harmless. With the
/// `prometheus` feature, `PrometheusMetrics::install` calls it for you.
///
/// Exporters use descriptions for the `# HELP` line and may use units for naming.
pub fn describe_metrics() {
    describe_gauge!(
        names::IN_FLIGHT_REQUESTS,
        Unit::Count,
        "Requests admitted and not yet finished."
    );
    describe_counter!(
        names::REQUESTS_REJECTED,
        Unit::Count,
        "Requests turned away with 503 because the drain had begun."
    );
    describe_counter!(
        names::REQUESTS_INTERRUPTED,
        Unit::Count,
        "Requests still in flight at the drain deadline, cancelled."
    );
    describe_counter!(
        names::STREAMS_CLOSED_BY_DRAIN,
        Unit::Count,
        "Long-lived responses (SSE, WebSocket) ended cooperatively when the drain began."
    );
    describe_gauge!(
        names::SHUTDOWN_DURATION_SECONDS,
        Unit::Seconds,
        "Time from the shutdown trigger to the end of the last cleanup task; set once."
    );
    describe_gauge!(
        names::SHUTDOWN_PHASE,
        "Shutdown phase: 0 running, 1 draining, 2 cleaning up, 3 finished."
    );
    describe_gauge!(
        names::CLEANUP_DURATION_SECONDS,
        Unit::Seconds,
        "How long each cleanup task ran, by task and outcome."
    );
    describe_counter!(
        names::CLEANUP_TASKS,
        Unit::Count,
        "Cleanup tasks that ended, by task and outcome."
    );
}
