//! The cleanup registry: LIFO order, sync and async, and each way a task can fail.

use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shutdown_core::{CleanupStatus, Phase, Shutdown, ShutdownConfig};

type Log = Arc<Mutex<Vec<&'static str>>>;

fn record(log: &Log, name: &'static str) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(name);
}

fn statuses(report: &shutdown_core::ShutdownReport) -> Vec<(&str, CleanupStatus)> {
    report
        .cleanups
        .iter()
        .map(|c| (c.name.as_str(), c.status.clone()))
        .collect()
}

#[tokio::test]
async fn cleanup_runs_last_registered_first_sync_and_async() {
    let shutdown = Shutdown::default();
    let log = Log::default();
    for name in ["database", "redis", "flusher"] {
        let log = Arc::clone(&log);
        if name == "redis" {
            shutdown.register_cleanup(name, move || record(&log, name));
        } else {
            shutdown.register_cleanup(name, move || async move {
                tokio::task::yield_now().await;
                record(&log, name);
            });
        }
    }
    shutdown.request_shutdown("test");
    let report = shutdown.run().await;

    assert_eq!(
        *log.lock().unwrap_or_else(|e| e.into_inner()),
        ["flusher", "redis", "database"]
    );
    assert_eq!(
        statuses(&report),
        [
            ("flusher", CleanupStatus::Completed),
            ("redis", CleanupStatus::Completed),
            ("database", CleanupStatus::Completed)
        ]
    );
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn errors_and_panics_are_recorded_and_the_rest_still_run() {
    let shutdown = Shutdown::default();
    let log = Log::default();
    let l = Arc::clone(&log);
    shutdown.register_cleanup("first", move || record(&l, "first"));
    shutdown.register_cleanup("sync error", || Err::<(), _>("disk full"));
    shutdown.register_cleanup("sync panic", || -> Result<(), String> {
        panic!("sync boom")
    });
    shutdown.register_cleanup("async error", || async {
        Err::<(), _>(std::io::Error::other("refused"))
    });
    shutdown.register_cleanup("async panic", || async {
        tokio::task::yield_now().await;
        if std::hint::black_box(true) {
            panic!("async boom {}", 42);
        }
    });
    shutdown.register_cleanup("panic before the future", || -> std::future::Ready<()> {
        panic!("constructing")
    });
    let l = Arc::clone(&log);
    shutdown.register_cleanup("last", move || async move { record(&l, "last") });

    shutdown.request_shutdown("test");
    let report = shutdown.run().await;

    assert_eq!(
        statuses(&report),
        [
            ("last", CleanupStatus::Completed),
            (
                "panic before the future",
                CleanupStatus::Panicked("constructing".into())
            ),
            (
                "async panic",
                CleanupStatus::Panicked("async boom 42".into())
            ),
            ("async error", CleanupStatus::Failed("refused".into())),
            ("sync panic", CleanupStatus::Panicked("sync boom".into())),
            ("sync error", CleanupStatus::Failed("disk full".into())),
            ("first", CleanupStatus::Completed),
        ]
    );
    assert_eq!(
        *log.lock().unwrap_or_else(|e| e.into_inner()),
        ["last", "first"]
    );
    assert_eq!(report.failed_cleanups().count(), 5);
    assert_eq!(report.exit_code(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_async_task_times_out_at_its_own_timeout_and_the_rest_still_run() {
    let shutdown =
        Shutdown::new(ShutdownConfig::new().with_cleanup_timeout(Duration::from_secs(7)));
    let log = Log::default();
    let l = Arc::clone(&log);
    shutdown.register_cleanup("database", move || async move { record(&l, "database") });
    shutdown.register_cleanup("hangs", pending::<()>);
    shutdown.register_cleanup_with_timeout("hangs briefly", Duration::from_secs(2), pending::<()>);

    shutdown.request_shutdown("test");
    let report = shutdown.run().await;

    assert_eq!(
        statuses(&report),
        [
            ("hangs briefly", CleanupStatus::TimedOut),
            ("hangs", CleanupStatus::TimedOut),
            ("database", CleanupStatus::Completed),
        ]
    );
    assert_eq!(report.cleanups[0].duration, Duration::from_secs(2));
    assert_eq!(report.cleanups[1].duration, Duration::from_secs(7));
    assert_eq!(report.cleanup_duration, Duration::from_secs(9));
    assert_eq!(*log.lock().unwrap_or_else(|e| e.into_inner()), ["database"]);
    assert_eq!(report.exit_code(), 4);
}

/// Real time: a blocking closure that never returns is abandoned after its timeout
/// (100 ms here), and the tasks after it still run.
#[tokio::test]
async fn a_hanging_blocking_task_is_abandoned_at_its_timeout_and_the_rest_still_run() {
    let shutdown = Shutdown::default();
    let log = Log::default();
    let l = Arc::clone(&log);
    shutdown.register_cleanup("database", move || record(&l, "database"));
    let (_keep_open, blocked) = std::sync::mpsc::channel::<()>();
    shutdown.register_cleanup_with_timeout("hangs", Duration::from_millis(100), move || {
        let _ = blocked.recv();
    });

    shutdown.request_shutdown("test");
    let report = shutdown.run().await;

    assert_eq!(
        statuses(&report),
        [
            ("hangs", CleanupStatus::TimedOut),
            ("database", CleanupStatus::Completed)
        ]
    );
    assert!(report.cleanups[0].duration >= Duration::from_millis(100));
    assert_eq!(*log.lock().unwrap_or_else(|e| e.into_inner()), ["database"]);
}

#[tokio::test(start_paused = true)]
async fn a_task_registered_after_cleanup_began_does_not_run() {
    let shutdown = Shutdown::default();
    let late = Arc::new(Mutex::new(false));
    {
        let shutdown2 = shutdown.clone();
        let late = Arc::clone(&late);
        shutdown.register_cleanup("registers another", move || async move {
            assert_eq!(shutdown2.phase(), Phase::CleaningUp);
            shutdown2.register_cleanup("too late", move || {
                *late.lock().unwrap_or_else(|e| e.into_inner()) = true
            });
        });
    }
    shutdown.request_shutdown("test");
    let report = shutdown.run().await;
    assert_eq!(report.cleanups.len(), 1);
    assert!(!*late.lock().unwrap_or_else(|e| e.into_inner()));
}
