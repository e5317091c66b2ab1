//! The shutdown sequence, on tokio's paused clock: every duration asserted here is
//! virtual time, exact and independent of the machine's load.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shutdown_core::{Phase, Shutdown, ShutdownConfig, Trigger};
use tokio::time::Instant;

fn config(drain_secs: u64) -> ShutdownConfig {
    ShutdownConfig::new().with_drain_timeout(Duration::from_secs(drain_secs))
}

#[tokio::test(start_paused = true)]
async fn guard_is_released_once_when_the_handler_panics() {
    let shutdown = Shutdown::new(config(30));
    let handler = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _guard = shutdown.try_enter().expect("running");
            tokio::task::yield_now().await;
            panic!("handler bug");
        })
    };
    assert!(handler.await.expect_err("panicked").is_panic());
    assert_eq!(shutdown.in_flight(), 0);

    // The count did not go below zero: one more request is counted exactly once.
    let guard = shutdown.try_enter().expect("running");
    assert_eq!(shutdown.in_flight(), 1);
    drop(guard);
    assert_eq!(shutdown.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn guard_is_released_when_the_request_future_is_dropped() {
    let shutdown = Shutdown::new(config(30));
    let entered = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let shutdown = shutdown.clone();
        let entered = Arc::clone(&entered);
        tokio::spawn(async move {
            let _guard = shutdown.try_enter().expect("running");
            entered.notify_one();
            pending::<()>().await;
        })
    };
    entered.notified().await;
    assert_eq!(shutdown.in_flight(), 1);
    // What a server does when the client disconnects: the request future is dropped.
    handler.abort();
    assert!(handler.await.expect_err("aborted").is_cancelled());
    assert_eq!(shutdown.in_flight(), 0);

    shutdown.request_shutdown("test");
    let summary = shutdown.drain().await;
    assert_eq!(summary.in_flight_at_drain, 0);
    assert_eq!(summary.duration, Duration::ZERO, "nothing left to wait for");
}

#[tokio::test(start_paused = true)]
async fn trigger_is_idempotent_and_keeps_the_first_reason() {
    let shutdown = Shutdown::new(config(30));
    assert!(shutdown.is_ready());
    assert_eq!(shutdown.trigger_reason(), None);

    assert!(shutdown.trigger(Trigger::Signal("SIGTERM")));
    assert!(!shutdown.request_shutdown("second"));
    assert!(!shutdown.trigger(Trigger::Signal("SIGINT")));

    assert!(!shutdown.is_ready());
    assert_eq!(shutdown.trigger_reason(), Some(&Trigger::Signal("SIGTERM")));
    let report = shutdown.run().await;
    assert_eq!(report.drain.trigger, Trigger::Signal("SIGTERM"));
}

#[tokio::test(start_paused = true)]
async fn readiness_turns_false_at_the_trigger_and_requests_are_served_during_the_pre_stop_delay() {
    let shutdown = Shutdown::new(config(30).with_pre_stop_delay(Duration::from_secs(5)));
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain().await }
    });
    let start = Instant::now();
    shutdown.request_shutdown("deploy");
    assert!(!shutdown.is_ready());
    assert_eq!(shutdown.phase(), Phase::Running);

    tokio::time::sleep(Duration::from_millis(4900)).await;
    let late = shutdown
        .try_enter()
        .expect("still served during the pre-stop delay");
    assert!(!shutdown.is_draining());

    shutdown.reached(Phase::Draining).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(shutdown.try_enter().is_none(), "turned away once draining");
    assert_eq!(shutdown.rejected(), 1);

    drop(late);
    let summary = drain.await.expect("drain task");
    assert_eq!(summary.pre_stop_delay, Duration::from_secs(5));
    assert_eq!(summary.in_flight_at_drain, 1);
    assert_eq!(summary.drained(), 1);
    assert_eq!(summary.rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn the_drain_ends_the_moment_the_last_guard_drops() {
    let shutdown = Shutdown::new(config(30));
    let first = shutdown.try_enter().expect("running");
    let second = shutdown.try_enter().expect("running");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(second);
    });
    shutdown.request_shutdown("test");
    let summary = shutdown.drain().await;
    assert_eq!(summary.duration, Duration::from_secs(3));
    assert_eq!(summary.in_flight_at_drain, 2);
    assert_eq!(summary.interrupted, 0);
    assert_eq!(
        shutdown.phase(),
        Phase::Draining,
        "drain() stops before the cleanup phase"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cancels_the_request_scope_and_counts_what_is_left_as_interrupted() {
    let shutdown = Shutdown::new(config(2));
    let requests = shutdown.request_token();
    let root = shutdown.token();
    let stuck = shutdown.try_enter().expect("running");
    let obedient = {
        let guard = shutdown.try_enter().expect("running");
        let requests = requests.clone();
        tokio::spawn(async move {
            requests.cancelled().await;
            drop(guard);
        })
    };

    shutdown.request_shutdown("test");
    let summary = shutdown.drain().await;
    assert_eq!(summary.duration, Duration::from_secs(2));
    assert_eq!(summary.in_flight_at_drain, 2);
    assert_eq!(summary.interrupted, 2);
    assert_eq!(summary.drained(), 0);
    assert!(
        requests.is_cancelled(),
        "handlers are told to give up at the deadline"
    );
    assert!(
        !root.is_cancelled(),
        "background work is cancelled later, after the drain"
    );
    obedient.await.expect("obedient handler");
    drop(stuck);

    let report = shutdown.run().await;
    assert!(root.is_cancelled());
    assert_eq!(report.exit_code(), 3);
}

#[tokio::test(start_paused = true)]
async fn phases_advance_in_order_and_each_is_observable() {
    let shutdown = Shutdown::new(config(30));
    let guard = shutdown.try_enter().expect("running");
    let release_cleanup = Arc::new(tokio::sync::Notify::new());
    {
        let release = Arc::clone(&release_cleanup);
        shutdown.register_cleanup("held open", move || async move { release.notified().await });
    }
    let mut phases = shutdown.subscribe();
    assert_eq!(*phases.borrow_and_update(), Phase::Running);
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });
    shutdown.request_shutdown("test");

    phases.changed().await.expect("phase sender alive");
    assert_eq!(*phases.borrow_and_update(), Phase::Draining);
    assert_eq!(shutdown.phase(), Phase::Draining);

    drop(guard);
    shutdown.reached(Phase::CleaningUp).await;
    assert_eq!(*phases.borrow_and_update(), Phase::CleaningUp);
    assert!(!run.is_finished());

    release_cleanup.notify_one();
    shutdown.reached(Phase::Finished).await;
    assert_eq!(*phases.borrow_and_update(), Phase::Finished);
    assert!(run.await.expect("run").is_clean());
}

#[tokio::test(start_paused = true)]
async fn background_tasks_are_cancelled_then_awaited_and_a_stuck_one_is_abandoned() {
    let shutdown = Shutdown::new(config(30).with_task_timeout(Duration::from_secs(3)));
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let token = shutdown.token();
        let stopped = Arc::clone(&stopped);
        shutdown.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await; // a last flush
            stopped.store(true, Ordering::SeqCst);
        });
    }
    shutdown.spawn(pending::<()>());
    let cleanup_saw_stopped = Arc::new(AtomicBool::new(false));
    {
        let stopped = Arc::clone(&stopped);
        let seen = Arc::clone(&cleanup_saw_stopped);
        shutdown.register_cleanup("pool", move || async move {
            seen.store(stopped.load(Ordering::SeqCst), Ordering::SeqCst);
        });
    }
    shutdown.request_shutdown("test");
    let report = shutdown.run().await;

    assert!(stopped.load(Ordering::SeqCst));
    assert!(
        cleanup_saw_stopped.load(Ordering::SeqCst),
        "cleanup runs after background tasks"
    );
    assert_eq!(report.tasks_at_cancel, 2);
    assert_eq!(report.tasks_abandoned, 1);
    assert_eq!(report.tasks_duration, Duration::from_secs(3));
    assert_eq!(
        report.exit_code(),
        4,
        "an abandoned task counts as a failed cleanup"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tracked_future_is_cancelled_then_awaited_like_a_spawned_task() {
    let shutdown = Shutdown::new(config(30));
    let stopped = Arc::new(AtomicBool::new(false));
    let tracked = {
        let token = shutdown.token();
        let stopped = Arc::clone(&stopped);
        shutdown.track_future(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopped.store(true, Ordering::SeqCst);
        })
    };
    // Run some other way than `Shutdown::spawn`: a local task set here.
    let local = tokio::task::LocalSet::new();
    local.spawn_local(tracked);
    shutdown.request_shutdown("test");
    let report = local.run_until(shutdown.run()).await;

    assert!(stopped.load(Ordering::SeqCst), "awaited before the report");
    assert_eq!(report.tasks_at_cancel, 1);
    assert_eq!(report.tasks_abandoned, 0);
    assert_eq!(report.tasks_duration, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_failing_supervised_task_triggers_the_shutdown() {
    let shutdown = Shutdown::new(config(30));
    shutdown.spawn_supervised("ingest", async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Err::<(), _>("queue closed")
    });
    shutdown.triggered().await;
    assert_eq!(
        shutdown.trigger_reason(),
        Some(&Trigger::TaskFailed {
            task: "ingest".into(),
            error: "queue closed".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_supervised_task_triggers_the_shutdown() {
    let shutdown = Shutdown::new(config(30));
    shutdown.spawn_supervised("flusher", async {
        tokio::task::yield_now().await;
        if true {
            panic!("disk full");
        }
        Ok::<(), std::io::Error>(())
    });
    shutdown.triggered().await;
    let Some(Trigger::TaskFailed { task, error }) = shutdown.trigger_reason() else {
        panic!(
            "expected a task failure, got {:?}",
            shutdown.trigger_reason()
        );
    };
    assert_eq!(task, "flusher");
    assert_eq!(error, "panicked: disk full");
}

#[tokio::test(start_paused = true)]
async fn a_supervised_task_that_ends_well_triggers_nothing() {
    let shutdown = Shutdown::new(config(30));
    let task = shutdown.spawn_supervised("once", async { Ok::<(), std::io::Error>(()) });
    task.await.expect("supervisor");
    assert!(shutdown.is_ready());
}

#[tokio::test(start_paused = true)]
async fn run_and_drain_run_once_and_agree() {
    let shutdown = Shutdown::new(config(30));
    shutdown.request_shutdown("test");
    let (a, b) = tokio::join!(shutdown.drain(), shutdown.drain());
    assert_eq!(a, b);
    let first = shutdown.run().await;
    let second = shutdown.run().await;
    assert_eq!(first, second);
    assert_eq!(first.drain, a);
}

#[tokio::test(start_paused = true)]
async fn a_drain_dropped_and_called_again_keeps_the_deadline_of_its_start() {
    let shutdown = Shutdown::new(config(10));
    let mut phases = shutdown.subscribe();
    let _stuck = shutdown.try_enter().expect("running");
    shutdown.request_shutdown("test");
    let started = Instant::now();

    // A caller gives up on the drain after 6 s (a `select!` whose other branch won).
    let given_up = tokio::time::timeout(Duration::from_secs(6), shutdown.drain()).await;
    assert!(given_up.is_err(), "the request is still in flight");
    assert!(
        shutdown.is_draining(),
        "the drain has begun and stays begun"
    );
    assert_eq!(*phases.borrow_and_update(), Phase::Draining);

    // The next call continues the same drain: its deadline is 10 s after the start.
    let summary = shutdown.drain().await;
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(summary.duration, Duration::from_secs(10));
    assert_eq!(summary.pre_stop_delay, Duration::ZERO);
    assert_eq!(summary.in_flight_at_drain, 1);
    assert_eq!(summary.interrupted, 1);
    assert!(
        !phases.has_changed().expect("sender alive"),
        "the drain began once: no second `Draining`"
    );
}

#[tokio::test(start_paused = true)]
async fn the_drain_signal_fires_when_the_drain_begins_not_at_the_trigger() {
    let shutdown = Shutdown::new(config(30).with_pre_stop_delay(Duration::from_secs(5)));
    let stream = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.draining().await;
            Instant::now()
        }
    });
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain().await }
    });
    let start = Instant::now();
    shutdown.request_shutdown("deploy");
    let ended_at = stream.await.expect("stream task");
    assert_eq!(
        ended_at - start,
        Duration::from_secs(5),
        "after the pre-stop delay, not at the trigger"
    );
    assert!(shutdown.is_draining());
    drain.await.expect("drain task");
    tokio::time::timeout(Duration::ZERO, shutdown.draining())
        .await
        .expect("resolves at once once the drain has begun");
}
