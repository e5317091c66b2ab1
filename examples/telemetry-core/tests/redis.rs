//! The Redis publisher against a real `redis-server` (started by each test on a free
//! loopback port; Debian's package `redis-server` must be installed): events published
//! and received by a subscriber; the connection closed by the `redis` cleanup task,
//! before the database's, while the process lives on; a Redis that is down at start,
//! goes away, or hangs, logged once, counted, and published to again once it is back;
//! a full queue dropping without waiting.
//!
//! Each test runs the service on a current-thread runtime inside a local metrics
//! recorder and a log capture, so that every figure and log line is this test's own.
//! The test binary is its own (log-asserting tests are kept apart, see
//! `test_support::logs`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use shutdown_core::{Shutdown, ShutdownReport};
use telemetry_core::metrics::{REDIS_DROPPED, REDIS_FAILED, REDIS_PUBLISHED};
use telemetry_core::redis::{CHANNEL, QUEUE};
use telemetry_core::{Config, Store, Telemetry};
use test_support::logs::Captured;
use test_support::redis::{RedisServer, free_port};

/// Bound on every wait: only stops a bug from hanging CI.
const WAIT: Duration = Duration::from_secs(15);

/// Runs `test` on a current-thread runtime (the service's tasks run on this thread, so
/// the recorder and the capture see them) and returns its output.
fn run<F: Future>(recorder: &DebuggingRecorder, test: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    metrics::with_local_recorder(recorder, || runtime.block_on(test))
}

/// A database path unique to this test; removed when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let db = Self(std::env::temp_dir().join(format!(
            "telemetry-core-redis-{}-{test}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        db.remove();
        db
    }

    fn remove(&self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }

    fn stored(&self) -> u64 {
        Store::open(&self.0)
            .and_then(|store| store.count())
            .expect("count the stored events")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn config(db: &TempDb, redis_url: &str) -> Config {
    config_with(db, redis_url, "durable")
}

/// With `ack_mode`, and room in the buffer for more than the publish queue holds.
fn config_with(db: &TempDb, redis_url: &str, ack_mode: &str) -> Config {
    let path = OsString::from(db.0.as_os_str());
    let url = OsString::from(redis_url);
    let ack_mode = OsString::from(ack_mode);
    let capacity = OsString::from((2 * QUEUE).to_string());
    Config::from_lookup(|name| match name {
        "DATABASE_PATH" => Some(path.clone()),
        "REDIS_URL" => Some(url.clone()),
        "ACK_MODE" => Some(ack_mode.clone()),
        "BUFFER_CAPACITY" => Some(capacity.clone()),
        _ => None,
    })
    .expect("a valid test configuration")
}

fn event(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","satellite":"sat-1","value":1.25}}"#).into_bytes()
}

/// The counters recorded so far. A snapshot of the debugging recorder takes the counts
/// since the last one: this keeps the totals.
struct Counters {
    snapshotter: Snapshotter,
    totals: RefCell<HashMap<String, u64>>,
}

impl Counters {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            totals: RefCell::default(),
        }
    }

    fn get(&self, name: &str) -> u64 {
        let mut totals = self.totals.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(count) = value {
                *totals.entry(key.key().name().to_owned()).or_default() += count;
            }
        }
        totals.get(name).copied().unwrap_or(0)
    }
}

/// Waits (yielding to the service's tasks) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ingests a new event every 50 ms until the publisher has published `published`
/// events in all; returns the ids ingested.
async fn ingest_until_published(
    telemetry: &Telemetry,
    counters: &Counters,
    prefix: &str,
    published: u64,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut ids = Vec::new();
    while counters.get(REDIS_PUBLISHED) < published {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing did not resume"
        );
        let id = format!("{prefix}-{}", ids.len());
        assert_eq!(telemetry.ingest(&event(&id)).await.status, 202);
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ids
}

async fn shut_down(shutdown: &Shutdown) -> ShutdownReport {
    shutdown.request_shutdown("test");
    let report = shutdown.run().await;
    assert_eq!(report.exit_code(), 0, "{report:?}");
    let cleanups: Vec<&str> = report.cleanups.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cleanups, ["redis", "database"], "Redis closes first");
    report
}

/// The `WARN` events of the service, as `message` strings.
fn warnings(logs: &Captured) -> Vec<String> {
    logs.events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN && e.target.starts_with("telemetry_core"))
        .map(|e| e.message)
        .collect()
}

fn ids_in(messages: &[String]) -> HashSet<String> {
    messages
        .iter()
        .map(|m| {
            let json: serde_json::Value = serde_json::from_str(m).expect("a JSON message");
            json["id"].as_str().expect("an id").to_owned()
        })
        .collect()
}

#[test]
fn each_event_is_published_and_the_cleanup_closes_the_connection_before_the_database() {
    let server = RedisServer::start();
    let mut subscriber = server.subscribe(CHANNEL);
    let others = server.client_ids();
    let db = TempDb::new("published");
    let recorder = DebuggingRecorder::new();
    let counters = Counters::new(&recorder);
    let (logs, _guard) = Captured::install();

    run(&recorder, async {
        let config = config(&db, &server.url());
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        until("the publisher connects", || {
            server.client_ids().len() == others.len() + 1
        })
        .await;
        assert_eq!(telemetry.ingest(&event("r1")).await.status, 202);
        assert_eq!(telemetry.ingest(&event("r2")).await.status, 202);
        assert_eq!(
            telemetry.ingest(&event("r1")).await.status,
            202,
            "a duplicate"
        );
        until("both are published", || counters.get(REDIS_PUBLISHED) == 2).await;
        assert_eq!(telemetry.ingest(&event("r3")).await.status, 202);

        shut_down(&shutdown).await;
        // This process lives on: the cleanup task itself closed the connection.
        assert_eq!(server.client_ids(), others, "the connection is closed");
        assert_eq!(server.calls("quit"), 1, "closed with QUIT");
    });

    let received = subscriber.drain(Duration::from_millis(300));
    assert_eq!(received.len(), 3, "{received:?}");
    let first: serde_json::Value = serde_json::from_str(&received[0]).expect("JSON");
    assert_eq!(first["id"], "r1");
    assert_eq!(first["satellite"], "sat-1");
    assert_eq!(first["value"], 1.25);
    assert!(first["received_at"].as_i64().is_some(), "{first}");
    assert_eq!(
        ids_in(&received),
        HashSet::from(["r1".into(), "r2".into(), "r3".into()]),
        "r3, accepted just before the shutdown, is published after the drain"
    );
    assert_eq!(counters.get(REDIS_PUBLISHED), 3);
    assert_eq!(counters.get(REDIS_FAILED), 0);
    assert_eq!(logs.with_message("connected to Redis").len(), 1);
    assert_eq!(logs.with_message("Redis connection closed").len(), 1);
    assert_eq!(warnings(&logs), Vec::<String>::new());
    assert_eq!(db.stored(), 3);
}

#[test]
fn a_redis_down_at_start_is_logged_once_and_publishing_starts_when_it_comes_up() {
    let port = free_port();
    let db = TempDb::new("late");
    let recorder = DebuggingRecorder::new();
    let counters = Counters::new(&recorder);
    let (logs, _guard) = Captured::install();

    let (server, mut subscriber, published) = run(&recorder, async {
        let config = config(&db, &format!("redis://127.0.0.1:{port}"));
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown)
            .await
            .expect("a Redis that is down does not fail the start");
        for id in ["d1", "d2", "d3"] {
            assert_eq!(telemetry.ingest(&event(id)).await.status, 202);
        }
        until("the three are counted as failed", || {
            counters.get(REDIS_FAILED) == 3
        })
        .await;

        let server = RedisServer::start_on(port);
        let subscriber = server.subscribe(CHANNEL);
        let published = ingest_until_published(&telemetry, &counters, "up", 1).await;
        shut_down(&shutdown).await;
        (server, subscriber, published)
    });

    let received = ids_in(&subscriber.drain(Duration::from_millis(300)));
    assert!(!received.is_empty(), "the subscriber got the events");
    assert!(
        received.iter().all(|id| published.contains(id)),
        "only events ingested once Redis was up: {received:?}"
    );
    assert_eq!(
        warnings(&logs),
        ["cannot connect to Redis; events are stored but not published until it is back"],
        "logged once, not per event"
    );
    assert_eq!(
        logs.with_message("Redis is back; publishing again").len(),
        1
    );
    assert!(
        server.client_ids().len() == 1,
        "only the subscriber is left"
    );
    assert_eq!(db.stored(), 3 + published.len() as u64);
}

#[test]
fn a_redis_that_goes_away_is_logged_once_and_publishing_resumes_when_it_is_back() {
    let mut server = RedisServer::start();
    let port = server.port();
    let db = TempDb::new("gone");
    let recorder = DebuggingRecorder::new();
    let counters = Counters::new(&recorder);
    let (logs, _guard) = Captured::install();

    let (server, mut subscriber, published) = run(&recorder, async {
        let config = config(&db, &server.url());
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("before")).await.status, 202);
        until("it is published", || counters.get(REDIS_PUBLISHED) == 1).await;

        server.kill();
        for id in ["gone-1", "gone-2", "gone-3"] {
            assert_eq!(telemetry.ingest(&event(id)).await.status, 202);
            tokio::task::yield_now().await;
        }
        until("the three are counted as failed", || {
            counters.get(REDIS_FAILED) == 3
        })
        .await;

        let server = RedisServer::start_on(port);
        let subscriber = server.subscribe(CHANNEL);
        let published = ingest_until_published(&telemetry, &counters, "back", 2).await;
        shut_down(&shutdown).await;
        (server, subscriber, published)
    });

    let received = ids_in(&subscriber.drain(Duration::from_millis(300)));
    assert!(
        !received.is_empty(),
        "the new server's subscriber got events"
    );
    assert!(
        received.iter().all(|id| published.contains(id)),
        "{received:?}"
    );
    assert_eq!(
        warnings(&logs),
        ["publishing to Redis failed; events are stored but not published until it is back"],
        "logged once, not per event"
    );
    assert_eq!(
        logs.with_message("Redis is back; publishing again").len(),
        1
    );
    assert_eq!(
        server.calls("quit"),
        1,
        "the new connection is closed at cleanup"
    );
    assert_eq!(db.stored(), 4 + published.len() as u64);
}

#[test]
fn a_redis_that_stops_answering_times_out_and_a_new_connection_is_made() {
    let server = RedisServer::start();
    let db = TempDb::new("frozen");
    let recorder = DebuggingRecorder::new();
    let counters = Counters::new(&recorder);
    let (logs, _guard) = Captured::install();

    let (mut subscriber, published) = run(&recorder, async {
        let config = config(&db, &server.url());
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("before")).await.status, 202);
        until("it is published", || counters.get(REDIS_PUBLISHED) == 1).await;
        let connected = server.client_ids();

        server.freeze();
        assert_eq!(telemetry.ingest(&event("frozen")).await.status, 202);
        until("it is counted as failed after the timeout", || {
            counters.get(REDIS_FAILED) == 1
        })
        .await;
        server.thaw();

        let subscriber = server.subscribe(CHANNEL);
        let published = ingest_until_published(&telemetry, &counters, "thawed", 2).await;
        let now = server.client_ids();
        assert!(
            connected.iter().all(|id| !now.contains(id)),
            "the hung connection was replaced: {connected:?} then {now:?}"
        );
        shut_down(&shutdown).await;
        (subscriber, published)
    });

    let received = ids_in(&subscriber.drain(Duration::from_millis(300)));
    assert!(
        received.iter().any(|id| published.contains(id)),
        "{received:?}"
    );
    let warnings = warnings(&logs);
    assert_eq!(warnings.len(), 1, "logged once: {warnings:?}");
    assert!(warnings[0].starts_with("publishing to Redis failed"));
    let failed = logs.with_message(&warnings[0]);
    assert!(
        failed[0].field("error").contains("no reply within"),
        "{:?}",
        failed[0]
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    // Nothing listens there: the publisher fails, but the queue fills first, since the
    // events below are ingested without yielding to its task (in buffered mode an
    // ingest does not wait for a commit).
    let port = free_port();
    let db = TempDb::new("full");
    let recorder = DebuggingRecorder::new();
    let counters = Counters::new(&recorder);
    let (logs, _guard) = Captured::install();

    run(&recorder, async {
        let config = config_with(&db, &format!("redis://127.0.0.1:{port}"), "buffered");
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        for i in 0..QUEUE + 10 {
            assert_eq!(telemetry.ingest(&event(&format!("q{i}"))).await.status, 202);
        }
        assert_eq!(counters.get(REDIS_DROPPED), 10);
        shut_down(&shutdown).await;
    });

    let full =
        "the Redis publish queue is full; events are stored but not published until it drains";
    assert_eq!(logs.with_message(full).len(), 1, "logged once");
    assert_eq!(
        counters.get(REDIS_FAILED),
        QUEUE as u64,
        "the queued ones failed"
    );
    assert_eq!(db.stored(), (QUEUE + 10) as u64);
}
