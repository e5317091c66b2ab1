//! Who holds the tracker, and who frees it: the one file of the workspace with `unsafe`.
//!
//! # Safety argument
//!
//! The tracker (an [`InFlight`]) is one heap allocation, made by [`TrackerOwner::new`]
//! and freed by [`free`]. It has three kinds of holder, each recorded in the state word
//! (`state.rs`):
//!
//! - the handles: one [`TrackerOwner`], shared by every clone of a `Shutdown`, holds
//!   the `OWNED` bit from `new` to its drop (`release_owner`);
//! - each request: a [`RequestHold`] (inside a `RequestGuard`) holds one unit of the
//!   count, from a successful `try_enter` to its drop (`exit`);
//! - the last request out while draining, with the handles still there, holds `WAKING`
//!   from the `exit` that set it to `finish_wake`, while it wakes the drain waiter.
//!
//! 1. **A holder touches the tracker only while its hold is in the word.** Each holder
//!    reaches it through its own pointer ([`held`]), and the last access of each is the
//!    read-modify-write that gives its hold up.
//! 2. **Exactly one holder frees it.** Each hold is given up by one read-modify-write of
//!    the whole word, which returns whether the word then holds none of `OWNED`,
//!    `WAKING` and the count; only that holder calls [`free`]. No hold is taken once
//!    none is left: a request enters through `&TrackerOwner` (so `OWNED` is set), and
//!    `WAKING` is set only by an exit that still sees `OWNED`.
//! 3. **Every access happens before the free.** The read-modify-writes that give a hold
//!    up are `AcqRel`: each releases what its holder did, and the one that leaves the
//!    word empty acquires all of them (they form one release sequence on the word).
//!    The free comes after it in program order.
//!
//! The loom models (`loom_tests.rs`) run this file, with every access through [`held`]
//! and the free recorded in a loom cell (`sync::Memory`): loom then reports an access
//! that does not happen before the free, one after it, a second free, and a tracker
//! that nobody frees.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;

use super::guard::RequestGuard;
use super::state::Exit;
use super::{Event, InFlight, contain, log_caught, notify_observer, wake_waiters};

/// The tracker behind a holder's pointer.
///
/// # Safety
///
/// The caller holds the tracker (safety argument, 1) for as long as it uses the result.
#[inline(always)]
unsafe fn held<'a>(tracker: NonNull<InFlight>) -> &'a InFlight {
    // SAFETY: the caller's hold keeps the allocation alive.
    let this = unsafe { tracker.as_ref() };
    this.touch();
    this
}

/// The handles' hold on the tracker: one, in the state that every
/// [`Shutdown`](crate::Shutdown) clone shares. Dropping it lets go of the `OWNED` bit;
/// the tracker itself lives on while requests hold it.
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

    /// Counts a request in: `None` once draining has begun.
    #[inline]
    pub(crate) fn try_enter(&self) -> Option<RequestGuard> {
        // `then`, not `then_some`: a hold built and dropped on refusal would leave.
        self.enter().then(|| {
            RequestGuard::new(RequestHold {
                tracker: self.tracker,
            })
        })
    }
}

impl Deref for TrackerOwner {
    type Target = InFlight;

    #[inline]
    fn deref(&self) -> &InFlight {
        // SAFETY: `OWNED` is held as long as `self`.
        unsafe { held(self.tracker) }
    }
}

impl Drop for TrackerOwner {
    fn drop(&mut self) {
        if self.state.release_owner() {
            // SAFETY: this was the last hold (2), and `self` does not use it again.
            unsafe { free(self.tracker) }
        }
    }
}

impl fmt::Debug for TrackerOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One request's hold on the tracker: one unit of the count, given up when dropped.
pub(super) struct RequestHold {
    tracker: NonNull<InFlight>,
}

// SAFETY: the hold only reads the `Send + Sync` tracker, and leaves it once, in `drop`.
unsafe impl Send for RequestHold {}
// SAFETY: as above; `&RequestHold` only reads.
unsafe impl Sync for RequestHold {}

impl RequestHold {
    #[inline]
    pub(super) fn tracker(&self) -> &InFlight {
        // SAFETY: the hold's count keeps the tracker alive as long as `self`.
        unsafe { held(self.tracker) }
    }
}

impl Drop for RequestHold {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the hold's count is given up exactly once, here.
        unsafe { exit(self.tracker) }
    }
}

/// Counts a request out.
///
/// # Safety
///
/// The caller's request holds the tracker and leaves exactly once, here. The tracker
/// may be freed by this call: the caller must not use it after.
#[inline]
unsafe fn exit(tracker: NonNull<InFlight>) {
    // SAFETY: held until `state.exit` gives the request's hold up, below.
    let this = unsafe { held(tracker) };
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

/// What is left of a request's exit after [`exit`]'s inline part.
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
/// tracker, as `rest` says. Nothing unwinds out of it (see `mod.rs`).
///
/// # Safety
///
/// As for [`exit`], which handed over `rest`.
#[inline(never)]
unsafe extern "C" fn exit_rest(tracker: NonNull<InFlight>, rest: Rest) {
    let outcome = match rest {
        Rest::Observe => {
            // SAFETY: the request still holds the tracker.
            let this = unsafe { held(tracker) };
            // Before the count drops: the request's hold is what keeps the observer
            // alive, and the observer never sees a request finish after the drain
            // has reported zero.
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
            // SAFETY: `WAKING` holds the tracker until `finish_wake` gives it up.
            let this = unsafe { held(tracker) };
            wake_waiters(this);
            this.state.finish_wake()
        }
    };
    if last {
        // SAFETY: this exit gave up the last hold (2).
        unsafe { free(tracker) }
    }
}

/// Frees the tracker. A panic in the observer's `Drop` (user code) is caught and
/// logged: the last holder may be a guard dropped where nothing may unwind, or the last
/// handle dropped while another panic unwinds.
///
/// # Safety
///
/// The caller gave up the last hold on the tracker (2), which [`TrackerOwner::new`]
/// boxed, and does not use it again.
unsafe fn free(tracker: NonNull<InFlight>) {
    #[cfg(loom)]
    // SAFETY: the allocation is still there; only loom's record of it is written.
    unsafe { tracker.as_ref() }.memory.free();
    // SAFETY: as for this function.
    let tracker = unsafe { Box::from_raw(tracker.as_ptr()) };
    if contain(move || release(tracker)) {
        log_caught("the shutdown observer panicked when dropped");
    }
}

#[cfg(not(loom))]
fn release(tracker: Box<InFlight>) {
    drop(tracker);
}

#[cfg(loom)]
pub(super) use loom_memory::Memory;
#[cfg(loom)]
use loom_memory::release;
#[cfg(all(loom, test))]
pub(super) use loom_memory::release_freed;

/// The tracker's memory as loom sees it, for the models (`loom_tests.rs`).
#[cfg(loom)]
mod loom_memory {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, Ordering};

    use loom::cell::UnsafeCell;

    use super::InFlight;

    /// A record of the tracker's memory. Every access through a holder's pointer reads
    /// the cell ([`touch`](Self::touch), from `held`); the free writes it
    /// ([`free`](Self::free)). Loom reports an access that does not happen before the
    /// free (an ordering too weak to hand the tracker over); the flag reports an access
    /// after the free, or a second free; and loom reports a tracker never freed as a
    /// leak when the execution ends (`Track`).
    #[derive(Debug)]
    pub(in crate::in_flight) struct Memory {
        cell: UnsafeCell<()>,
        /// Not a loom atomic: loom runs one thread at a time, so this is what actually
        /// happened, and reading it adds no interleaving to explore.
        freed: AtomicBool,
        _leak: loom::alloc::Track<()>,
    }

    // SAFETY: the cell holds `()`: its accesses are recorded for loom, never made.
    unsafe impl Sync for Memory {}

    impl Memory {
        pub(in crate::in_flight) fn new() -> Self {
            Self {
                cell: UnsafeCell::new(()),
                freed: AtomicBool::new(false),
                _leak: loom::alloc::Track::new(()),
            }
        }

        #[track_caller]
        pub(in crate::in_flight) fn touch(&self) {
            assert!(
                !self.freed.load(Ordering::SeqCst),
                "the request tracker was used after it was freed"
            );
            self.cell.with(|_| ());
        }

        #[track_caller]
        pub(in crate::in_flight) fn free(&self) {
            assert!(
                !self.freed.swap(true, Ordering::SeqCst),
                "the request tracker was freed twice"
            );
            self.cell.with_mut(|_| ());
        }
    }

    std::thread_local! {
        /// Freed trackers, whose memory is kept until the execution ends: an access
        /// after the free then reaches the checks of [`Memory`] rather than memory that
        /// may have been reused. One list per OS thread: loom runs a model's threads on
        /// the thread of its test, and the test harness runs other models beside it.
        static FREED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    /// Drops the tracker in place and keeps its memory in [`FREED`].
    pub(super) fn release(tracker: Box<InFlight>) {
        let raw = Box::into_raw(tracker);
        FREED.with_borrow_mut(|freed| freed.push(raw as usize));
        // SAFETY: `raw` came from a box and is dropped once, here; only
        // `release_freed` deallocates it.
        unsafe { std::ptr::drop_in_place(raw) }
    }

    /// Deallocates the trackers freed so far: call it once an execution has ended.
    #[cfg(test)]
    pub(in crate::in_flight) fn release_freed() {
        let freed = FREED.with_borrow_mut(std::mem::take);
        for raw in freed {
            // SAFETY: a box's memory, whose contents were dropped in `release`.
            unsafe { std::alloc::dealloc(raw as *mut u8, std::alloc::Layout::new::<InFlight>()) }
        }
    }
}
