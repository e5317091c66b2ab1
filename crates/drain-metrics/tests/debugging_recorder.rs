//! The metrics of a scripted shutdown, read from `metrics-util`'s debugging recorder on
//! tokio's paused clock: every value asserted here is exact.

mod support;

use drain_metrics::{DrainMetrics, describe_metrics, names};
use metrics::Unit;
use metrics_util::debugging::DebuggingRecorder;
use shutdown_core::{Shutdown, ShutdownObserver};
use support::{Checkpoint, TOTAL, Values, paused_runtime, scripted_shutdown};

#[test]
fn scripted_shutdown_records_in_flight_rejected_interrupted_duration_and_cleanups() {
    let recorder = DebuggingRecorder::new();
    let values = Values::new(&recorder);
    let mut checkpoints = 0;

    let report = metrics::with_local_recorder(&recorder, || {
        paused_runtime().block_on(scripted_shutdown(|point| {
            match point {
                Checkpoint::TwoInFlight => {
                    assert_eq!(values.gauge(names::IN_FLIGHT_REQUESTS, &[]), 2.0);
                    assert_eq!(values.gauge(names::SHUTDOWN_PHASE, &[]), 0.0, "running");
                    assert_eq!(values.counter(names::REQUESTS_REJECTED, &[]), 0);
                }
                Checkpoint::OneFinished => {
                    assert_eq!(values.gauge(names::IN_FLIGHT_REQUESTS, &[]), 1.0);
                    assert_eq!(values.gauge(names::SHUTDOWN_PHASE, &[]), 1.0, "draining");
                    assert_eq!(values.counter(names::REQUESTS_REJECTED, &[]), 0);
                    assert_eq!(values.counter(names::REQUESTS_INTERRUPTED, &[]), 0);
                }
                Checkpoint::OneRejected => {
                    assert_eq!(values.counter(names::REQUESTS_REJECTED, &[]), 1);
                    assert_eq!(values.gauge(names::IN_FLIGHT_REQUESTS, &[]), 1.0);
                    assert_eq!(
                        values.gauge(names::SHUTDOWN_DURATION_SECONDS, &[]),
                        0.0,
                        "set only at the end"
                    );
                }
                Checkpoint::Finished(report) => {
                    assert_eq!(values.gauge(names::IN_FLIGHT_REQUESTS, &[]), 0.0);
                    assert_eq!(values.counter(names::REQUESTS_REJECTED, &[]), 1);
                    assert_eq!(values.counter(names::REQUESTS_INTERRUPTED, &[]), 1);
                    assert_eq!(
                        values.gauge(names::SHUTDOWN_DURATION_SECONDS, &[]),
                        report.total.as_secs_f64()
                    );
                    assert_eq!(values.gauge(names::SHUTDOWN_PHASE, &[]), 3.0, "finished");
                }
            }
            checkpoints += 1;
        }))
    });

    assert_eq!(checkpoints, 4, "every checkpoint was reached");
    assert_eq!(report.total, TOTAL);
    assert_eq!(report.drain.interrupted, 1);
    assert_eq!(report.drain.rejected, 1);
    assert_eq!(values.gauge(names::SHUTDOWN_DURATION_SECONDS, &[]), 11.0);

    // Cleanup tasks, by name and outcome: `cache` failed at once, `database` took 1 s.
    let failed = [(names::TASK, "cache"), (names::OUTCOME, "failed")];
    let completed = [(names::TASK, "database"), (names::OUTCOME, "completed")];
    assert_eq!(values.gauge(names::CLEANUP_DURATION_SECONDS, &failed), 0.0);
    assert_eq!(
        values.gauge(names::CLEANUP_DURATION_SECONDS, &completed),
        1.0
    );
    assert_eq!(values.counter(names::CLEANUP_TASKS, &failed), 1);
    assert_eq!(values.counter(names::CLEANUP_TASKS, &completed), 1);
    assert_eq!(
        values.series_of(names::CLEANUP_TASKS).len(),
        2,
        "one series per task"
    );
    assert_eq!(values.series_of(names::CLEANUP_DURATION_SECONDS).len(), 2);
}

#[test]
fn describe_metrics_registers_every_description_with_its_unit() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        // The snapshot lists registered metrics only: register every one, including a
        // cleanup series.
        paused_runtime().block_on(async {
            let shutdown = Shutdown::default().with_observer(DrainMetrics::new());
            shutdown.register_cleanup("database", || ());
            shutdown.request_shutdown("describe");
            shutdown.run().await;
        });
    });

    let snapshot = snapshotter.snapshot().into_vec();
    for name in names::ALL {
        let (_, unit, description, _) = snapshot
            .iter()
            .find(|(key, ..)| key.key().name() == name)
            .unwrap_or_else(|| panic!("{name} was not registered"));
        let expected = match name {
            names::SHUTDOWN_DURATION_SECONDS | names::CLEANUP_DURATION_SECONDS => {
                Some(Unit::Seconds)
            }
            names::SHUTDOWN_PHASE => None,
            _ => Some(Unit::Count),
        };
        assert_eq!(*unit, expected, "unit of {name}");
        let description = description
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no description"));
        assert!(!description.is_empty(), "{name}");
    }
}

#[test]
fn an_observer_created_before_the_recorder_records_nothing_there() {
    let early = DrainMetrics::new();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        early.request_started();
        early.request_rejected();
    });
    assert!(
        snapshotter.snapshot().into_vec().is_empty(),
        "handles are bound to the recorder current at `new`"
    );
}

#[test]
fn a_stream_ended_by_the_drain_signal_is_counted_apart_from_interrupted_requests() {
    let recorder = DebuggingRecorder::new();
    let values = Values::new(&recorder);
    let report = metrics::with_local_recorder(&recorder, || {
        paused_runtime().block_on(async {
            let shutdown = Shutdown::default().with_observer(DrainMetrics::new());
            // An SSE response: its body holds the guard and ends at the drain signal.
            let guard = shutdown.try_enter();
            let signal = shutdown.drain_signal();
            let stream = tokio::spawn(async move {
                signal.wait().await;
                signal.stream_closed();
                drop(guard);
            });
            shutdown.request_shutdown("test");
            let report = shutdown.run().await;
            stream.await.expect("the stream ended");
            report
        })
    });
    assert_eq!(report.drain.streams_closed_by_drain, 1);
    assert_eq!((report.drain.drained(), report.drain.interrupted), (1, 0));
    assert_eq!(values.counter(names::STREAMS_CLOSED_BY_DRAIN, &[]), 1);
    assert_eq!(values.counter(names::REQUESTS_INTERRUPTED, &[]), 0);
}
