//! Loom models of the tracker. They run the crate's own `TrackerOwner`, `RequestGuard`,
//! `exit_rest`, `drained` and the owner's drop, on loom's atomics, with a `Notify` that
//! has tokio's `notify_waiters` semantics and the tracker's memory recorded in a loom
//! cell (`sync.rs`): a wake-up lost is a deadlock, an access not ordered before the free
//! is a causality violation, and a use after the free, a second free or a leak is
//! reported too. `cargo xtask loom` runs them; `cargo xtask mutants` checks that they
//! fail on the mutations it applies.

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;

use super::TrackerOwner;
use super::owner::release_freed;
use crate::observer::ShutdownObserver;

/// Runs `body` in every interleaving loom explores, deallocating after each execution
/// the trackers it freed (see `owner.rs`).
fn model(body: impl Fn() + Sync + Send + 'static) {
    loom::model(move || {
        body();
        release_freed();
    });
}

/// What an observer was told, and how many times it was dropped (with the tracker).
/// Standard atomics: read after the threads have joined, they need no interleaving of
/// their own.
#[derive(Debug, Default)]
struct Counts {
    started: AtomicUsize,
    finished: AtomicUsize,
    dropped: AtomicUsize,
}

struct Counting(std::sync::Arc<Counts>);

impl ShutdownObserver for Counting {
    fn request_started(&self) {
        self.0.started.fetch_add(1, Ordering::SeqCst);
    }
    fn request_finished(&self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A tracker, with an observer that counts when `observed` (the exit then takes its
/// out-of-line path, `Rest::Observe`).
fn tracker(observed: bool) -> (TrackerOwner, Option<std::sync::Arc<Counts>>) {
    let owner = TrackerOwner::new();
    let counts = observed.then(|| {
        let counts = std::sync::Arc::new(Counts::default());
        assert!(owner.set_observer(Box::new(Counting(std::sync::Arc::clone(&counts)))));
        counts
    });
    (owner, counts)
}

/// After every thread has let go: the tracker was freed once, and the observer saw
/// each of `requests` start and finish. (Without an observer, `sync::Memory` reports a
/// second free, and loom a tracker never freed.)
fn assert_freed_once(counts: Option<&Counts>, requests: usize) {
    if let Some(counts) = counts {
        assert_eq!(counts.dropped.load(Ordering::SeqCst), 1, "freed once");
        assert_eq!(counts.started.load(Ordering::SeqCst), requests);
        assert_eq!(counts.finished.load(Ordering::SeqCst), requests);
    }
}

/// Two requests race the start of the drain. No request is admitted after the drain
/// has seen zero in flight (it would be the last one out while draining, and wake the
/// waiter), and the waiter is woken exactly once when the drain saw any.
#[test]
fn no_request_starts_after_the_drain_saw_zero_and_one_wake_up_per_drain() {
    model(|| {
        let owner = Arc::new(TrackerOwner::new());
        let entrants: Vec<_> = (0..2)
            .map(|_| {
                let owner = Arc::clone(&owner);
                thread::spawn(move || drop(owner.try_enter()))
            })
            .collect();
        let seen = owner.begin_drain();
        for entrant in entrants {
            entrant.join().expect("entrant thread");
        }
        assert_eq!(
            owner.drained.calls(),
            usize::from(seen > 0),
            "{seen} in flight when the drain began"
        );
        assert!(owner.try_enter().is_none(), "draining refuses everyone");
        assert_eq!(owner.in_flight(), 0);
    });
}

/// The drain waiter (`drained`, after the drain began) never misses the wake-up of
/// the last guard out: loom reports a deadlock if it could.
#[test]
fn the_last_guard_out_wakes_the_drain_waiter() {
    model(|| {
        let owner = Arc::new(TrackerOwner::new());
        let held = owner.try_enter().expect("running");
        let holder = thread::spawn(move || drop(held));
        let entrant = {
            let owner = Arc::clone(&owner);
            thread::spawn(move || drop(owner.try_enter()))
        };
        owner.begin_drain();
        block_on(owner.drained());
        assert_eq!(owner.in_flight(), 0);
        holder.join().expect("holder thread");
        entrant.join().expect("entrant thread");
    });
}

/// The handles let go while the guards leave, during the drain: whichever leaves last
/// frees the tracker, once, after every other access (the last guard out may still be
/// waking the waiter).
#[test]
fn the_owner_dropped_while_guards_leave_frees_the_tracker_once() {
    for observed in [false, true] {
        model(move || {
            let (owner, counts) = tracker(observed);
            let guards: Vec<_> = (0..2)
                .map(|_| {
                    let guard = owner.try_enter().expect("running");
                    thread::spawn(move || {
                        assert!(!guard.is_shutting_down());
                        drop(guard);
                    })
                })
                .collect();
            owner.begin_drain();
            drop(owner);
            for guard in guards {
                guard.join().expect("guard thread");
            }
            assert_freed_once(counts.as_deref(), 2);
        });
    }
}

/// A waiter begins the drain and waits for it, then lets go of its handle; the other
/// handle is dropped meanwhile, and the last guard leaves: the waiter is woken, and
/// the tracker freed once, after the wake-up.
#[test]
fn the_owner_dropped_while_a_waiter_waits_and_the_last_guard_leaves() {
    for observed in [false, true] {
        model(move || {
            let (owner, counts) = tracker(observed);
            let owner = Arc::new(owner);
            let guard = owner.try_enter().expect("running");
            let waiter = {
                let owner = Arc::clone(&owner);
                thread::spawn(move || {
                    owner.begin_drain();
                    block_on(owner.drained());
                    assert_eq!(owner.in_flight(), 0);
                })
            };
            let leaver = thread::spawn(move || drop(guard));
            drop(owner);
            waiter.join().expect("waiter thread");
            leaver.join().expect("guard thread");
            assert_freed_once(counts.as_deref(), 1);
        });
    }
}
