//! `try_enter` + guard drop, uncontended and from two threads, beside the bare atomic
//! operations it is built from. Run with `cargo bench -p shutdown-core --bench enter_exit`.
//!
//! - `bare_pair`: `fetch_add` + `fetch_sub` on one `AtomicUsize`: the floor for any
//!   counter.
//! - `try_enter`: the `'static` guard that middleware keeps in response bodies: a
//!   compare-exchange in and one out (the count of requests also keeps the tracker
//!   alive, so there is no reference count).
//! - `bare_pair_arc`: the bare pair plus an `Arc` clone and drop: the floor for an owned
//!   guard, and what a hand-written `Arc<AtomicUsize>` guard costs.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use shutdown_core::Shutdown;

fn bare_pair(counter: &AtomicUsize) {
    black_box(counter.fetch_add(1, Ordering::AcqRel));
    black_box(counter.fetch_sub(1, Ordering::AcqRel));
}

fn bare_pair_arc(counter: &Arc<AtomicUsize>) {
    let owned = black_box(Arc::clone(counter));
    owned.fetch_add(1, Ordering::AcqRel);
    owned.fetch_sub(1, Ordering::AcqRel);
}

fn enter_owned(shutdown: &Shutdown) {
    drop(black_box(shutdown.try_enter()));
}

/// Runs `op` `iters` times on each of `threads` threads started together; returns the
/// wall time, so the figure is the time per operation per thread.
fn on_threads<T: Sync>(threads: usize, iters: u64, state: &T, op: fn(&T)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    op(state);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let started = Instant::now();
        barrier.wait();
        started.elapsed()
    })
}

fn enter_exit(c: &mut Criterion) {
    let counter = AtomicUsize::new(0);
    let shared_counter = Arc::new(AtomicUsize::new(0));
    let shutdown = Shutdown::default();

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("enter_exit/{threads}_thread"));
        group.bench_function("bare_pair", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, &counter, bare_pair))
        });
        group.bench_function("bare_pair_arc", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, &shared_counter, bare_pair_arc))
        });
        group.bench_function("try_enter", |b| {
            b.iter_custom(|iters| on_threads(threads, iters, &shutdown, enter_owned))
        });
        group.finish();
    }
}

criterion_group!(benches, enter_exit);
criterion_main!(benches);
