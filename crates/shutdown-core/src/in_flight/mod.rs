//! The in-flight request tracker: one atomic word, no lock, no allocation.
//!
//! The word (`state.rs`) holds the draining flag in its highest bit and the number of
//! requests in flight in the low bits. Entering is a compare-exchange that fails once the
//! flag is set, so no request can start after the drain has observed zero: the flag and
//! the count are read and written together, never one after the other.
//!
//! The guard that brings the count to zero while the flag is set wakes the drain waiter
//! through a `Notify`; nothing polls.
//!
//! The same word keeps the tracker alive. The tracker has its own allocation, held
//! together by the [`Shutdown`](crate::Shutdown) handles (one `OWNED` bit) and by the
//! guards (the count), and freed by whichever of them leaves last: `owner.rs`, the one
//! file with `unsafe`, with its safety argument. So a [`RequestGuard`] (`guard.rs`) that
//! outlives every handle is still sound, and taking one costs the compare-exchange
//! alone: no reference count besides the count of requests, which has to change anyway.
//!
//! `sync.rs` switches the atomics and the `Notify` to loom's under `--cfg loom`, where
//! `loom_tests.rs` runs this very code; `tests.rs` holds the unit tests (also run under
//! miri).

mod guard;
// The tracker is freed by whichever of its holders leaves last (see the module).
#[allow(unsafe_code)]
mod owner;
mod state;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::OnceLock;

use crate::observer::ShutdownObserver;
use state::State;
use sync::{AtomicBool, AtomicU64, Notify, Ordering};

pub use guard::RequestGuard;
pub(crate) use owner::TrackerOwner;

/// The tracker: the state word, the wake-up, the count of rejected requests, and what
/// requests read but hardly ever write.
#[repr(C, align(128))]
pub(crate) struct InFlight {
    /// Written by every request.
    state: State,
    rejected: AtomicU64,
    drained: Notify,
    /// Read by every request, written once or twice: on a cache line of its own, so that
    /// reading it never waits for the line that requests on other cores keep writing.
    read_mostly: ReadMostly,
    #[cfg(loom)]
    memory: owner::Memory,
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

// Guards reach the tracker through a pointer (see `owner.rs`): it must be shareable.
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
            #[cfg(loom)]
            memory: owner::Memory::new(),
        }
    }

    /// Records an access to the tracker's memory, for loom (nothing otherwise): every
    /// access through a holder's pointer goes through here first.
    #[inline(always)]
    fn touch(&self) {
        #[cfg(loom)]
        self.memory.touch();
    }

    /// Counts a request in, unless draining has begun; counts a refusal as rejected.
    #[inline]
    fn enter(&self) -> bool {
        let entered = self.state.try_enter();
        // One call site for the rest, as in `owner::exit`.
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
            // Created before the check: `notify_waiters` wakes every `Notified` that
            // exists when it is called, so a wake-up between check and await is kept.
            let mut notified = pin!(self.drained.notified());
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

/// A request event for the observer.
#[derive(Debug, Clone, Copy)]
enum Event {
    Started,
    Finished,
    Rejected,
}

// Nothing unwinds out of `enter_rest` and `owner::exit_rest`: they catch what the code
// they call may throw (the observer, the log subscriber, a waker and a panic's payload
// are user code), and their `"C"` ABI tells the compiler so. Two things follow. A panic
// cannot leave a request counted forever, which would hold the drain until its
// deadline. And a guard's drop cannot unwind, so the bodies and futures that hold a
// guard keep no landing pad for it and build their results in place (see
// docs/performance.md).

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
    tracker.touch();
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

/// Wakes the drain waiter. A waker that panics is caught and logged: the caller must
/// still give up its `WAKING` hold, or the tracker would leak.
fn wake_waiters(tracker: &InFlight) {
    tracker.touch();
    if contain(|| tracker.drained.notify_waiters()) {
        log_caught("a drain waiter's waker panicked");
    }
}

/// Logs a panic caught by [`contain`]. The subscriber is user code too.
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
