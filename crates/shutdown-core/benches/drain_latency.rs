//! Drain latency: the time from the drop of the last guard to the completion of the
//! drain future, over 1000 drains on a two-worker runtime (the waiter on another task).
//! Prints p50, p99 and max, and one markdown table row for `cargo xtask bench`.
//!
//! `cargo bench -p shutdown-core --bench drain_latency`

use std::time::{Duration, Instant};

use shutdown_core::{Phase, Shutdown, ShutdownConfig};

const DRAINS: usize = 1000;

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runtime: {error}");
            std::process::exit(1);
        }
    };
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let mut latencies = Vec::with_capacity(DRAINS);
        for _ in 0..DRAINS {
            let shutdown =
                Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)));
            let guard = shutdown.try_enter().expect("running");
            let waiter = tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    shutdown.drain().await;
                    Instant::now()
                }
            });
            shutdown.request_shutdown("bench");
            shutdown.reached(Phase::Draining).await;
            // Let the waiter park on the notification before the last guard leaves.
            tokio::task::yield_now().await;
            let dropped = Instant::now();
            drop(guard);
            let done = waiter.await.expect("waiter");
            latencies.push(done.saturating_duration_since(dropped));
        }
        latencies
    });
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99, max) = (pick(0.50), pick(0.99), pick(1.0));
    println!("drain latency over {DRAINS} drains: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    println!(
        "| drain latency (last guard dropped -> drain future done) | p50 {:.1} µs | p99 {:.1} µs | target p50 < 1 ms: {} |",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        if p50 < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}
