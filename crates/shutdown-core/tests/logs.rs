//! Log events of the sequence, captured. A test binary of its own: tracing caches
//! whether a call site has a subscriber, which races with tests on other threads that
//! have none; here every test installs its capturing subscriber.

use std::time::Duration;

use shutdown_core::{Phase, Shutdown, ShutdownConfig};
use test_support::logs::Captured;

fn config(drain_secs: u64) -> ShutdownConfig {
    ShutdownConfig::new().with_drain_timeout(Duration::from_secs(drain_secs))
}

#[tokio::test(start_paused = true)]
async fn progress_is_logged_about_once_a_second_with_in_flight_and_time_left() {
    let (logs, _guard) = Captured::install();
    let shutdown = Shutdown::new(config(10));
    let guard = shutdown.try_enter().expect("running");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        drop(guard);
    });
    shutdown.request_shutdown("test");
    shutdown.run().await;

    let progress = logs.with_message("draining");
    let remaining: Vec<&str> = progress.iter().map(|e| e.field("remaining_ms")).collect();
    assert_eq!(remaining, ["9000", "8000", "7000"]);
    assert!(progress.iter().all(|e| e.field("in_flight") == "1"));

    let messages: Vec<String> = logs.events().into_iter().map(|e| e.message).collect();
    let order = [
        "shutting down",
        "draining in-flight requests",
        "all requests completed",
        "graceful shutdown complete",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|m| {
            messages
                .iter()
                .position(|x| x == m)
                .unwrap_or_else(|| panic!("no {m:?} in {messages:?}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{messages:?}");
}

#[tokio::test(start_paused = true)]
async fn the_report_is_one_event_with_every_figure() {
    let (logs, _guard) = Captured::install();
    let shutdown = Shutdown::new(config(1));
    let _stuck = shutdown.try_enter().expect("running");
    shutdown.register_cleanup("db", || ());
    shutdown.request_shutdown("test");
    let waiter = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });
    shutdown.reached(Phase::Draining).await;
    assert!(shutdown.try_enter().is_none());
    let report = waiter.await.expect("run");

    let events = logs.with_message("graceful shutdown complete, with problems");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.level, tracing::Level::WARN);
    for (field, value) in [
        ("trigger", "requested: test"),
        ("trigger_kind", "requested"),
        ("drain_ms", "1000"),
        ("in_flight_at_drain", "1"),
        ("drained", "0"),
        ("interrupted", "1"),
        ("rejected", "1"),
        ("cleanups", "1"),
        ("cleanups_failed", "0"),
        ("exit_code", "3"),
    ] {
        assert_eq!(event.field(field), value, "{field}");
    }
    for field in [
        "total_ms",
        "pre_stop_delay_ms",
        "tasks_ms",
        "cleanup_ms",
        "tasks_abandoned",
    ] {
        event.field(field);
    }
    assert_eq!(report.exit_code(), 3);
}

struct Panicking;

impl shutdown_core::ShutdownObserver for Panicking {
    fn request_finished(&self) {
        panic!("observer: request_finished");
    }
}

#[test]
fn a_panicking_observer_is_logged_once_as_an_error() {
    let (logs, _guard) = Captured::install();
    let shutdown = Shutdown::default().with_observer(Panicking);
    for _ in 0..3 {
        drop(shutdown.try_enter().expect("running"));
    }
    assert_eq!(shutdown.in_flight(), 0);

    let errors: Vec<_> = logs
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("panicked in `request_finished`"),
        "{errors:?}"
    );
}
