//! The in-flight request tracker: one atomic word, no lock, no allocation.
//!
//! The word holds the draining flag in its highest bit and the number of requests in
//! flight in the low bits. Entering is a compare-exchange that fails once the flag is
//! set, so no request can start after the drain has observed zero: the flag and the
//! count are read and written together, never one after the other.
//!
//! The guard that brings the count to zero while the flag is set wakes the drain waiter
//! through a [`Notify`]; nothing polls.
//!
//! The same word keeps the tracker alive. The tracker has its own allocation, owned
//! together by the [`Shutdown`](crate::Shutdown) handles (one `OWNED` bit) and by the
//! guards (the count), and freed by whichever of them leaves last. So a
//! [`RequestGuard`] that outlives every handle is still sound, and taking one costs the
//! compare-exchange alone: no reference count besides the count of requests, which has
//! to change anyway.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::ptr::NonNull;
use std::sync::OnceLock;

use tokio::sync::Notify;

use crate::observer::ShutdownObserver;

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// New requests are refused.
const DRAINING: usize = 1 << (usize::BITS - 1);
/// The handles still hold the tracker.
const OWNED: usize = 1 << (usize::BITS - 2);
/// The last request out while draining is waking the waiter, and holds the tracker
/// until it is done.
const WAKING: usize = 1 << (usize::BITS - 3);
/// Requests in flight.
const COUNT: usize = WAKING - 1;

/// What a request leaving must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Nothing.
    Done,
    /// Wake the drain waiter, then call [`State::finish_wake`].
    Wake,
    /// Free the tracker: this was its last holder.
    Free,
}

/// The atomic state machine, without the wake-up: what `loom` checks.
#[derive(Debug)]
pub(crate) struct State {
    word: AtomicUsize,
}

impl State {
    /// Held by the handles, nothing in flight.
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicUsize::new(OWNED),
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

    /// Counts a request out. The last one out while draining, with the handles still
    /// there (someone may wait), keeps the tracker alive as `WAKING` until it has woken
    /// the waiter; the last holder of all frees it.
    #[inline]
    pub(crate) fn exit(&self) -> Exit {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            debug_assert!(current & COUNT != 0, "a request left that never entered");
            let wake = current & (DRAINING | OWNED | COUNT) == DRAINING | OWNED | 1;
            let next = if wake {
                (current - 1) | WAKING
            } else {
                current - 1
            };
            match self.word.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if wake => return Exit::Wake,
                Ok(_) if next & (OWNED | WAKING | COUNT) == 0 => return Exit::Free,
                Ok(_) => return Exit::Done,
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends the `WAKING` hold of [`Exit::Wake`]. Returns `true` when the handles have
    /// all gone meanwhile: the caller must free the tracker.
    pub(crate) fn finish_wake(&self) -> bool {
        let previous = self.word.fetch_and(!WAKING, Ordering::AcqRel);
        previous & (OWNED | COUNT) == 0
    }

    /// The handles let go of the tracker. Returns `true` when nothing else holds it: the
    /// caller must free it.
    pub(crate) fn release_owner(&self) -> bool {
        let previous = self.word.fetch_and(!OWNED, Ordering::AcqRel);
        previous & (WAKING | COUNT) == 0
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
        self.word.load(Ordering::Acquire) & (DRAINING | COUNT) == DRAINING
    }
}

/// The tracker as the rest of the crate uses it: the state word, the wake-up, the
/// count of rejected requests, and what requests read but hardly ever write.
#[repr(C, align(128))]
pub(crate) struct InFlight {
    /// Written by every request.
    state: State,
    rejected: AtomicU64,
    drained: Notify,
    /// Read by every request, written once or twice: on a cache line of its own, so that
    /// reading it never waits for the line that requests on other cores keep writing.
    read_mostly: ReadMostly,
}

#[repr(align(64))]
struct ReadMostly {
    /// The shutdown has been triggered: responses ask HTTP/1.1 clients to reconnect.
    shutting_down: AtomicBool,
    /// The trigger is a handoff: a request refused by the drain is served all the same
    /// (by the gate), so it is not counted as rejected.
    handing_off: AtomicBool,
    observer: OnceLock<Box<dyn ShutdownObserver>>,
    /// A panic of the observer has been logged.
    observer_panicked: AtomicBool,
}

// Guards reach the tracker through a pointer (see `RequestGuard`): it must be shareable.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<InFlight>();
};

impl InFlight {
    fn new() -> Self {
        Self {
            state: State::new(),
            rejected: AtomicU64::new(0),
            drained: Notify::new(),
            read_mostly: ReadMostly {
                shutting_down: AtomicBool::new(false),
                handing_off: AtomicBool::new(false),
                observer: OnceLock::new(),
                observer_panicked: AtomicBool::new(false),
            },
        }
    }

    #[inline]
    fn try_enter(&self) -> bool {
        let entered = self.state.try_enter();
        // One call site for the rest, as in `exit`.
        if !entered || self.is_observed() {
            enter_rest(self, entered);
        }
        entered
    }

    #[inline]
    fn is_observed(&self) -> bool {
        self.read_mostly.observer.get().is_some()
    }

    /// Sets the observer; `false` when one was already set.
    pub(crate) fn set_observer(&self, observer: Box<dyn ShutdownObserver>) -> bool {
        self.read_mostly.observer.set(observer).is_ok()
    }

    pub(crate) fn observer(&self) -> Option<&dyn ShutdownObserver> {
        self.read_mostly.observer.get().map(|o| &**o)
    }

    /// Counts a request out.
    ///
    /// # Safety
    ///
    /// `tracker` is live and holds the caller's request, which leaves exactly once
    /// here. The tracker may be freed by this call: the caller must not use it after.
    #[inline]
    unsafe fn exit(tracker: NonNull<Self>) {
        // SAFETY: live until `state.exit` gives up the caller's hold, below.
        let this = unsafe { tracker.as_ref() };
        // One call site for all that is not the compare-exchange: the guard's drop stays
        // small enough for the bodies holding it to be inlined.
        let rest = if this.is_observed() {
            Rest::Observe
        } else {
            match this.state.exit() {
                Exit::Done => return,
                Exit::Wake => Rest::Wake,
                Exit::Free => Rest::Free,
            }
        };
        // SAFETY: as for this function; `this` is not used after.
        unsafe { exit_rest(tracker, rest) }
    }

    pub(crate) fn begin_drain(&self) -> usize {
        self.state.begin_drain()
    }

    /// Marks the shutdown as triggered, for [`RequestGuard::is_shutting_down`]; by a
    /// handoff when `handoff`.
    pub(crate) fn begin_shutdown(&self, handoff: bool) {
        if handoff {
            self.read_mostly.handing_off.store(true, Ordering::Release);
        }
        self.read_mostly
            .shutting_down
            .store(true, Ordering::Release);
    }

    #[inline]
    fn is_shutting_down(&self) -> bool {
        self.read_mostly.shutting_down.load(Ordering::Acquire)
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

/// A request event for the observer.
#[derive(Debug, Clone, Copy)]
enum Event {
    Started,
    Finished,
    Rejected,
}

// Nothing unwinds out of `enter_rest` and `exit_rest`: they catch what the code they
// call may throw (the observer and the log subscriber are user code), and their `"C"`
// ABI tells the compiler so. Two things follow. A panic can no longer leave a request
// counted forever, which would hold the drain until its deadline. And a guard's drop
// cannot unwind, so the bodies and futures that hold a guard keep no landing pad for
// it and build their results in place: about 10 ns of the `per_request` benchmark
// (docs/performance.md).

/// The rest of a request's entry: count a rejection, tell the observer.
#[inline(never)]
extern "C" fn enter_rest(tracker: &InFlight, entered: bool) {
    if entered {
        notify_observer(tracker, Event::Started);
    } else if !tracker.read_mostly.handing_off.load(Ordering::Acquire) {
        tracker.rejected.fetch_add(1, Ordering::Relaxed);
        notify_observer(tracker, Event::Rejected);
    }
}

/// Tells the observer, if any, of `event`. A panic in the observer is caught and
/// logged once per tracker; the count is kept either way.
#[inline]
fn notify_observer(tracker: &InFlight, event: Event) {
    let Some(observer) = tracker.read_mostly.observer.get() else {
        return;
    };
    let panicked = contain(|| match event {
        Event::Started => observer.request_started(),
        Event::Finished => observer.request_finished(),
        Event::Rejected => observer.request_rejected(),
    });
    if panicked
        && !tracker
            .read_mostly
            .observer_panicked
            .swap(true, Ordering::Relaxed)
    {
        log_caught(match event {
            Event::Started => {
                "the shutdown observer panicked in `request_started`; the request is still counted (logged once)"
            }
            Event::Finished => {
                "the shutdown observer panicked in `request_finished`; the request is still counted out (logged once)"
            }
            Event::Rejected => {
                "the shutdown observer panicked in `request_rejected`; the rejection is still counted (logged once)"
            }
        });
    }
}

/// Logs a panic caught in the two functions above. The subscriber is user code too.
fn log_caught(message: &'static str) {
    contain(|| tracing::error!("{message}"));
}

/// Runs `f`, catching a panic; `true` when it panicked. The panic's payload is user
/// code as well: it is dropped inside a catch too, and forgotten if that drop panics
/// (a leak, rather than an unwind out of a function that must not unwind).
fn contain(f: impl FnOnce()) -> bool {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => false,
        Err(payload) => {
            if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            true
        }
    }
}

/// What is left of a request's exit after [`InFlight::exit`]'s inline part.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Rest {
    /// All of it: tell the observer, then count the request out.
    Observe,
    /// Wake the drain waiter ([`Exit::Wake`]).
    Wake,
    /// Free the tracker ([`Exit::Free`]).
    Free,
}

/// The rest of a request's exit: tell the observer, wake the drain waiter, free the
/// tracker, as `rest` says.
///
/// # Safety
///
/// As for [`InFlight::exit`], which handed over `rest`.
#[inline(never)]
unsafe extern "C" fn exit_rest(tracker: NonNull<InFlight>, rest: Rest) {
    let outcome = match rest {
        Rest::Observe => {
            // SAFETY: the caller's request still holds the tracker.
            let this = unsafe { tracker.as_ref() };
            // Before the count drops, so that an observer's figures never show a
            // request as finished after the drain has reported zero.
            notify_observer(this, Event::Finished);
            this.state.exit()
        }
        Rest::Wake => Exit::Wake,
        Rest::Free => Exit::Free,
    };
    let last = match outcome {
        Exit::Done => false,
        Exit::Free => true,
        Exit::Wake => {
            // SAFETY: `WAKING` keeps the tracker alive until `finish_wake`.
            let this = unsafe { tracker.as_ref() };
            // A waker that panics must not keep `WAKING` set (the tracker would leak).
            if contain(|| this.drained.notify_waiters()) {
                log_caught("a drain waiter's waker panicked");
            }
            this.state.finish_wake()
        }
    };
    if last {
        // SAFETY: as for this function; this call held the tracker last.
        unsafe { free(tracker) }
    }
}

/// Frees the tracker. A panic in the observer's `Drop` (user code) is caught and
/// logged: the last holder may be a guard dropped where nothing may unwind, or the last
/// handle dropped while another panic unwinds.
///
/// # Safety
///
/// Nothing else holds the tracker, which [`TrackerOwner::new`] boxed.
unsafe fn free(tracker: NonNull<InFlight>) {
    // SAFETY: as above.
    let tracker = unsafe { Box::from_raw(tracker.as_ptr()) };
    if contain(move || drop(tracker)) {
        log_caught("the shutdown observer panicked when dropped");
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

/// The handles' hold on the tracker: one, in the state that every
/// [`Shutdown`](crate::Shutdown) clone shares. Dropping it lets go of the `OWNED` bit;
/// the tracker itself lives on while guards hold it.
pub(crate) struct TrackerOwner {
    tracker: NonNull<InFlight>,
}

// SAFETY: only shared references to the `Send + Sync` tracker are handed out.
unsafe impl Send for TrackerOwner {}
// SAFETY: as above.
unsafe impl Sync for TrackerOwner {}

impl TrackerOwner {
    pub(crate) fn new() -> Self {
        Self {
            tracker: NonNull::from(Box::leak(Box::new(InFlight::new()))),
        }
    }

    #[inline]
    pub(crate) fn try_enter(&self) -> Option<RequestGuard> {
        // `then`, not `then_some`: a guard built and dropped on refusal would leave.
        InFlight::try_enter(self).then(|| RequestGuard {
            tracker: self.tracker,
        })
    }
}

impl std::ops::Deref for TrackerOwner {
    type Target = InFlight;

    #[inline]
    fn deref(&self) -> &InFlight {
        // SAFETY: the `OWNED` bit keeps the tracker alive as long as `self`.
        unsafe { self.tracker.as_ref() }
    }
}

impl Drop for TrackerOwner {
    fn drop(&mut self) {
        if self.state.release_owner() {
            // SAFETY: nothing else holds the tracker, which `new` boxed.
            unsafe { free(self.tracker) }
        }
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
/// The guard is `'static`, `Send` and `Sync`, and may outlive every
/// [`Shutdown`](crate::Shutdown) handle. It holds the request tracker through the count
/// of requests itself, so it costs no reference count of its own: one compare-exchange
/// when taken, one when dropped.
#[must_use = "the request counts as in flight only while the guard is alive"]
pub struct RequestGuard {
    tracker: NonNull<InFlight>,
}

// SAFETY: the guard only reads the `Send + Sync` tracker, and leaves it once, in `drop`.
unsafe impl Send for RequestGuard {}
// SAFETY: as above; `&RequestGuard` only reads.
unsafe impl Sync for RequestGuard {}

impl RequestGuard {
    /// `true` once the shutdown has been triggered (as
    /// [`Shutdown::is_shutting_down`](crate::Shutdown::is_shutting_down)): for example
    /// to ask an HTTP/1.1 client, when the response is ready, to reconnect elsewhere.
    #[inline]
    pub fn is_shutting_down(&self) -> bool {
        // SAFETY: the guard's own count keeps the tracker alive.
        unsafe { self.tracker.as_ref() }.is_shutting_down()
    }
}

impl Drop for RequestGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard holds one count, given up exactly once, here.
        unsafe { InFlight::exit(self.tracker) }
    }
}

impl fmt::Debug for RequestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestGuard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// Sets its flag when dropped, that is when the tracker holding it is freed.
    struct FreedFlag(Arc<AtomicBool>);

    impl ShutdownObserver for FreedFlag {}

    impl Drop for FreedFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A tracker whose free is visible through the returned flag.
    fn watched_tracker() -> (TrackerOwner, Arc<AtomicBool>) {
        let owner = TrackerOwner::new();
        let freed = Arc::new(AtomicBool::new(false));
        assert!(
            owner
                .read_mostly
                .observer
                .set(Box::new(FreedFlag(Arc::clone(&freed))))
                .is_ok()
        );
        (owner, freed)
    }

    /// Panics in every request method, and when dropped (after setting its flag).
    struct Panicking(Arc<AtomicBool>);

    impl ShutdownObserver for Panicking {
        fn request_started(&self) {
            panic!("started");
        }
        fn request_finished(&self) {
            panic!("finished");
        }
        fn request_rejected(&self) {
            panic!("rejected");
        }
    }

    impl Drop for Panicking {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            panic!("dropped");
        }
    }

    #[test]
    fn an_observer_panic_is_caught_and_the_count_kept_to_the_free() {
        let owner = TrackerOwner::new();
        let freed = Arc::new(AtomicBool::new(false));
        assert!(owner.set_observer(Box::new(Panicking(Arc::clone(&freed)))));
        let first = owner.try_enter().expect("admitted");
        let second = owner.try_enter().expect("admitted");
        drop(first);
        assert_eq!(owner.in_flight(), 1);
        assert_eq!(owner.begin_drain(), 1);
        assert!(owner.try_enter().is_none());
        assert_eq!(owner.rejected(), 1);
        drop(owner);
        assert!(!freed.load(Ordering::SeqCst), "the guard still holds it");
        // The last holder: frees the tracker, whose observer panics when dropped.
        drop(second);
        assert!(freed.load(Ordering::SeqCst));
    }

    #[test]
    fn entering_after_begin_drain_is_refused_and_counted() {
        let tracker = TrackerOwner::new();
        let guard = tracker.try_enter();
        assert!(guard.is_some());
        assert_eq!(tracker.begin_drain(), 1);
        assert!(tracker.try_enter().is_none());
        assert!(tracker.try_enter().is_none());
        assert_eq!(tracker.rejected(), 2);
        assert_eq!(tracker.in_flight(), 1);
        drop(guard);
        assert_eq!(tracker.in_flight(), 0);
        assert!(tracker.state.is_drained());
    }

    #[test]
    fn exit_asks_for_a_wake_up_only_when_last_out_while_draining() {
        let state = State::new();
        assert!(state.try_enter());
        assert_eq!(state.exit(), Exit::Done, "not draining: nobody to wake");
        assert!(state.try_enter());
        assert!(state.try_enter());
        state.begin_drain();
        assert_eq!(state.exit(), Exit::Done);
        assert_eq!(
            state.exit(),
            Exit::Wake,
            "the last one out while draining wakes the waiter"
        );
        assert!(state.is_drained(), "drained while the waker still holds on");
        assert!(!state.finish_wake(), "the handles still hold the tracker");
        assert!(state.release_owner());
    }

    #[test]
    fn the_last_holder_frees_whichever_it_is() {
        // Handles first, then the request.
        let state = State::new();
        assert!(state.try_enter());
        assert!(!state.release_owner(), "a request still holds it");
        assert_eq!(state.exit(), Exit::Free);

        // While draining, with the handles gone: nobody waits, the guard frees.
        let state = State::new();
        assert!(state.try_enter());
        state.begin_drain();
        assert!(!state.release_owner());
        assert_eq!(state.exit(), Exit::Free);

        // The handles leave while the last request out is waking the waiter.
        let state = State::new();
        assert!(state.try_enter());
        state.begin_drain();
        assert_eq!(state.exit(), Exit::Wake);
        assert!(!state.release_owner(), "the waker still holds it");
        assert!(state.finish_wake());
    }

    #[test]
    fn guards_see_the_shutdown_begin_and_are_still_admitted_until_the_drain() {
        let tracker = TrackerOwner::new();
        let guard = tracker.try_enter().expect("running");
        assert!(!guard.is_shutting_down());
        tracker.begin_shutdown(false);
        assert!(guard.is_shutting_down());
        let second = tracker
            .try_enter()
            .expect("admitted until the drain begins");
        assert!(second.is_shutting_down());
        assert_eq!(tracker.in_flight(), 2);
        assert!(!tracker.is_draining());
        tracker.begin_drain();
        drop((guard, second));
        assert!(tracker.state.is_drained());
    }

    #[test]
    fn a_guard_that_outlives_the_handles_frees_the_tracker() {
        let (owner, freed) = watched_tracker();
        let guard = owner.try_enter().expect("running");
        owner.begin_shutdown(false);
        drop(owner);
        assert!(!freed.load(Ordering::SeqCst), "the guard still holds it");
        assert!(guard.is_shutting_down(), "readable after the handles left");
        std::thread::spawn(move || drop(guard))
            .join()
            .expect("guard thread");
        assert!(freed.load(Ordering::SeqCst));
    }

    #[test]
    fn the_handles_free_the_tracker_when_no_guard_is_left() {
        let (owner, freed) = watched_tracker();
        drop(owner.try_enter().expect("running"));
        drop(owner.try_enter().expect("running"));
        assert!(!freed.load(Ordering::SeqCst));
        drop(owner);
        assert!(freed.load(Ordering::SeqCst));
    }

    #[test]
    fn a_draining_guard_that_outlives_the_handles_frees_the_tracker() {
        let (owner, freed) = watched_tracker();
        let guard = owner.try_enter().expect("running");
        owner.begin_drain();
        drop(owner);
        drop(guard);
        assert!(freed.load(Ordering::SeqCst));
    }

    /// Real threads: requests come and go while the drain begins and the handles go,
    /// the last guards leaving after every handle. Under miri (`cargo xtask miri`) a use
    /// after free, a double free or a leak would be reported.
    #[test]
    fn guards_on_several_threads_outlive_the_handles_without_a_leak() {
        const THREADS: usize = 3;
        let rounds = if cfg!(miri) { 20 } else { 20_000 };
        let (owner, freed) = watched_tracker();
        let owner = Arc::new(owner);
        // Every worker holds a guard before the drain begins.
        let entered = Arc::new(std::sync::Barrier::new(THREADS + 1));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (owner, entered) = (Arc::clone(&owner), Arc::clone(&entered));
                std::thread::spawn(move || {
                    let mut held = std::collections::VecDeque::new();
                    held.push_back(owner.try_enter().expect("running"));
                    entered.wait();
                    for _ in 0..rounds {
                        let Some(guard) = owner.try_enter() else {
                            break;
                        };
                        held.push_back(guard);
                        if held.len() > 2 {
                            held.pop_front();
                        }
                    }
                    // This thread's hold on the handles goes first, its guards after.
                    drop(owner);
                    drop(held);
                })
            })
            .collect();
        entered.wait();
        // Requests of its own meanwhile, so that the workers' loops run concurrently.
        for _ in 0..rounds / 4 {
            drop(owner.try_enter());
        }
        owner.begin_drain();
        drop(owner);
        for worker in workers {
            worker.join().expect("worker thread");
        }
        assert!(
            freed.load(Ordering::SeqCst),
            "the last holder freed the tracker"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drained_resolves_when_the_last_request_leaves() {
        let tracker = Arc::new(TrackerOwner::new());
        let first = tracker.try_enter().expect("running");
        let second = tracker.try_enter().expect("running");
        tracker.begin_drain();

        let waiter = {
            let tracker = Arc::clone(&tracker);
            tokio::spawn(async move { tracker.drained().await })
        };
        tokio::task::yield_now().await;
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the last exit wakes the waiter")
            .expect("waiter task");
    }

    #[tokio::test(start_paused = true)]
    async fn drained_resolves_at_once_when_nothing_is_in_flight() {
        let tracker = TrackerOwner::new();
        tracker.begin_drain();
        tokio::time::timeout(Duration::from_millis(1), tracker.drained())
            .await
            .expect("already drained");
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::{Exit, State};
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::{Arc, Notify};
    use loom::thread;

    /// Leaves as a guard does, returning `true` when the tracker was woken.
    fn exit(state: &State, notify: &Notify, freed: &AtomicBool) -> bool {
        match state.exit() {
            Exit::Done => false,
            Exit::Free => {
                assert!(!freed.swap(true, Ordering::SeqCst), "freed twice");
                false
            }
            Exit::Wake => {
                assert!(!freed.load(Ordering::SeqCst), "woken after the free");
                notify.notify();
                if state.finish_wake() {
                    assert!(!freed.swap(true, Ordering::SeqCst), "freed twice");
                }
                true
            }
        }
    }

    /// The tracker as the models share it: its state, the waiter's wake-up, and whether
    /// it has been freed.
    #[derive(Clone)]
    struct Shared {
        state: Arc<State>,
        notify: Arc<Notify>,
        freed: Arc<AtomicBool>,
    }

    impl Shared {
        fn new() -> Self {
            Self {
                state: Arc::new(State::new()),
                notify: Arc::new(Notify::new()),
                freed: Arc::new(AtomicBool::new(false)),
            }
        }

        /// A thread that holds a request (taking it first unless `entered`) and leaves.
        fn spawn_request(&self, entered: bool) -> thread::JoinHandle<()> {
            let shared = self.clone();
            thread::spawn(move || {
                if entered || shared.state.try_enter() {
                    exit(&shared.state, &shared.notify, &shared.freed);
                }
            })
        }
    }

    /// Lets go of the tracker as the last handle does.
    fn release_owner(state: &State, freed: &AtomicBool) {
        if state.release_owner() {
            assert!(!freed.swap(true, Ordering::SeqCst), "freed twice");
        }
    }

    /// No request is admitted after the drain has observed zero in flight.
    #[test]
    fn no_request_starts_after_the_drain_saw_zero() {
        loom::model(|| {
            let state = Arc::new(State::new());
            let entrant = {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    if state.try_enter() {
                        (true, state.exit() == Exit::Wake)
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
                assert!(!state.finish_wake());
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
                    thread::spawn(move || {
                        let woke = state.try_enter() && state.exit() == Exit::Wake;
                        if woke {
                            assert!(!state.finish_wake());
                        }
                        woke
                    })
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
            let shared = Shared::new();
            let state = &shared.state;
            assert!(state.try_enter());
            let guard_holder = shared.spawn_request(true);
            let second = shared.spawn_request(false);
            // As in `InFlight::drained`: re-check after every wake-up (loom models
            // spurious ones); a lost wake-up would leave this loop blocked forever.
            if state.begin_drain() != 0 {
                while !state.is_drained() {
                    shared.notify.wait();
                }
            }
            assert_eq!(state.in_flight(), 0);
            guard_holder.join().expect("guard thread");
            second.join().expect("second thread");
            assert!(
                !shared.freed.load(Ordering::SeqCst),
                "the handles still hold it"
            );
        });
    }

    /// The last handle leaves while the last guard is waking the waiter, or while
    /// guards leave with no drain at all: the tracker is freed exactly once, and never
    /// before the waker is done with it.
    #[test]
    fn the_tracker_is_freed_once_by_its_last_holder() {
        loom::model(|| {
            let shared = Shared::new();
            assert!(shared.state.try_enter());
            assert!(shared.state.try_enter());
            let guards = [shared.spawn_request(true), shared.spawn_request(true)];
            shared.state.begin_drain();
            release_owner(&shared.state, &shared.freed);
            for guard in guards {
                guard.join().expect("guard thread");
            }
            assert!(
                shared.freed.load(Ordering::SeqCst),
                "nobody freed the tracker"
            );
        });
    }
}
