//! `try_enter` and the guard's drop allocate nothing: a counting global allocator in a
//! test binary of its own (the allocator is process-wide).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::sync::atomic::{AtomicI64, Ordering};

use shutdown_core::{Shutdown, ShutdownObserver};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the thread-local
// counters are const-initialised, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations(|| drop(std::hint::black_box(Box::new(1u64)))) >= 1);
}

#[test]
fn try_enter_and_guard_drop_do_not_allocate() {
    let shutdown = Shutdown::default();
    let owned = allocations(|| {
        for _ in 0..10_000 {
            let guard = std::hint::black_box(shutdown.try_enter());
            assert!(guard.is_some());
        }
    });
    let scoped = allocations(|| {
        for _ in 0..10_000 {
            let guard = std::hint::black_box(shutdown.try_enter_scoped());
            assert!(guard.is_some());
        }
    });
    assert_eq!((owned, scoped), (0, 0));
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
