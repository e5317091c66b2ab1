//! The in-flight request tracker: one atomic word, no lock, no allocation.
//!
//! The word holds the draining flag in its highest bit and the number of requests in
//! flight in the bits below. Entering is a compare-exchange that fails once the flag is
//! set, so no request can start after the drain has observed zero: the flag and the
//! count are read and written together, never one after the other.
//!
//! The guard that brings the count to zero while the flag is set wakes the drain waiter
//! through a [`Notify`]; nothing polls.

use std::fmt;
use std::pin::pin;
use std::sync::OnceLock;

use tokio::sync::Notify;

use crate::observer::ShutdownObserver;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const DRAINING: usize = 1 << (usize::BITS - 1);
const COUNT: usize = !DRAINING;

/// The atomic state machine, without the wake-up: what `loom` checks.
#[derive(Debug)]
pub(crate) struct State {
    word: AtomicUsize,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicUsize::new(0),
        }
    }

    /// Counts a request in, unless draining has begun.
    #[inline]
    pub(crate) fn try_enter(&self) -> bool {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            if current & DRAINING != 0 || current & COUNT == COUNT {
                return false;
            }
            match self.word.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts a request out. Returns `true` when this was the last request out while
    /// draining: the caller must then wake the drain waiter.
    #[inline]
    pub(crate) fn exit(&self) -> bool {
        let previous = self.word.fetch_sub(1, Ordering::AcqRel);
        previous == DRAINING | 1
    }

    /// Sets the draining flag. Returns the number of requests in flight at that moment.
    pub(crate) fn begin_drain(&self) -> usize {
        self.word.fetch_or(DRAINING, Ordering::AcqRel) & COUNT
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.word.load(Ordering::Acquire) & COUNT
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.word.load(Ordering::Acquire) & DRAINING != 0
    }

    pub(crate) fn is_drained(&self) -> bool {
        self.word.load(Ordering::Acquire) == DRAINING
    }
}

/// The tracker as the rest of the crate uses it: the state word, the wake-up, and the
/// count of rejected requests. Aligned so that the hot word does not share a cache
/// line with the `Arc` reference count or anything else in the handle.
#[repr(align(128))]
pub(crate) struct InFlight {
    state: State,
    rejected: AtomicU64,
    drained: Notify,
    pub(crate) observer: OnceLock<Box<dyn ShutdownObserver>>,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self {
            state: State::new(),
            rejected: AtomicU64::new(0),
            drained: Notify::new(),
            observer: OnceLock::new(),
        }
    }

    #[inline]
    pub(crate) fn try_enter(&self) -> bool {
        if !self.state.try_enter() {
            self.reject();
            return false;
        }
        if let Some(observer) = self.observer.get() {
            observer.request_started();
        }
        true
    }

    #[cold]
    #[inline(never)]
    fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = self.observer.get() {
            observer.request_rejected();
        }
    }

    #[inline]
    pub(crate) fn exit(&self) {
        // Observed before the count drops, so that an observer's figures never show a
        // request as finished after the drain has reported zero.
        if let Some(observer) = self.observer.get() {
            observer.request_finished();
        }
        if self.state.exit() {
            self.wake_drain();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_drain(&self) {
        self.drained.notify_waiters();
    }

    pub(crate) fn begin_drain(&self) -> usize {
        self.state.begin_drain()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.state.is_draining()
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Resolves once draining has begun and no request is in flight.
    pub(crate) async fn drained(&self) {
        loop {
            let mut notified = pin!(self.drained.notified());
            // Registered before the check, so a wake-up between check and await is kept.
            notified.as_mut().enable();
            if self.state.is_drained() {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("in_flight", &self.in_flight())
            .field("draining", &self.is_draining())
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// Proof that a request is in flight, from [`Shutdown::try_enter`](crate::Shutdown::try_enter).
///
/// The request counts as in flight until the guard is dropped, and is released exactly
/// once: when the handler returns, panics (the guard is dropped while unwinding), or is
/// cancelled because the client went away (its future, and the guard in it, is
/// dropped). Keep the guard inside the response body when the body streams, so that the
/// drain waits for the last byte.
///
/// The guard owns a reference to the shutdown state (it is `'static`, `Send` and
/// `Sync`). Where a borrowed guard is enough, [`Shutdown::try_enter_scoped`](crate::Shutdown::try_enter_scoped)
/// avoids the reference count.
#[must_use = "the request counts as in flight only while the guard is alive"]
pub struct RequestGuard {
    shutdown: crate::Shutdown,
}

impl RequestGuard {
    pub(crate) fn new(shutdown: crate::Shutdown) -> Self {
        Self { shutdown }
    }

    /// The handle this guard was taken from: for example to check, when the response
    /// is ready, whether the shutdown has begun meanwhile.
    pub fn shutdown(&self) -> &crate::Shutdown {
        &self.shutdown
    }
}

impl Drop for RequestGuard {
    #[inline]
    fn drop(&mut self) {
        self.shutdown.in_flight_tracker().exit();
    }
}

impl fmt::Debug for RequestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestGuard").finish_non_exhaustive()
    }
}

/// A guard borrowed from the [`Shutdown`](crate::Shutdown) handle, from
/// [`Shutdown::try_enter_scoped`](crate::Shutdown::try_enter_scoped).
///
/// It behaves exactly like [`RequestGuard`] but borrows the handle instead of holding a
/// reference count, which saves two atomic operations per request where the request
/// does not outlive the handle (a handler that owns the handle for its whole run).
#[must_use = "the request counts as in flight only while the guard is alive"]
pub struct ScopedRequestGuard<'a> {
    tracker: &'a InFlight,
}

impl<'a> ScopedRequestGuard<'a> {
    pub(crate) fn new(tracker: &'a InFlight) -> Self {
        Self { tracker }
    }
}

impl Drop for ScopedRequestGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.tracker.exit();
    }
}

impl fmt::Debug for ScopedRequestGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedRequestGuard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn entering_after_begin_drain_is_refused_and_counted() {
        let tracker = InFlight::new();
        assert!(tracker.try_enter());
        assert_eq!(tracker.begin_drain(), 1);
        assert!(!tracker.try_enter());
        assert!(!tracker.try_enter());
        assert_eq!(tracker.rejected(), 2);
        assert_eq!(tracker.in_flight(), 1);
        tracker.exit();
        assert_eq!(tracker.in_flight(), 0);
        assert!(tracker.state.is_drained());
    }

    #[test]
    fn exit_reports_last_out_only_while_draining() {
        let state = State::new();
        assert!(state.try_enter());
        assert!(!state.exit(), "not draining: nobody to wake");
        assert!(state.try_enter());
        assert!(state.try_enter());
        state.begin_drain();
        assert!(!state.exit());
        assert!(
            state.exit(),
            "the last one out while draining wakes the waiter"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drained_resolves_when_the_last_request_leaves() {
        let tracker = Arc::new(InFlight::new());
        assert!(tracker.try_enter());
        assert!(tracker.try_enter());
        tracker.begin_drain();

        let waiter = {
            let tracker = Arc::clone(&tracker);
            tokio::spawn(async move { tracker.drained().await })
        };
        tokio::task::yield_now().await;
        tracker.exit();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        tracker.exit();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("the last exit wakes the waiter")
            .expect("waiter task");
    }

    #[tokio::test(start_paused = true)]
    async fn drained_resolves_at_once_when_nothing_is_in_flight() {
        let tracker = InFlight::new();
        tracker.begin_drain();
        tokio::time::timeout(std::time::Duration::from_millis(1), tracker.drained())
            .await
            .expect("already drained");
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::State;
    use loom::sync::{Arc, Notify};
    use loom::thread;

    /// No request is admitted after the drain has observed zero in flight.
    #[test]
    fn no_request_starts_after_the_drain_saw_zero() {
        loom::model(|| {
            let state = Arc::new(State::new());
            let entrant = {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    if state.try_enter() {
                        let was_last = state.exit();
                        (true, was_last)
                    } else {
                        (false, false)
                    }
                })
            };
            let seen = state.begin_drain();
            let (entered, was_last) = entrant.join().expect("entrant thread");
            if seen == 0 {
                // A request admitted after this point would leave while draining and
                // report itself as the last one out.
                assert!(!was_last, "a request started after the drain saw zero");
            } else {
                assert!(entered && was_last, "the counted request wakes the drain");
            }
            assert!(!state.try_enter(), "draining refuses everyone afterwards");
            assert_eq!(state.in_flight(), 0);
        });
    }

    /// Two requests racing a drain: the drain either sees zero, or exactly one exit
    /// reports itself as the last one out, so the waiter is woken exactly once.
    #[test]
    fn exactly_one_wake_up_per_drain() {
        loom::model(|| {
            let state = Arc::new(State::new());
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let state = Arc::clone(&state);
                    thread::spawn(move || state.try_enter() && state.exit())
                })
                .collect();
            let seen = state.begin_drain();
            let wakes = workers
                .into_iter()
                .map(|w| w.join().expect("worker thread"))
                .filter(|&last| last)
                .count();
            if seen == 0 {
                assert_eq!(wakes, 0);
            } else {
                assert_eq!(wakes, 1);
            }
        });
    }

    /// The waiter protocol (begin drain, then wait until drained) never misses the
    /// wake-up of the last guard: loom reports a deadlock if it could.
    #[test]
    fn the_last_guard_wakes_the_drain_waiter() {
        loom::model(|| {
            let state = Arc::new(State::new());
            let notify = Arc::new(Notify::new());
            assert!(state.try_enter());
            let guard_holder = {
                let state = Arc::clone(&state);
                let notify = Arc::clone(&notify);
                thread::spawn(move || {
                    if state.exit() {
                        notify.notify();
                    }
                })
            };
            let second = {
                let state = Arc::clone(&state);
                let notify = Arc::clone(&notify);
                thread::spawn(move || {
                    if state.try_enter() && state.exit() {
                        notify.notify();
                    }
                })
            };
            // As in `InFlight::drained`: re-check after every wake-up (loom models
            // spurious ones); a lost wake-up would leave this loop blocked forever.
            if state.begin_drain() != 0 {
                while !state.is_drained() {
                    notify.wait();
                }
            }
            assert_eq!(state.in_flight(), 0);
            guard_holder.join().expect("guard thread");
            second.join().expect("second thread");
        });
    }
}
