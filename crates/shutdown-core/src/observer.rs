//! [`ShutdownObserver`]: how metrics (the `drain-metrics` crate) or anything else learn
//! what the shutdown does, without `shutdown-core` depending on them.

use crate::cleanup::CleanupOutcome;
use crate::phase::Phase;
use crate::report::{DrainSummary, ShutdownReport};

/// Receives each event of a [`Shutdown`](crate::Shutdown)'s life. Every method has an
/// empty default, so an observer implements only what it needs.
///
/// Set it once, before serving, with [`Shutdown::with_observer`](crate::Shutdown::with_observer).
///
/// The three request methods run on every request, inside
/// [`try_enter`](crate::Shutdown::try_enter) and the guard's drop: keep them to an
/// atomic operation or two, with no lock and no allocation. They are called exactly
/// once per event: `request_started` and `request_finished` pair up for every admitted
/// request, `request_rejected` once for every `None`. A panic in one of them is
/// caught, logged once as an error, and changes nothing else: the request is still
/// counted in and out, so a broken observer can neither lose a request nor hold the
/// drain open.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shutdown_core::{Shutdown, ShutdownObserver};
///
/// #[derive(Default)]
/// struct Rejections(AtomicU64);
///
/// impl ShutdownObserver for Rejections {
///     fn request_rejected(&self) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let shutdown = Shutdown::default().with_observer(Rejections::default());
/// ```
pub trait ShutdownObserver: Send + Sync + 'static {
    /// A request was admitted.
    fn request_started(&self) {}

    /// An admitted request finished: its guard was dropped.
    fn request_finished(&self) {}

    /// A request was turned away because the drain has begun.
    fn request_rejected(&self) {}

    /// A long-lived response (an SSE stream, a WebSocket session) ended because the
    /// drain began ([`DrainSignal::stream_closed`](crate::DrainSignal::stream_closed)).
    fn stream_closed(&self) {}

    /// The phase changed to `phase`.
    fn phase_changed(&self, phase: Phase) {
        let _ = phase;
    }

    /// The drain ended, by the last request leaving or by the deadline.
    fn drain_finished(&self, summary: &DrainSummary) {
        let _ = summary;
    }

    /// One cleanup task ended.
    fn cleanup_finished(&self, outcome: &CleanupOutcome) {
        let _ = outcome;
    }

    /// The whole sequence ended; called just before the report is logged and returned.
    /// The place for a final metrics push.
    fn shutdown_finished(&self, report: &ShutdownReport) {
        let _ = report;
    }
}
