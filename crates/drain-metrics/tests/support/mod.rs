//! What the integration tests share: the scripted shutdown and a non-destructive reader
//! of the debugging recorder (the tracing capture is `test_support::logs`).

#![allow(dead_code)] // each test binary uses a part of it

use std::collections::BTreeMap;
use std::time::Duration;

use drain_metrics::DrainMetrics;
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use shutdown_core::{Phase, Shutdown, ShutdownConfig, ShutdownReport};

/// The drain deadline of the scripted shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the quick request runs after the trigger.
pub const QUICK_REQUEST: Duration = Duration::from_secs(2);
/// How long the `database` cleanup task runs.
pub const DATABASE_CLEANUP: Duration = Duration::from_secs(1);
/// The report's total: the drain runs to its deadline, then the cleanups.
pub const TOTAL: Duration = Duration::from_secs(11);

/// A point of the scripted shutdown where the test looks at the metrics.
#[derive(Debug)]
pub enum Checkpoint<'a> {
    /// Two requests admitted, before the trigger.
    TwoInFlight,
    /// Draining; the quick request has finished, the slow one is still in flight.
    OneFinished,
    /// Draining; one request was just turned away.
    OneRejected,
    /// `run` has returned and the slow handler has given up.
    Finished(&'a ShutdownReport),
}

/// A current-thread runtime on tokio's paused clock: every duration is exact.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

/// The scripted shutdown, on the paused clock, with a [`DrainMetrics`] created on the
/// recorder current at the call:
///
/// - two requests enter (checkpoint `TwoInFlight`);
/// - the shutdown is triggered (drain deadline 10 s, no pre-stop delay);
/// - the quick request finishes at 2 s (`OneFinished`);
/// - one request is turned away during the drain (`OneRejected`);
/// - the slow request is still in flight at the 10 s deadline: interrupted; its handler
///   gives up when the request token is cancelled;
/// - cleanup, last registered first: `cache` fails at once, `database` completes in 1 s;
/// - `run` returns at 11 s (`Finished`).
pub async fn scripted_shutdown(mut check: impl FnMut(Checkpoint<'_>)) -> ShutdownReport {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(DRAIN_TIMEOUT))
        .with_observer(DrainMetrics::new());
    shutdown.register_cleanup("database", || async {
        tokio::time::sleep(DATABASE_CLEANUP).await;
        Ok::<(), String>(())
    });
    shutdown.register_cleanup("cache", || async { Err::<(), _>("connection reset") });

    let quick = shutdown.try_enter().expect("running");
    let slow = shutdown.try_enter().expect("running");
    check(Checkpoint::TwoInFlight);

    let quick_handler = tokio::spawn(async move {
        tokio::time::sleep(QUICK_REQUEST).await;
        drop(quick);
    });
    let token = shutdown.request_token();
    let slow_handler = tokio::spawn(async move {
        token.cancelled().await;
        drop(slow);
    });
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run().await }
    });

    shutdown.request_shutdown("scripted");
    shutdown.reached(Phase::Draining).await;
    quick_handler.await.expect("quick handler");
    check(Checkpoint::OneFinished);

    assert!(shutdown.try_enter().is_none(), "turned away while draining");
    check(Checkpoint::OneRejected);

    let report = run.await.expect("run");
    slow_handler.await.expect("slow handler");
    check(Checkpoint::Finished(&report));
    report
}

/// A metric's identity in a [`Values`] read: its name and its labels, sorted.
pub type Series = (String, Vec<(String, String)>);

/// Reads a [`DebuggingRecorder`] without resetting it.
///
/// `Snapshotter::snapshot` swaps every counter and gauge to zero as it reads them; a
/// script that looks at the same metrics at several points would then see differences
/// instead of values. `read` writes every value back through the recorder right after
/// the snapshot, so each read sees the metrics as the code under test left them. The
/// tests run on one thread, so nothing updates a metric between the two.
pub struct Values<'a> {
    recorder: &'a DebuggingRecorder,
    snapshotter: Snapshotter,
}

const METADATA: Metadata<'static> = Metadata::new("drain_metrics_tests", Level::INFO, None);

impl<'a> Values<'a> {
    pub fn new(recorder: &'a DebuggingRecorder) -> Self {
        Self {
            recorder,
            snapshotter: recorder.snapshotter(),
        }
    }

    pub fn read(&self) -> BTreeMap<Series, DebugValue> {
        let mut values = BTreeMap::new();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key: Key = key.key().clone();
            match &value {
                DebugValue::Counter(n) => {
                    self.recorder.register_counter(&key, &METADATA).absolute(*n)
                }
                DebugValue::Gauge(v) => self
                    .recorder
                    .register_gauge(&key, &METADATA)
                    .set(v.into_inner()),
                DebugValue::Histogram(_) => {}
            }
            values.insert(series(&key), value);
        }
        values
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.read().remove(&wanted(name, labels)) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            other => panic!("gauge {name} {labels:?}: {other:?}"),
        }
    }

    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.read().remove(&wanted(name, labels)) {
            Some(DebugValue::Counter(n)) => n,
            other => panic!("counter {name} {labels:?}: {other:?}"),
        }
    }

    /// Every series of the metric `name`.
    pub fn series_of(&self, name: &str) -> Vec<Series> {
        self.read().into_keys().filter(|(n, _)| n == name).collect()
    }
}

fn series(key: &Key) -> Series {
    let mut labels: Vec<(String, String)> = key
        .labels()
        .map(|l: &Label| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

fn wanted(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}
