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

#[tokio::test(start_paused = true)]
async fn the_observer_sees_each_event_once_in_order() {
    let recorder = Recorder::default();
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(1)))
        .with_observer(recorder.clone());
    shutdown.register_cleanup("db", || ());

    drop(shutdown.try_enter().expect("running"));
    let _stuck = shutdown.try_enter_scoped().expect("running");
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });
    shutdown.request_shutdown("test");
    shutdown.reached(Phase::Draining).await;
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
