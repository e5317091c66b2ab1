//! `try_enter` and the guard's drop allocate nothing: a counting global allocator in a
//! test binary of its own (the allocator is process-wide).

use std::sync::atomic::{AtomicI64, Ordering};

use shutdown_core::{Shutdown, ShutdownObserver};
use test_support::alloc::{Counting, allocations};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations(|| drop(std::hint::black_box(Box::new(1u64)))) >= 1);
}

#[test]
fn try_enter_and_guard_drop_do_not_allocate() {
    let shutdown = Shutdown::default();
    let n = allocations(|| {
        for _ in 0..10_000 {
            let guard = std::hint::black_box(shutdown.try_enter());
            assert!(guard.is_some());
        }
    });
    assert_eq!(n, 0);
    assert_eq!(shutdown.in_flight(), 0);
}

#[test]
fn rejecting_during_the_drain_does_not_allocate() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let shutdown = Shutdown::default();
    shutdown.request_shutdown("test");
    runtime.block_on(shutdown.drain());
    let rejected = allocations(|| {
        for _ in 0..10_000 {
            assert!(std::hint::black_box(shutdown.try_enter()).is_none());
        }
    });
    assert_eq!(rejected, 0);
    assert_eq!(shutdown.rejected(), 10_000);
}

/// An observer of the kind `drain-metrics` installs: one atomic per event.
#[derive(Default)]
struct Gauge(AtomicI64);

impl ShutdownObserver for Gauge {
    fn request_started(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn request_finished(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[test]
fn an_observer_adds_no_allocation() {
    let shutdown = Shutdown::default().with_observer(Gauge::default());
    let n = allocations(|| {
        for _ in 0..10_000 {
            assert!(std::hint::black_box(shutdown.try_enter()).is_some());
        }
    });
    assert_eq!(n, 0);
}
