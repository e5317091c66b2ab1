//! Unit tests of the tracker; `cargo xtask miri` runs them under miri, which reports a
//! use after free, a double free or a leak.

use super::state::{Exit, State};
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
fn the_handles_free_the_tracker_through_an_observer_panicking_on_drop() {
    let owner = TrackerOwner::new();
    let freed = Arc::new(AtomicBool::new(false));
    assert!(owner.set_observer(Box::new(Panicking(Arc::clone(&freed)))));
    drop(owner.try_enter().expect("admitted"));
    // The last holder: the panic of the observer's drop stays inside.
    drop(owner);
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
