//! The state word: the draining flag, the two holds on the tracker (`OWNED`, `WAKING`)
//! and the count of requests in flight, in one `AtomicUsize`.
//!
//! Every change is one atomic read-modify-write of the whole word, so a transition never
//! sees the flag and the count at different moments. Each method says what its caller
//! must do next; freeing and waking are the callers' (see `owner.rs`).

use super::sync::{AtomicUsize, Ordering};

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

/// The state word.
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
