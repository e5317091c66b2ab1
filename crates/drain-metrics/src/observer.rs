//! [`DrainMetrics`]: the [`ShutdownObserver`] that turns a shutdown's events into metrics.
//!
//! It differs from what users may already have:
//!
//! - tower-http's `InFlightRequestsLayer` counts requests in flight too, but knows
//!   nothing of the drain: it cannot tell a rejected request from a served one, nor
//!   which requests the deadline interrupted. `DrainMetrics` counts exactly what
//!   [`Shutdown::try_enter`](shutdown_core::Shutdown::try_enter) admits and turns away,
//!   so its figures agree with the [`ShutdownReport`].
//! - The [`ShutdownReport`] is logged once, at the very end. The gauges here are live:
//!   a scrape during the drain shows the requests still in flight and the phase.

use metrics::{Counter, Gauge, counter, gauge};
use shutdown_core::{CleanupOutcome, DrainSummary, Phase, ShutdownObserver, ShutdownReport};

use crate::names;

/// The target of the events this crate logs.
const TARGET: &str = "drain_metrics";

/// Records a [`Shutdown`](shutdown_core::Shutdown)'s events as metrics, through the
/// [`metrics`] facade, and logs the final values when the shutdown finishes.
///
/// Set it on the handle with
/// [`Shutdown::with_observer`](shutdown_core::Shutdown::with_observer).
///
/// # Create it after the recorder is installed
///
/// [`new`](Self::new) registers its gauges and counters once, with the recorder that is
/// current at that moment, and keeps the handles: nothing is looked up per request. A
/// `DrainMetrics` created before the recorder is installed holds no-op handles and
/// records nothing, ever. (The per-task cleanup metrics are registered when each task
/// ends, with the recorder current then.)
///
/// # Cost per request
///
/// A request admitted costs one gauge increment and, when its guard drops, one gauge
/// decrement; a request turned away costs one counter increment. Each is a call through
/// the stored handle into the recorder (for `metrics-exporter-prometheus`, one atomic
/// operation): no lock, no allocation, no lookup.
///
/// # The final values are logged
///
/// When the shutdown finishes, the `shutdown_duration_seconds` gauge is set and one
/// `info` event `"final metrics"` with target `drain_metrics` carries the final figures
/// as fields: `shutdown_duration_seconds`, `requests_interrupted`, `requests_rejected`,
/// `requests_drained`, `streams_closed_by_drain`, `in_flight_at_drain`, `cleanup_tasks`, `cleanup_tasks_failed`.
/// They reach the logs even when no scrape or push happens before the process exits.
///
/// ```
/// use drain_metrics::DrainMetrics;
/// use shutdown_core::Shutdown;
///
/// // Install the recorder first (for example `PrometheusMetrics::install()` with the
/// // `prometheus` feature), then:
/// drain_metrics::describe_metrics();
/// let shutdown = Shutdown::default().with_observer(DrainMetrics::new());
/// ```
#[derive(Debug, Clone)]
pub struct DrainMetrics {
    in_flight: Gauge,
    rejected: Counter,
    interrupted: Counter,
    streams_closed: Counter,
    shutdown_duration: Gauge,
    phase: Gauge,
}

impl DrainMetrics {
    /// Registers the metrics with the current recorder and keeps their handles. The
    /// phase gauge starts at `0` (running); the others start at `0` as every new metric
    /// does.
    ///
    /// Call it after the recorder is installed (see the type's documentation).
    pub fn new() -> Self {
        let metrics = Self {
            in_flight: gauge!(names::IN_FLIGHT_REQUESTS),
            rejected: counter!(names::REQUESTS_REJECTED),
            interrupted: counter!(names::REQUESTS_INTERRUPTED),
            streams_closed: counter!(names::STREAMS_CLOSED_BY_DRAIN),
            shutdown_duration: gauge!(names::SHUTDOWN_DURATION_SECONDS),
            phase: gauge!(names::SHUTDOWN_PHASE),
        };
        metrics.phase.set(phase_value(Phase::Running));
        metrics
    }
}

impl Default for DrainMetrics {
    /// Same as [`DrainMetrics::new`].
    fn default() -> Self {
        Self::new()
    }
}

fn phase_value(phase: Phase) -> f64 {
    f64::from(phase as u8)
}

fn saturating_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl ShutdownObserver for DrainMetrics {
    fn request_started(&self) {
        self.in_flight.increment(1.0);
    }

    fn request_finished(&self) {
        self.in_flight.decrement(1.0);
    }

    fn request_rejected(&self) {
        self.rejected.increment(1);
    }

    fn stream_closed(&self) {
        self.streams_closed.increment(1);
    }

    fn phase_changed(&self, phase: Phase) {
        self.phase.set(phase_value(phase));
    }

    fn drain_finished(&self, summary: &DrainSummary) {
        self.interrupted
            .increment(saturating_u64(summary.interrupted));
    }

    fn cleanup_finished(&self, outcome: &CleanupOutcome) {
        let status = outcome.status.as_str();
        gauge!(
            names::CLEANUP_DURATION_SECONDS,
            names::TASK => outcome.name.clone(),
            names::OUTCOME => status,
        )
        .set(outcome.duration.as_secs_f64());
        counter!(
            names::CLEANUP_TASKS,
            names::TASK => outcome.name.clone(),
            names::OUTCOME => status,
        )
        .increment(1);
    }

    fn shutdown_finished(&self, report: &ShutdownReport) {
        let shutdown_duration_seconds = report.total.as_secs_f64();
        self.shutdown_duration.set(shutdown_duration_seconds);
        tracing::info!(
            target: TARGET,
            shutdown_duration_seconds,
            requests_interrupted = saturating_u64(report.drain.interrupted),
            requests_rejected = report.drain.rejected,
            requests_drained = saturating_u64(report.drain.drained()),
            streams_closed_by_drain = report.drain.streams_closed_by_drain,
            in_flight_at_drain = saturating_u64(report.drain.in_flight_at_drain),
            cleanup_tasks = saturating_u64(report.cleanups.len()),
            cleanup_tasks_failed = saturating_u64(report.failed_cleanups().count()),
            "final metrics"
        );
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn gauge_value(values: &[(String, DebugValue)], name: &str) -> Option<f64> {
        values.iter().find_map(|(n, v)| match v {
            DebugValue::Gauge(g) if n == name => Some(g.into_inner()),
            _ => None,
        })
    }

    fn counter_value(values: &[(String, DebugValue)], name: &str) -> Option<u64> {
        values.iter().find_map(|(n, v)| match v {
            DebugValue::Counter(c) if n == name => Some(*c),
            _ => None,
        })
    }

    #[test]
    fn new_registers_every_unlabelled_metric_and_starts_the_phase_at_running() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || drop(DrainMetrics::new()));

        let values: Vec<(String, DebugValue)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect();
        assert_eq!(gauge_value(&values, names::IN_FLIGHT_REQUESTS), Some(0.0));
        assert_eq!(counter_value(&values, names::REQUESTS_REJECTED), Some(0));
        assert_eq!(counter_value(&values, names::REQUESTS_INTERRUPTED), Some(0));
        assert_eq!(
            counter_value(&values, names::STREAMS_CLOSED_BY_DRAIN),
            Some(0)
        );
        assert_eq!(
            gauge_value(&values, names::SHUTDOWN_DURATION_SECONDS),
            Some(0.0)
        );
        assert_eq!(gauge_value(&values, names::SHUTDOWN_PHASE), Some(0.0));
    }

    #[test]
    fn handles_keep_recording_outside_the_recorder_scope_they_were_created_in() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let observer = metrics::with_local_recorder(&recorder, DrainMetrics::new);

        // No recorder is current here: only the stored handles can reach `recorder`.
        observer.request_started();
        observer.request_started();
        observer.request_finished();
        observer.request_rejected();
        observer.stream_closed();
        observer.phase_changed(Phase::Draining);

        let values: Vec<(String, DebugValue)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect();
        assert_eq!(gauge_value(&values, names::IN_FLIGHT_REQUESTS), Some(1.0));
        assert_eq!(counter_value(&values, names::REQUESTS_REJECTED), Some(1));
        assert_eq!(
            counter_value(&values, names::STREAMS_CLOSED_BY_DRAIN),
            Some(1)
        );
        assert_eq!(gauge_value(&values, names::SHUTDOWN_PHASE), Some(1.0));
    }

    #[test]
    fn phase_values_follow_the_phase_order() {
        assert_eq!(phase_value(Phase::Running), 0.0);
        assert_eq!(phase_value(Phase::Draining), 1.0);
        assert_eq!(phase_value(Phase::CleaningUp), 2.0);
        assert_eq!(phase_value(Phase::Finished), 3.0);
    }
}
