//! [`Telemetry`]: the handle the HTTP handlers call: the durable writer or the
//! write-behind buffer in front of the store, and the flusher.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shutdown_core::{CancellationToken, Shutdown};
use tracing::{error, info, warn};

use crate::buffer::{Accepted, Refused, WriteBehind};
use crate::commit::{GroupCommit, Grouping};
use crate::config::{AckMode, Config};
use crate::event::{Event, Record};
use crate::metrics as names;
use crate::redis::Publisher;
use crate::reply::Reply;
use crate::spill;
use crate::store::{SharedStore, Store, StoreError, blocking};

/// `Retry-After` of a `503` for an event refused while serving (the bound of events
/// not yet committed reached, or its transaction failed), in seconds: the database may
/// be available again at once.
pub const RETRY_AFTER_BUSY_SECS: u64 = 1;

/// The telemetry service's state: the durable writer (`ACK_MODE=durable`) or the
/// write-behind buffer (`ACK_MODE=buffered`), the SQLite store behind it, and the
/// optional Redis publisher. A cheap [`Clone`] (one reference count).
///
/// # No acknowledged write is lost
///
/// With `ACK_MODE=durable` (the default) an event is acknowledged (`202`) once its
/// transaction has committed: it is on disk, whatever happens to the process next
/// (`SIGKILL`, the OOM killer, a crash). Concurrent events share a transaction (group
/// commit); a failed commit answers `503` + `Retry-After` to every event in it. At the
/// shutdown, when [`Shutdown::token`] is cancelled (after the drain), the writer commits
/// what it holds, then the `database` cleanup closes the database.
///
/// With `ACK_MODE=buffered` an event is acknowledged once it is in the buffer; the
/// flusher writes the buffer every `FLUSH_INTERVAL_MS` and, when the token is
/// cancelled, writes what is left. The `database` cleanup, registered first so that
/// it runs last, refuses new events and writes whatever is still buffered; if that
/// fails, it spills the events to a file beside the database (replayed by the next
/// [`start`](Self::start)) and fails, so that the process exits with the
/// cleanup-failed code. A process killed loses what was acknowledged since the last
/// flush: that is the mode's loss window.
///
/// Either way at most `BUFFER_CAPACITY` events wait for the database; more are
/// refused with `503` + `Retry-After`, never acknowledged and then dropped.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    acks: Acks,
    store: SharedStore,
    database_path: PathBuf,
    /// Flushes must not overlap (flusher, cleanup, callers of `flush`).
    flush_lock: tokio::sync::Mutex<()>,
    /// How long the `database` cleanup tries its flush before spilling.
    flush_budget: Duration,
    redis: Option<Publisher>,
    retry_after_secs: u64,
}

enum Acks {
    Durable(GroupCommit),
    Buffered(WriteBehind),
}

impl Telemetry {
    /// Opens the store, replays the spill files left beside it (removing each once its
    /// events are committed), registers the `database` cleanup task (first, so that it
    /// runs last), starts the Redis publisher when `REDIS_URL` is set (with its
    /// `redis` cleanup task), and spawns the durable writer or the flusher on
    /// `shutdown`'s tracker.
    ///
    /// Call it once, before serving, from within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the database cannot be opened, a spill file cannot be
    /// replayed (it is kept), or redis-rs refuses `REDIS_URL`. A Redis that cannot be
    /// reached is not an error: the publisher connects in the background, logs a
    /// failure once and retries.
    pub async fn start(config: &Config, shutdown: &Shutdown) -> Result<Self, StartError> {
        let path = config.database_path.clone();
        let (busy_timeout, synchronous) = (config.busy_timeout, config.synchronous);
        let store = blocking(move || Store::open_with(path, busy_timeout, synchronous))
            .await
            .map_err(StartError::Database)?;
        info!(
            path = %store.path().display(),
            ack_mode = %config.ack_mode,
            synchronous = %config.synchronous,
            buffer_capacity = config.buffer_capacity,
            "database opened"
        );
        let store = SharedStore::new(store);
        replay(&store, &config.database_path).await?;

        let acks = match config.ack_mode {
            AckMode::Durable => {
                let grouping = Grouping {
                    batch: config.commit_batch,
                    window: config.commit_window,
                };
                let (writer, task) = GroupCommit::start(
                    store.clone(),
                    config.buffer_capacity,
                    grouping,
                    shutdown.token(),
                )
                .map_err(StartError::Writer)?;
                shutdown.spawn(task);
                Acks::Durable(writer)
            }
            AckMode::Buffered => Acks::Buffered(WriteBehind::with_capacity(config.buffer_capacity)),
        };
        let redis = match &config.redis {
            Some(url) => Some(Publisher::start(url.clone(), shutdown).map_err(StartError::Redis)?),
            None => None,
        };
        let telemetry = Self {
            inner: Arc::new(Inner {
                acks,
                store,
                database_path: config.database_path.clone(),
                flush_lock: tokio::sync::Mutex::new(()),
                flush_budget: shutdown.config().cleanup_timeout() / 2,
                redis,
                retry_after_secs: shutdown.config().retry_after_secs(),
            }),
        };
        // Cleanup tasks run last registered first: the database closes after Redis.
        let closing = telemetry.clone();
        shutdown.register_cleanup("database", move || async move { closing.close().await });
        if let Some(redis) = &telemetry.inner.redis {
            let close = redis.close();
            shutdown.register_cleanup("redis", move || close);
        }
        if let Acks::Buffered(_) = telemetry.inner.acks {
            shutdown.spawn(flusher(
                telemetry.clone(),
                config.flush_interval,
                shutdown.token(),
            ));
        }
        Ok(telemetry)
    }

    /// `POST /telemetry`: validates `body` and acknowledges the event: `202` once
    /// committed (`ACK_MODE=durable`) or buffered (`buffered`); a repeated id is
    /// acknowledged again but kept once. `400` or `413` with a JSON error. `503` with
    /// `Retry-After` when the event is not acknowledged: `BUFFER_CAPACITY` events
    /// already wait for the database, its transaction failed, or the database is
    /// closing.
    pub async fn ingest(&self, body: &[u8]) -> Reply {
        let event = match Event::from_json(body) {
            Ok(event) => event,
            Err(invalid) => return Reply::error(invalid.status(), &invalid.to_string()),
        };
        let record = Record::received_now(event);
        let id = record.id.clone();
        let published = self.inner.redis.as_ref().map(|_| record.to_json());
        let outcome = match &self.inner.acks {
            Acks::Durable(writer) => writer.commit(record).await,
            Acks::Buffered(buffer) => {
                let outcome = buffer.accept(record);
                if outcome == Ok(Accepted::New) {
                    ::metrics::gauge!(names::EVENTS_BUFFERED).increment(1.0);
                }
                outcome
            }
        };
        match outcome {
            Ok(Accepted::New) => {
                ::metrics::counter!(names::EVENTS_ACCEPTED).increment(1);
                if let (Some(redis), Some(message)) = (&self.inner.redis, published) {
                    redis.publish(message);
                }
                Reply::json(
                    202,
                    serde_json::json!({"id": id, "status": "accepted"}).to_string(),
                )
            }
            Ok(Accepted::Duplicate) => Reply::json(
                202,
                serde_json::json!({"id": id, "status": "duplicate"}).to_string(),
            ),
            Err(refused) => {
                ::metrics::counter!(names::EVENTS_REFUSED, "reason" => refused.as_str())
                    .increment(1);
                match refused {
                    Refused::Full => Reply::retry_later(
                        RETRY_AFTER_BUSY_SECS,
                        "too many events are waiting for the database, retry later",
                    ),
                    Refused::Failed => Reply::retry_later(
                        RETRY_AFTER_BUSY_SECS,
                        "the event could not be stored, retry later",
                    ),
                    Refused::Closed => Reply::unavailable(self.inner.retry_after_secs),
                }
            }
        }
    }

    /// The event with `id`: stored, or buffered (`ACK_MODE=buffered`).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when it is not buffered and the store cannot be read (or is
    /// closed).
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        if let Acks::Buffered(buffer) = &self.inner.acks {
            if let Some(record) = buffer.get(id) {
                return Ok(Some(record));
            }
        }
        let id = id.to_owned();
        // An event leaves the buffer only after its flush committed: looking in the
        // buffer first, then in the store, cannot miss it.
        self.inner.store.run(move |store| store.get(&id)).await
    }

    /// `GET /telemetry/{id}`: `200` with the event, `404`, or `503` once closed.
    pub async fn lookup(&self, id: &str) -> Reply {
        match self.get(id).await {
            Ok(Some(record)) => Reply::json(200, record.to_json()),
            Ok(None) => Reply::error(404, &format!("no event with id {id:?}")),
            Err(StoreError::Closed) => Reply::unavailable(self.inner.retry_after_secs),
            Err(error) => {
                error!(error = %error, "reading an event failed");
                Reply::error(500, "the database could not be read")
            }
        }
    }

    /// `ACK_MODE=buffered`: writes the buffered events to the store in one transaction
    /// and returns how many were written. On an error they stay buffered, to be
    /// retried by the next flush. Cancel-safe in the same sense: a flush dropped midway
    /// is retried (a repeated insert is ignored). With `durable`, there is nothing to
    /// flush: `Ok(0)`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite fails or the store is closed.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let Acks::Buffered(buffer) = &self.inner.acks else {
            return Ok(0);
        };
        let _flushing = self.inner.flush_lock.lock().await;
        let batch = buffer.begin_flush();
        if batch.is_empty() {
            return Ok(0);
        }
        let events = batch.len();
        let written = self
            .inner
            .store
            .run(move |store| store.insert_batch(&batch))
            .await;
        match written {
            Ok(new) => {
                buffer.flushed();
                let inserted = new.iter().filter(|new| **new).count();
                ::metrics::counter!(names::EVENTS_STORED).increment(inserted as u64);
                ::metrics::gauge!(names::EVENTS_BUFFERED).decrement(events as f64);
                Ok(events)
            }
            Err(error) => {
                ::metrics::counter!(names::FLUSH_FAILURES).increment(1);
                Err(error)
            }
        }
    }

    /// Events accepted and not yet committed to the store: buffered, or waiting for
    /// their transaction. At most `BUFFER_CAPACITY`.
    pub fn buffered(&self) -> usize {
        match &self.inner.acks {
            Acks::Durable(writer) => writer.waiting(),
            Acks::Buffered(buffer) => buffer.len(),
        }
    }

    /// The acknowledgement mode.
    pub fn ack_mode(&self) -> AckMode {
        match self.inner.acks {
            Acks::Durable(_) => AckMode::Durable,
            Acks::Buffered(_) => AckMode::Buffered,
        }
    }

    /// The `database` cleanup: refuses new events, writes what is still buffered, and
    /// closes the store. When buffered events cannot be written (within half the
    /// cleanup timeout), they are spilled to a file beside the database, replayed at
    /// the next start, and the cleanup fails naming how many and where.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unflushed`] when buffered events could not be written (the store
    /// is left open: a write of them may still be under way), or the error of closing.
    pub async fn close(&self) -> Result<(), StoreError> {
        if let Acks::Buffered(buffer) = &self.inner.acks {
            buffer.close();
            let flushed = tokio::time::timeout(self.inner.flush_budget, self.flush()).await;
            let failure = match flushed {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some(StoreError::Task(format!(
                    "the last flush took longer than {:?}",
                    self.inner.flush_budget
                ))),
            };
            if let Some(error) = failure {
                return Err(self.spill(buffer, error).await);
            }
        }
        self.inner.store.close().await?;
        info!("database closed");
        Ok(())
    }

    /// Writes every event not yet committed to a spill file; the error to report.
    ///
    /// It does not wait for a flush under way (the flusher's, abandoned at its bound,
    /// may be stuck on a lock): it spills that flush's events too. If that flush
    /// commits them after all, the replay finds them stored and ignores them.
    async fn spill(&self, buffer: &WriteBehind, source: StoreError) -> StoreError {
        let records = buffer.begin_flush();
        let events = records.len();
        let database = self.inner.database_path.clone();
        let spilled = blocking(move || {
            spill::write(&database, &records).map_err(|e| StoreError::Task(e.to_string()))
        })
        .await;
        let spill = match spilled {
            Ok(path) => {
                error!(
                    events,
                    spill = %path.display(),
                    error = %source,
                    "acknowledged events could not be written to the database; \
                     spilled, to be replayed at the next start"
                );
                Ok(path)
            }
            Err(spill_error) => {
                error!(
                    events,
                    error = %source,
                    spill_error = %spill_error,
                    "acknowledged events could not be written nor spilled"
                );
                Err(spill_error.to_string())
            }
        };
        StoreError::Unflushed {
            events,
            source: Box::new(source),
            spill,
        }
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Telemetry");
        debug
            .field("ack_mode", &self.ack_mode())
            .field("buffered", &self.buffered());
        if let Acks::Durable(writer) = &self.inner.acks {
            debug.field("commits", &writer.commits());
        }
        debug
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// Commits the events of every spill file beside the database, then removes the file.
async fn replay(store: &SharedStore, database: &Path) -> Result<(), StartError> {
    let replay_error = |path: &Path, message: String| StartError::Replay {
        path: path.to_owned(),
        message,
    };
    let files = spill::files(database).map_err(|e| replay_error(database, e.to_string()))?;
    for path in files {
        let read = path.clone();
        let records = blocking(move || spill::read(&read).map_err(StoreError::Task))
            .await
            .map_err(|e| replay_error(&path, e.to_string()))?;
        let events = records.len();
        let new = store
            .run(move |store| store.insert_batch(&records))
            .await
            .map_err(|e| replay_error(&path, e.to_string()))?;
        let stored = new.iter().filter(|new| **new).count();
        ::metrics::counter!(names::EVENTS_STORED).increment(stored as u64);
        info!(events, stored, spill = %path.display(), "spilled events replayed");
        let remove = path.clone();
        if let Err(error) =
            blocking(move || spill::remove(&remove).map_err(|e| StoreError::Task(e.to_string())))
                .await
        {
            // Its events are committed: replaying it again at the next start is harmless.
            warn!(spill = %path.display(), error = %error, "a replayed spill file could not be removed");
        }
    }
    Ok(())
}

/// Writes the buffer every `every` until `stop` is cancelled, then once more, and
/// returns.
async fn flusher(telemetry: Telemetry, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                if let Err(error) = telemetry.flush().await {
                    warn!(
                        error = %error,
                        buffered = telemetry.buffered(),
                        "flush failed; retrying at the next tick"
                    );
                }
            }
        }
    }
    let buffered = telemetry.buffered();
    match telemetry.flush().await {
        Ok(events) => info!(events, "write-behind buffer flushed after the drain"),
        Err(error) => error!(
            error = %error,
            buffered,
            "the last flush failed; the database cleanup tries again"
        ),
    }
}

/// The service could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The database could not be opened.
    Database(StoreError),
    /// The durable writer's thread could not be started.
    Writer(std::io::Error),
    /// A spill file could not be replayed: it is kept, with its events, for the next
    /// start.
    Replay {
        /// The spill file (or the database, when its directory cannot be listed).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// redis-rs did not accept `REDIS_URL`.
    Redis(redis::RedisError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(error) => error.fmt(f),
            Self::Writer(error) => write!(f, "starting the database writer thread: {error}"),
            Self::Replay { path, message } => write!(
                f,
                "replaying the spilled events of {}: {message} (the file is kept)",
                path.display()
            ),
            Self::Redis(error) => write!(f, "REDIS_URL cannot be used: {error}"),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Database(error) => Some(error),
            Self::Writer(error) => Some(error),
            Self::Replay { .. } => None,
            Self::Redis(error) => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use shutdown_core::CleanupStatus;

    use super::*;
    use crate::store::tests::TempDb;

    /// Bound on waiting in these tests: only stops a bug from hanging them.
    const WAIT: Duration = Duration::from_secs(20);

    fn config(db: &TempDb, env: &[(&str, &str)]) -> Config {
        let path = OsString::from(db.0.as_os_str());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| {
            if name == "DATABASE_PATH" {
                return Some(path.clone());
            }
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })
        .expect("valid test configuration")
    }

    fn event(id: &str) -> Vec<u8> {
        format!(r#"{{"id":"{id}","satellite":"sat-1","value":1.25}}"#).into_bytes()
    }

    fn stored(db: &TempDb) -> u64 {
        Store::open(&db.0).expect("open").count().expect("count")
    }

    fn cleanup_names(report: &shutdown_core::ShutdownReport) -> Vec<&str> {
        report.cleanups.iter().map(|c| c.name.as_str()).collect()
    }

    /// Another connection holding the database's write lock until dropped or
    /// released, as another process would.
    struct Lock(rusqlite::Connection);

    impl Lock {
        fn take(db: &TempDb) -> Self {
            let conn = rusqlite::Connection::open(&db.0).expect("second connection");
            conn.execute_batch("BEGIN EXCLUSIVE")
                .expect("lock the database");
            Self(conn)
        }

        fn release(self) {
            self.0.execute_batch("COMMIT").expect("unlock the database");
        }
    }

    /// Waits until `telemetry` holds `n` events not yet committed.
    async fn until_waiting(telemetry: &Telemetry, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while telemetry.buffered() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} events waiting",
                telemetry.buffered()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn spawn_ingest(telemetry: &Telemetry, id: &str) -> tokio::task::JoinHandle<Reply> {
        let telemetry = telemetry.clone();
        let body = event(id);
        tokio::spawn(async move { telemetry.ingest(&body).await })
    }

    async fn replies(tasks: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
        let mut replies = Vec::new();
        for task in tasks {
            let reply = tokio::time::timeout(WAIT, task)
                .await
                .expect("answered in time")
                .expect("ingest task");
            replies.push(reply);
        }
        replies
    }

    // ----- ACK_MODE=durable -----------------------------------------------------------

    #[tokio::test]
    async fn a_durable_202_means_the_event_is_already_committed() {
        let db = TempDb::new("durable-ack");
        let config = config(&db, &[]);
        assert_eq!(config.ack_mode, AckMode::Durable, "the default");
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        let reply = telemetry.ingest(&event("a")).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(reply.body.contains("accepted"), "{}", reply.body);
        assert_eq!(
            Store::open(&db.0)
                .expect("open")
                .get("a")
                .expect("get")
                .map(|r| r.id),
            Some("a".to_owned()),
            "read by another connection while the service runs"
        );
        assert_eq!(telemetry.buffered(), 0);
        let duplicate = telemetry
            .ingest(br#"{"id":"a","satellite":"other","value":9}"#)
            .await;
        assert_eq!(duplicate.status, 202);
        assert!(duplicate.body.contains("duplicate"), "{}", duplicate.body);
        let record = telemetry.get("a").await.expect("get").expect("stored");
        assert_eq!(
            record.satellite, "sat-1",
            "the first event with an id is kept"
        );
        assert_eq!(telemetry.flush().await.expect("nothing to flush"), 0);

        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(report.tasks_at_cancel, 1, "the writer was running");
        assert_eq!(report.tasks_abandoned, 0);
        assert_eq!(cleanup_names(&report), ["database"]);
        assert_eq!(stored(&db), 1);
    }

    #[tokio::test]
    async fn events_arriving_during_a_commit_share_the_next_transaction() {
        let db = TempDb::new("group-commit");
        let config = config(&db, &[("DATABASE_BUSY_TIMEOUT_MS", "20000")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        // The first transaction waits for the lock while the others queue up.
        let lock = Lock::take(&db);
        let tasks: Vec<_> = (0..50)
            .map(|i| spawn_ingest(&telemetry, &format!("e{i}")))
            .collect();
        until_waiting(&telemetry, 50).await;
        assert_eq!(stored(&db), 0);
        lock.release();
        for reply in replies(tasks).await {
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
        let Acks::Durable(writer) = &telemetry.inner.acks else {
            panic!("durable mode");
        };
        assert!(
            writer.commits() <= 2,
            "50 events in {} transactions",
            writer.commits()
        );
        assert_eq!(stored(&db), 50);
        assert_eq!(telemetry.buffered(), 0);
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
    }

    #[tokio::test]
    async fn one_transaction_per_event_with_a_commit_batch_of_one() {
        let db = TempDb::new("batch-of-one");
        let config = config(
            &db,
            &[("COMMIT_BATCH", "1"), ("DATABASE_BUSY_TIMEOUT_MS", "20000")],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        let lock = Lock::take(&db);
        let tasks: Vec<_> = (0..5)
            .map(|i| spawn_ingest(&telemetry, &format!("e{i}")))
            .collect();
        until_waiting(&telemetry, 5).await;
        lock.release();
        for reply in replies(tasks).await {
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
        let Acks::Durable(writer) = &telemetry.inner.acks else {
            panic!("durable mode");
        };
        assert_eq!(writer.commits(), 5);
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
    }

    #[tokio::test]
    async fn a_failed_commit_answers_503_to_every_event_in_it_and_stores_none() {
        let db = TempDb::new("commit-fails");
        let config = config(&db, &[("DATABASE_BUSY_TIMEOUT_MS", "100")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        let lock = Lock::take(&db);
        let tasks: Vec<_> = (0..5)
            .map(|i| spawn_ingest(&telemetry, &format!("e{i}")))
            .collect();
        for reply in replies(tasks).await {
            assert_eq!(reply.status, 503, "{}", reply.body);
            assert_eq!(reply.retry_after_secs, Some(RETRY_AFTER_BUSY_SECS));
            assert!(reply.body.contains("could not be stored"), "{}", reply.body);
        }
        assert_eq!(telemetry.buffered(), 0, "answered: nothing waits");
        lock.release();
        assert_eq!(stored(&db), 0);

        let reply = telemetry.ingest(&event("e0")).await;
        assert_eq!(
            reply.status, 202,
            "the same event, sent again: {}",
            reply.body
        );
        assert!(reply.body.contains("accepted"), "new, not a duplicate");
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
        assert_eq!(stored(&db), 1);
    }

    #[tokio::test]
    async fn beyond_buffer_capacity_events_wait_for_no_commit_and_get_503() {
        let db = TempDb::new("durable-full");
        let config = config(
            &db,
            &[
                ("BUFFER_CAPACITY", "3"),
                ("DATABASE_BUSY_TIMEOUT_MS", "20000"),
            ],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        let lock = Lock::take(&db);
        let tasks: Vec<_> = (0..3)
            .map(|i| spawn_ingest(&telemetry, &format!("e{i}")))
            .collect();
        until_waiting(&telemetry, 3).await;
        let refused = tokio::time::timeout(Duration::from_secs(1), telemetry.ingest(&event("e3")))
            .await
            .expect("refused at once, without waiting for the lock");
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.retry_after_secs, Some(RETRY_AFTER_BUSY_SECS));
        assert!(refused.body.contains("too many events"), "{}", refused.body);

        lock.release();
        for reply in replies(tasks).await {
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
        assert_eq!(
            telemetry.ingest(&event("e4")).await.status,
            202,
            "room again"
        );
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
        let store = Store::open(&db.0).expect("open");
        assert_eq!(store.count().expect("count"), 4);
        assert_eq!(store.get("e3").expect("get"), None, "the refused event");
    }

    #[tokio::test]
    async fn at_shutdown_the_writer_commits_what_it_holds_before_the_database_closes() {
        let db = TempDb::new("writer-at-shutdown");
        let config = config(&db, &[("DATABASE_BUSY_TIMEOUT_MS", "20000")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        let lock = Lock::take(&db);
        let tasks: Vec<_> = (0..3)
            .map(|i| spawn_ingest(&telemetry, &format!("e{i}")))
            .collect();
        until_waiting(&telemetry, 3).await;
        shutdown.request_shutdown("test");
        let running = shutdown.clone();
        let report = tokio::spawn(async move { running.run().await });
        // The writer is told to stop while its events wait for the lock.
        shutdown.reached(shutdown_core::Phase::CleaningUp).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        lock.release();

        for reply in replies(tasks).await {
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
        let report = tokio::time::timeout(WAIT, report)
            .await
            .expect("shutdown in time")
            .expect("shutdown task");
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(report.tasks_abandoned, 0);
        assert_eq!(stored(&db), 3);
        assert_eq!(telemetry.ingest(&event("late")).await.status, 503);
    }

    // ----- ACK_MODE=buffered ----------------------------------------------------------

    #[tokio::test]
    async fn events_buffered_when_the_token_is_cancelled_are_stored_before_the_database_closes() {
        let db = TempDb::new("flush-on-cancel");
        // The flusher's period never comes: only the flush on cancellation writes.
        let config = config(
            &db,
            &[("ACK_MODE", "buffered"), ("FLUSH_INTERVAL_MS", "3600000")],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ack_mode(), AckMode::Buffered);
        for i in 0..100 {
            assert_eq!(telemetry.ingest(&event(&format!("e{i}"))).await.status, 202);
        }
        assert_eq!(telemetry.buffered(), 100);
        assert_eq!(stored(&db), 0, "nothing written before the shutdown");

        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(report.tasks_at_cancel, 1, "the flusher was running");
        assert_eq!(report.tasks_abandoned, 0);
        assert_eq!(cleanup_names(&report), ["database"]);
        assert_eq!(telemetry.buffered(), 0);
        assert_eq!(stored(&db), 100);
    }

    #[tokio::test]
    async fn the_flusher_writes_every_interval_while_serving() {
        let db = TempDb::new("periodic");
        let config = config(
            &db,
            &[("ACK_MODE", "buffered"), ("FLUSH_INTERVAL_MS", "20")],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("a")).await.status, 202);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while telemetry.buffered() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "never flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stored(&db), 1, "written while still running");
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
    }

    #[tokio::test]
    async fn get_answers_from_the_buffer_then_from_the_store_and_keeps_the_first_of_a_repeated_id()
    {
        let db = TempDb::new("get");
        let config = config(
            &db,
            &[("ACK_MODE", "buffered"), ("FLUSH_INTERVAL_MS", "3600000")],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        assert_eq!(telemetry.ingest(&event("a")).await.status, 202);
        let duplicate = telemetry
            .ingest(br#"{"id":"a","satellite":"other","value":9}"#)
            .await;
        assert_eq!(duplicate.status, 202);
        assert!(duplicate.body.contains("duplicate"), "{}", duplicate.body);
        let buffered = telemetry.lookup("a").await;
        assert_eq!(buffered.status, 200);
        assert!(
            buffered.body.contains(r#""satellite":"sat-1""#),
            "{}",
            buffered.body
        );

        assert_eq!(telemetry.flush().await.expect("flush"), 1);
        assert_eq!(telemetry.buffered(), 0);
        assert_eq!(
            telemetry
                .ingest(br#"{"id":"a","satellite":"later","value":3}"#)
                .await
                .status,
            202
        );
        assert_eq!(telemetry.flush().await.expect("flush"), 1);
        let record = telemetry.get("a").await.expect("get").expect("stored");
        assert_eq!(
            record.satellite, "sat-1",
            "the first event with an id is kept"
        );
        assert_eq!(record.value, 1.25);

        let missing = telemetry.lookup("nope").await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body, r#"{"error":"no event with id \"nope\""}"#);
        assert_eq!(stored(&db), 1);

        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
    }

    #[tokio::test]
    async fn a_full_buffer_answers_503_while_the_database_is_locked_and_accepts_once_flushed() {
        let db = TempDb::new("buffered-full");
        let config = config(
            &db,
            &[
                ("ACK_MODE", "buffered"),
                ("FLUSH_INTERVAL_MS", "3600000"),
                ("BUFFER_CAPACITY", "2"),
                ("DATABASE_BUSY_TIMEOUT_MS", "50"),
            ],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        let lock = Lock::take(&db);
        assert_eq!(telemetry.ingest(&event("a")).await.status, 202);
        assert_eq!(telemetry.ingest(&event("b")).await.status, 202);
        let full = telemetry.ingest(&event("c")).await;
        assert_eq!(full.status, 503, "{}", full.body);
        assert_eq!(full.retry_after_secs, Some(RETRY_AFTER_BUSY_SECS));
        assert!(full.body.contains("too many events"), "{}", full.body);
        assert!(telemetry.flush().await.is_err(), "locked");
        assert_eq!(
            telemetry.ingest(&event("c")).await.status,
            503,
            "still full"
        );
        assert_eq!(
            telemetry.ingest(&event("a")).await.status,
            202,
            "a repeated id takes no room"
        );

        lock.release();
        assert_eq!(telemetry.flush().await.expect("unlocked"), 2);
        assert_eq!(telemetry.ingest(&event("c")).await.status, 202);
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
        assert_eq!(stored(&db), 3);
    }

    #[tokio::test]
    async fn a_database_locked_at_shutdown_spills_the_buffer_and_the_next_start_replays_it() {
        let db = TempDb::new("spill-replay");
        let config = config(
            &db,
            &[
                ("ACK_MODE", "buffered"),
                ("FLUSH_INTERVAL_MS", "3600000"),
                ("DATABASE_BUSY_TIMEOUT_MS", "50"),
            ],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        for id in ["a", "b", "c"] {
            assert_eq!(telemetry.ingest(&event(id)).await.status, 202);
        }
        let lock = Lock::take(&db);
        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.exit_code(), 4, "{report:?}");
        let CleanupStatus::Failed(message) = &report.cleanups[0].status else {
            panic!("{report:?}");
        };
        let spill = PathBuf::from(format!("{}.spill", db.0.display()));
        assert!(
            message.starts_with("3 acknowledged events could not be written to the database"),
            "{message}"
        );
        assert!(
            message.contains(&format!("spilled to {}", spill.display())),
            "{message}"
        );
        assert_eq!(spill::read(&spill).expect("spill file").len(), 3);
        lock.release();
        assert_eq!(stored(&db), 0);

        // Replayed by the next start, whatever its mode, before it serves.
        let durable = self::config(&db, &[]);
        let shutdown = Shutdown::new(durable.shutdown.clone());
        let telemetry = Telemetry::start(&durable, &shutdown)
            .await
            .expect("restart");
        assert_eq!(stored(&db), 3);
        assert!(!spill.exists(), "removed once replayed");
        assert_eq!(telemetry.lookup("b").await.status, 200);
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
    }

    #[tokio::test]
    async fn a_last_flush_slower_than_half_the_cleanup_timeout_is_spilled_in_time() {
        let db = TempDb::new("spill-in-time");
        // The lock outlasts every bound: the flusher is abandoned at its bound while
        // waiting for it, and the cleanup must spill before its own timeout.
        let config = config(
            &db,
            &[
                ("ACK_MODE", "buffered"),
                ("FLUSH_INTERVAL_MS", "3600000"),
                ("DATABASE_BUSY_TIMEOUT_MS", "10000"),
                ("SHUTDOWN_TASK_TIMEOUT", "0.1"),
                ("SHUTDOWN_CLEANUP_TIMEOUT", "2"),
            ],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("a")).await.status, 202);
        let lock = Lock::take(&db);
        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.tasks_abandoned, 1, "{report:?}");
        let CleanupStatus::Failed(message) = &report.cleanups[0].status else {
            panic!("the cleanup reports the spill, not a timeout: {report:?}");
        };
        assert!(message.contains("spilled to"), "{message}");
        let spilled: Vec<PathBuf> = spill::files(&db.0).expect("list");
        assert_eq!(spilled.len(), 1);
        assert_eq!(
            spill::read(&spilled[0])
                .expect("read")
                .first()
                .map(|r| r.id.as_str()),
            Some("a")
        );
        lock.release();
    }

    #[tokio::test]
    async fn a_spill_file_that_cannot_be_read_fails_the_start_and_is_kept() {
        let db = TempDb::new("bad-spill");
        drop(Store::open(&db.0).expect("create"));
        let spill = PathBuf::from(format!("{}.spill", db.0.display()));
        std::fs::write(&spill, "not json\n").expect("write");
        let config = config(&db, &[]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let err = Telemetry::start(&config, &shutdown)
            .await
            .expect_err("unreadable spill");
        let message = err.to_string();
        assert!(message.contains(&spill.display().to_string()), "{message}");
        assert!(message.contains("line 1"), "{message}");
        assert!(spill.exists(), "kept");
    }

    #[tokio::test]
    async fn the_database_cleanup_fails_when_acknowledged_events_cannot_be_written() {
        let db = TempDb::new("unwritable");
        let config = config(
            &db,
            &[("ACK_MODE", "buffered"), ("FLUSH_INTERVAL_MS", "3600000")],
        );
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("a")).await.status, 202);
        rusqlite::Connection::open(&db.0)
            .and_then(|conn| conn.execute_batch("DROP TABLE telemetry"))
            .expect("break the database");

        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.exit_code(), 4, "{report:?}");
        let CleanupStatus::Failed(message) = &report.cleanups[0].status else {
            panic!("{report:?}");
        };
        assert!(
            message.starts_with("1 acknowledged events could not be written"),
            "{message}"
        );
        assert!(message.contains("no such table"), "{message}");
    }

    // ----- both modes -----------------------------------------------------------------

    #[tokio::test]
    async fn invalid_bodies_store_nothing() {
        for mode in ["durable", "buffered"] {
            let db = TempDb::new(&format!("invalid-{mode}"));
            let config = config(&db, &[("ACK_MODE", mode)]);
            let shutdown = Shutdown::new(config.shutdown.clone());
            let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
            let reply = telemetry.ingest(br#"{"id":"a","value":1}"#).await;
            assert_eq!(reply.status, 400);
            let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error");
            assert!(
                json["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("missing field `satellite`")),
                "{json}"
            );
            assert_eq!(telemetry.ingest(&vec![b' '; 65 * 1024]).await.status, 413);
            assert_eq!(telemetry.buffered(), 0);
            shutdown.request_shutdown("test");
            assert_eq!(shutdown.run().await.exit_code(), 0);
            assert_eq!(stored(&db), 0);
        }
    }

    #[tokio::test]
    async fn once_the_database_is_closed_new_events_get_503_with_retry_after() {
        for mode in ["durable", "buffered"] {
            let db = TempDb::new(&format!("closed-{mode}"));
            let config = config(&db, &[("ACK_MODE", mode)]);
            let shutdown = Shutdown::new(config.shutdown.clone());
            let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
            shutdown.request_shutdown("test");
            assert_eq!(shutdown.run().await.exit_code(), 0);

            let reply = telemetry.ingest(&event("late")).await;
            assert_eq!(reply.status, 503, "{mode}");
            assert_eq!(reply.retry_after_secs, Some(10));
            assert_eq!(telemetry.lookup("late").await.status, 503);
            assert_eq!(stored(&db), 0);
        }
    }

    #[tokio::test]
    async fn a_failing_redis_does_not_lose_the_sqlite_write() {
        // A port that refuses connections: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let db = TempDb::new("redis-down");
        let config = config(&db, &[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("kept")).await.status, 202);

        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(stored(&db), 1);
    }

    #[tokio::test]
    async fn an_unopenable_database_fails_the_start() {
        let db = TempDb(std::env::temp_dir().join("telemetry-core-missing-dir/t.db"));
        let config = config(&db, &[]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let err = Telemetry::start(&config, &shutdown)
            .await
            .expect_err("no such directory");
        assert!(err.to_string().contains("t.db"), "{err}");
    }
}
