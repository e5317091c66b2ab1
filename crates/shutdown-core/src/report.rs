//! [`ShutdownReport`]: what the shutdown did, returned and logged as one event.

use std::time::Duration;

use crate::cleanup::CleanupOutcome;
use crate::config::ExitCodes;
use crate::phase::Trigger;

/// The outcome of the drain, from [`Shutdown::drain`](crate::Shutdown::drain).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainSummary {
    /// What started the shutdown.
    pub trigger: Trigger,
    /// Time spent in the pre-stop delay.
    pub pre_stop_delay: Duration,
    /// Time from the start of the drain until the last request left or the deadline.
    pub duration: Duration,
    /// Requests in flight when the drain began.
    pub in_flight_at_drain: usize,
    /// Of those, requests still in flight at the deadline: cancelled through the
    /// request-scope token and counted as interrupted.
    pub interrupted: usize,
    /// Requests turned away from the start of the drain until the drain ended.
    pub rejected: u64,
    /// Long-lived responses (SSE streams, WebSocket sessions) that the drain signal
    /// ended cooperatively: the last event sent, the Close `1001` sent. They count among
    /// the drained requests, never among the interrupted ones. In the report, counted
    /// until the end of the sequence.
    pub streams_closed_by_drain: u64,
}

impl DrainSummary {
    /// Requests that were in flight when the drain began and finished in time.
    pub fn drained(&self) -> usize {
        self.in_flight_at_drain.saturating_sub(self.interrupted)
    }

    /// `true` when the deadline passed with requests still in flight.
    pub fn timed_out(&self) -> bool {
        self.interrupted > 0
    }
}

/// Everything the shutdown did: the trigger, the duration of each phase, the request
/// counts and each cleanup task's outcome.
///
/// [`Shutdown::run`](crate::Shutdown::run) returns it and logs it as one `info` event
/// (`"graceful shutdown complete"`, or `warn` when it is not clean) with every figure as
/// a field. Pass [`exit_code`](Self::exit_code) to `std::process::exit`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What happened up to the end of the drain.
    pub drain: DrainSummary,
    /// Background tasks still running when cancelled.
    pub tasks_at_cancel: usize,
    /// Background tasks still running when their bound ran out (abandoned).
    pub tasks_abandoned: usize,
    /// Time spent waiting for background tasks after cancelling them.
    pub tasks_duration: Duration,
    /// Each cleanup task, in the order it ran (reverse order of registration).
    pub cleanups: Vec<CleanupOutcome>,
    /// Time spent running cleanup tasks.
    pub cleanup_duration: Duration,
    /// From the trigger to the end of the last cleanup task.
    pub total: Duration,
    /// The exit codes this report maps its outcome to.
    pub exit_codes: ExitCodes,
}

impl ShutdownReport {
    /// `true` when no request was interrupted, no background task was abandoned and
    /// every cleanup task completed.
    pub fn is_clean(&self) -> bool {
        !self.drain.timed_out() && self.cleanup_ok()
    }

    /// `true` when every cleanup task completed and no background task was abandoned.
    pub fn cleanup_ok(&self) -> bool {
        self.tasks_abandoned == 0 && self.cleanups.iter().all(|c| c.status.is_success())
    }

    /// The process exit code for this outcome: [`ExitCodes::clean`] when clean,
    /// [`ExitCodes::cleanup_failed`] when a cleanup task failed, panicked or timed out
    /// or background tasks were abandoned, otherwise
    /// [`ExitCodes::requests_interrupted`] when the deadline interrupted requests.
    pub fn exit_code(&self) -> i32 {
        if !self.cleanup_ok() {
            self.exit_codes.cleanup_failed
        } else if self.drain.timed_out() {
            self.exit_codes.requests_interrupted
        } else {
            self.exit_codes.clean
        }
    }

    /// The cleanup tasks that did not complete.
    pub fn failed_cleanups(&self) -> impl Iterator<Item = &CleanupOutcome> {
        self.cleanups.iter().filter(|c| !c.status.is_success())
    }

    pub(crate) fn log(&self) {
        let failed: Vec<String> = self
            .failed_cleanups()
            .map(|c| format!("{} ({})", c.name, c.status))
            .collect();
        macro_rules! report_event {
            ($level:expr, $message:literal) => {
                tracing::event!(
                    $level,
                    trigger = %self.drain.trigger,
                    trigger_kind = self.drain.trigger.kind(),
                    total_ms = millis(self.total),
                    pre_stop_delay_ms = millis(self.drain.pre_stop_delay),
                    drain_ms = millis(self.drain.duration),
                    tasks_ms = millis(self.tasks_duration),
                    cleanup_ms = millis(self.cleanup_duration),
                    in_flight_at_drain = self.drain.in_flight_at_drain,
                    drained = self.drain.drained(),
                    interrupted = self.drain.interrupted,
                    rejected = self.drain.rejected,
                    streams_closed_by_drain = self.drain.streams_closed_by_drain,
                    tasks_at_cancel = self.tasks_at_cancel,
                    tasks_abandoned = self.tasks_abandoned,
                    cleanups = self.cleanups.len(),
                    cleanups_failed = failed.len(),
                    failed = ?failed,
                    exit_code = self.exit_code(),
                    $message
                )
            };
        }
        if self.is_clean() {
            report_event!(tracing::Level::INFO, "graceful shutdown complete");
        } else {
            report_event!(
                tracing::Level::WARN,
                "graceful shutdown complete, with problems"
            );
        }
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::CleanupStatus;

    fn report(interrupted: usize, cleanup: CleanupStatus, abandoned: usize) -> ShutdownReport {
        ShutdownReport {
            drain: DrainSummary {
                trigger: Trigger::Signal("SIGTERM"),
                pre_stop_delay: Duration::ZERO,
                duration: Duration::from_secs(1),
                in_flight_at_drain: 3,
                interrupted,
                rejected: 0,
                streams_closed_by_drain: 0,
            },
            tasks_at_cancel: 0,
            tasks_abandoned: abandoned,
            tasks_duration: Duration::ZERO,
            cleanups: vec![CleanupOutcome {
                name: "db".into(),
                status: cleanup,
                duration: Duration::ZERO,
            }],
            cleanup_duration: Duration::ZERO,
            total: Duration::from_secs(1),
            exit_codes: ExitCodes::DEFAULT,
        }
    }

    #[test]
    fn exit_code_maps_each_outcome() {
        assert_eq!(report(0, CleanupStatus::Completed, 0).exit_code(), 0);
        assert_eq!(report(1, CleanupStatus::Completed, 0).exit_code(), 3);
        assert_eq!(report(0, CleanupStatus::TimedOut, 0).exit_code(), 4);
        assert_eq!(
            report(0, CleanupStatus::Failed("x".into()), 0).exit_code(),
            4
        );
        assert_eq!(
            report(0, CleanupStatus::Panicked("x".into()), 0).exit_code(),
            4
        );
        assert_eq!(report(0, CleanupStatus::Completed, 1).exit_code(), 4);
        assert_eq!(
            report(2, CleanupStatus::TimedOut, 0).exit_code(),
            4,
            "a failed cleanup outranks interrupted requests"
        );
        let mut custom = report(2, CleanupStatus::Completed, 0);
        custom.exit_codes = ExitCodes::new(0, 75, 76);
        assert_eq!(custom.exit_code(), 75);
    }

    #[test]
    fn drained_counts_the_requests_that_finished_in_time() {
        let r = report(1, CleanupStatus::Completed, 0);
        assert_eq!(r.drain.drained(), 2);
        assert!(!r.is_clean());
    }
}
