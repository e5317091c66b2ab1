//! The observer sees every event exactly once, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shutdown_core::{
    CleanupOutcome, DrainSummary, Phase, Shutdown, ShutdownConfig, ShutdownObserver, ShutdownReport,
};

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ShutdownObserver for Recorder {
    fn request_started(&self) {
        self.push("started".into());
    }
    fn request_finished(&self) {
        self.push("finished".into());
    }
    fn request_rejected(&self) {
        self.push("rejected".into());
    }
    fn phase_changed(&self, phase: Phase) {
        self.push(format!("phase {phase}"));
    }
    fn drain_finished(&self, summary: &DrainSummary) {
        self.push(format!("drain interrupted={}", summary.interrupted));
    }
    fn cleanup_finished(&self, outcome: &CleanupOutcome) {
        self.push(format!(
            "cleanup {} {}",
            outcome.name,
            outcome.status.as_str()
        ));
    }
    fn shutdown_finished(&self, report: &ShutdownReport) {
        self.push(format!("finished exit_code={}", report.exit_code()));
    }
}

/// Runs the sequence in a task, triggers it, and returns once the drain has begun.
async fn start_draining(shutdown: &Shutdown) -> tokio::task::JoinHandle<ShutdownReport> {
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });
    shutdown.request_shutdown("test");
    shutdown.reached(Phase::Draining).await;
    run
}

#[tokio::test(start_paused = true)]
async fn the_observer_sees_each_event_once_in_order() {
    let recorder = Recorder::default();
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(1)))
        .with_observer(recorder.clone());
    shutdown.register_cleanup("db", || ());

    drop(shutdown.try_enter().expect("running"));
    let _stuck = shutdown.try_enter().expect("running");
    let run = start_draining(&shutdown).await;
    assert!(shutdown.try_enter().is_none());
    let report = run.await.expect("run");
    assert_eq!(report.exit_code(), 3);

    assert_eq!(
        recorder.events(),
        [
            "started",
            "finished",
            "started",
            "phase draining",
            "rejected",
            "drain interrupted=1",
            "phase cleaning_up",
            "cleanup db completed",
            "phase finished",
            "finished exit_code=3",
        ]
    );
}

#[tokio::test]
async fn a_second_observer_is_ignored() {
    let first = Recorder::default();
    let second = Recorder::default();
    let shutdown = Shutdown::default()
        .with_observer(first.clone())
        .with_observer(second.clone());
    drop(shutdown.try_enter());
    assert_eq!(first.events(), ["started", "finished"]);
    assert!(second.events().is_empty());
}

/// Panics in every per-request method, as a broken metrics backend might.
struct Panicking;

impl ShutdownObserver for Panicking {
    fn request_started(&self) {
        panic!("observer: request_started");
    }
    fn request_finished(&self) {
        panic!("observer: request_finished");
    }
    fn request_rejected(&self) {
        panic!("observer: request_rejected");
    }
}

#[tokio::test(start_paused = true)]
async fn an_observer_that_panics_loses_no_request_and_holds_no_drain() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(30)))
        .with_observer(Panicking);

    let guard = shutdown.try_enter().expect("admitted");
    let second = shutdown.try_enter().expect("admitted");
    assert_eq!(shutdown.in_flight(), 2, "both counted in");
    drop(second);
    assert_eq!(shutdown.in_flight(), 1, "counted out");

    let run = start_draining(&shutdown).await;
    assert!(shutdown.try_enter().is_none());
    assert_eq!(shutdown.rejected(), 1, "the rejection is counted");

    drop(guard);
    assert_eq!(shutdown.in_flight(), 0);
    // Time is paused: a drain held open would run into its 30 s deadline and exit 3.
    let report = run.await.expect("run");
    assert_eq!(report.drain.interrupted, 0);
    assert_eq!(report.exit_code(), 0);
}

/// Panics when dropped, which happens when the last holder frees the request tracker.
struct PanicsOnDrop;

impl ShutdownObserver for PanicsOnDrop {}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("observer: dropped");
    }
}

#[test]
fn a_guard_that_frees_the_tracker_survives_an_observer_panicking_on_drop() {
    let shutdown = Shutdown::default().with_observer(PanicsOnDrop);
    let guard = shutdown.try_enter().expect("admitted");
    drop(shutdown);
    // The guard is the tracker's last holder: its drop frees it, and the observer with
    // it. The panic is caught there (a guard is dropped inside response bodies, where
    // an unwind would tear down the connection's task).
    drop(guard);
}

#[test]
fn the_last_handle_survives_an_observer_panicking_on_drop() {
    let shutdown = Shutdown::default().with_observer(PanicsOnDrop);
    drop(shutdown.try_enter().expect("admitted"));
    // No guard left: the last handle frees the tracker, and the observer with it. A
    // panic escaping here would abort a process that drops its handle while unwinding.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(shutdown)));
    assert!(
        unwound.is_ok(),
        "the observer's panic escaped the handle's drop"
    );
}

/// A panic payload that panics again when dropped.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("payload: dropped");
    }
}

/// Panics with a [`PanicsWhenDropped`] payload in every request method and when
/// dropped: a payload dropped outside a catch would unwind out of the tracker's
/// non-unwinding functions, which aborts the process.
struct PanicsWithBadPayload;

impl ShutdownObserver for PanicsWithBadPayload {
    fn request_started(&self) {
        std::panic::panic_any(PanicsWhenDropped);
    }
    fn request_finished(&self) {
        std::panic::panic_any(PanicsWhenDropped);
    }
    fn request_rejected(&self) {
        std::panic::panic_any(PanicsWhenDropped);
    }
}

impl Drop for PanicsWithBadPayload {
    fn drop(&mut self) {
        std::panic::panic_any(PanicsWhenDropped);
    }
}

/// Runs `scenario` in a child process (this test binary, filtered to `test`), so that
/// an abort fails the test instead of ending every test of the binary.
fn in_child_process(test: &str, scenario: fn()) {
    const CHILD: &str = "SHUTDOWN_CORE_TEST_CHILD";
    if std::env::var_os(CHILD).is_some_and(|name| name == test) {
        scenario();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("run the test binary again");
    assert!(
        output.status.success(),
        "the scenario ended with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_panic_payload_that_panics_when_dropped_does_not_abort() {
    in_child_process(
        "a_panic_payload_that_panics_when_dropped_does_not_abort",
        || {
            // The guard frees the tracker.
            let shutdown = Shutdown::default().with_observer(PanicsWithBadPayload);
            let guard = shutdown.try_enter().expect("admitted");
            drop(shutdown.try_enter().expect("admitted"));
            drop(shutdown);
            drop(guard);
            // A rejection, then the guard frees the tracker while draining.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            let shutdown = Shutdown::default().with_observer(PanicsWithBadPayload);
            let guard = shutdown.try_enter().expect("admitted");
            shutdown.request_shutdown("test");
            runtime.block_on(shutdown.drain());
            assert!(shutdown.try_enter().is_none());
            assert_eq!(shutdown.rejected(), 1);
            drop(shutdown);
            drop(guard);
        },
    );
}
