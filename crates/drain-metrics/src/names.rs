//! The name of every metric this crate emits, and of their labels.
//!
//! Use them to query the recorder in tests, to configure an exporter per metric (for
//! example histogram buckets), or to build dashboards that cannot drift from the code.
//! Units follow the Prometheus convention: a duration is in seconds and says so in its
//! name. Every metric is described, with its unit, by
//! [`describe_metrics`](crate::describe_metrics).
//!
//! `docs/metrics.md` in the repository lists when each one changes.

/// Gauge, [`Unit::Count`](metrics::Unit::Count): requests admitted and not yet finished.
///
/// Incremented when [`Shutdown::try_enter`](shutdown_core::Shutdown::try_enter) admits a
/// request, decremented when its guard drops. Back to `0` once every request has left,
/// including those interrupted at the drain deadline once their handlers give up.
pub const IN_FLIGHT_REQUESTS: &str = "in_flight_requests";

/// Counter, [`Unit::Count`](metrics::Unit::Count): requests turned away because the
/// drain had begun (each answered `503`).
pub const REQUESTS_REJECTED: &str = "requests_rejected";

/// Counter, [`Unit::Count`](metrics::Unit::Count): requests still in flight at the drain
/// deadline, whose request-scope token was cancelled. Added once, when the drain ends.
pub const REQUESTS_INTERRUPTED: &str = "requests_interrupted";

/// Counter, [`Unit::Count`](metrics::Unit::Count): long-lived responses (SSE streams,
/// WebSocket sessions) that the drain signal ended cooperatively: the `shutdown` event
/// sent, the Close `1001` sent. `+1` at each such end, as it happens. They count among
/// the drained requests, never in [`REQUESTS_INTERRUPTED`].
pub const STREAMS_CLOSED_BY_DRAIN: &str = "streams_closed_by_drain";

/// Gauge, [`Unit::Seconds`](metrics::Unit::Seconds): time from the trigger to the end of
/// the last cleanup task ([`ShutdownReport::total`](shutdown_core::ShutdownReport::total)).
/// Set once, when the shutdown finishes; `0` until then.
pub const SHUTDOWN_DURATION_SECONDS: &str = "shutdown_duration_seconds";

/// Gauge, no unit: the current [`Phase`](shutdown_core::Phase) as a number:
/// `0` running, `1` draining, `2` cleaning up, `3` finished.
pub const SHUTDOWN_PHASE: &str = "shutdown_phase";

/// Gauge, [`Unit::Seconds`](metrics::Unit::Seconds), labels [`TASK`] and [`OUTCOME`]:
/// how long one cleanup task ran (its timeout, when it timed out). Set once per task,
/// when it ends.
pub const CLEANUP_DURATION_SECONDS: &str = "cleanup_duration_seconds";

/// Counter, [`Unit::Count`](metrics::Unit::Count), labels [`TASK`] and [`OUTCOME`]:
/// cleanup tasks that ended, by name and outcome. Sum by [`OUTCOME`] to alert on failed
/// cleanups.
pub const CLEANUP_TASKS: &str = "cleanup_tasks";

/// Label of the cleanup metrics: the name the task was registered under.
pub const TASK: &str = "task";

/// Label of the cleanup metrics: how the task ended, one of `completed`, `failed`,
/// `panicked`, `timed_out` ([`CleanupStatus::as_str`](shutdown_core::CleanupStatus::as_str)).
pub const OUTCOME: &str = "outcome";

/// Every metric name above, in the order `docs/metrics.md` lists them.
pub const ALL: [&str; 8] = [
    IN_FLIGHT_REQUESTS,
    REQUESTS_REJECTED,
    REQUESTS_INTERRUPTED,
    STREAMS_CLOSED_BY_DRAIN,
    SHUTDOWN_DURATION_SECONDS,
    SHUTDOWN_PHASE,
    CLEANUP_DURATION_SECONDS,
    CLEANUP_TASKS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_a_valid_distinct_prometheus_name() {
        for (i, name) in ALL.iter().enumerate() {
            let mut chars = name.chars();
            assert!(
                chars.next().is_some_and(|c| c.is_ascii_lowercase()),
                "{name} must start with a letter"
            );
            assert!(
                chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name} must be snake_case ASCII"
            );
            assert!(!ALL[..i].contains(name), "{name} is listed twice");
        }
    }

    #[test]
    fn durations_are_in_seconds_and_say_so() {
        for name in [SHUTDOWN_DURATION_SECONDS, CLEANUP_DURATION_SECONDS] {
            assert!(name.ends_with("_seconds"), "{name}");
        }
    }
}
