//! [`Telemetry`]: the handle the HTTP handlers call, and the write-behind flusher.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shutdown_core::{CancellationToken, Shutdown};
use tracing::{error, info, warn};

use crate::buffer::{Accepted, WriteBehind};
use crate::config::Config;
use crate::event::{Event, Record};
use crate::metrics as names;
use crate::redis::Publisher;
use crate::reply::Reply;
use crate::store::{Store, StoreError};

/// The telemetry service's state: the write-behind buffer, the SQLite store behind it,
/// and the optional Redis publisher. A cheap [`Clone`] (one reference count).
///
/// # Zero loss
///
/// An event is acknowledged (`202`) once it is in the buffer. It reaches SQLite by the
/// flusher, a background task that writes the buffer every `FLUSH_INTERVAL_MS` and,
/// when the shutdown cancels [`Shutdown::token`] (after the drain: no acknowledged
/// write can arrive any more), writes what is left and returns. The `database`
/// cleanup task, registered first so that it runs last, refuses new events, writes
/// whatever is still buffered (the flusher may have been abandoned at its bound) and
/// only then closes the database; if that last write fails, the cleanup fails and the
/// process exits with the cleanup-failed code.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    buffer: WriteBehind,
    /// Locked only on blocking threads (`spawn_blocking`); `None` once closed.
    store: Arc<Mutex<Option<Store>>>,
    /// Flushes must not overlap (flusher, cleanup, callers of `flush`).
    flush_lock: tokio::sync::Mutex<()>,
    redis: Option<Publisher>,
    retry_after_secs: u64,
}

impl Telemetry {
    /// Opens the store, registers the `database` cleanup task (first, so that it runs
    /// last), starts the Redis publisher when `REDIS_URL` is set (with its `redis`
    /// cleanup task), and spawns the flusher on `shutdown`'s tracker.
    ///
    /// Call it once, before serving, from within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the database cannot be opened. A Redis that cannot be
    /// reached is not an error: it is logged and retried.
    pub async fn start(config: &Config, shutdown: &Shutdown) -> Result<Self, StartError> {
        let path = config.database_path.clone();
        let store = blocking(move || Store::open(path))
            .await
            .map_err(StartError::Database)?;
        info!(path = %store.path().display(), "database opened");

        let store = Arc::new(Mutex::new(Some(store)));
        let redis = match &config.redis {
            Some(url) => Some(Publisher::start(url.clone(), shutdown).await),
            None => None,
        };
        let telemetry = Self {
            inner: Arc::new(Inner {
                buffer: WriteBehind::new(),
                store,
                flush_lock: tokio::sync::Mutex::new(()),
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
        shutdown.spawn(flusher(
            telemetry.clone(),
            config.flush_interval,
            shutdown.token(),
        ));
        Ok(telemetry)
    }

    /// `POST /telemetry`: validates `body` and buffers the event. `202` once buffered
    /// (a repeated id is acknowledged again but kept once), `400` or `413` with a JSON
    /// error, `503` with `Retry-After` once the database is closing.
    pub fn ingest(&self, body: &[u8]) -> Reply {
        let event = match Event::from_json(body) {
            Ok(event) => event,
            Err(invalid) => return Reply::error(invalid.status(), &invalid.to_string()),
        };
        let record = Record::received_now(event);
        let id = record.id.clone();
        let published = self.inner.redis.as_ref().map(|_| record.to_json());
        match self.inner.buffer.accept(record) {
            Ok(Accepted::New) => {
                ::metrics::counter!(names::EVENTS_ACCEPTED).increment(1);
                ::metrics::gauge!(names::EVENTS_BUFFERED).increment(1.0);
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
            Err(_closed) => Reply::unavailable(self.inner.retry_after_secs),
        }
    }

    /// The event with `id`, buffered or stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when it is not buffered and the store cannot be read (or is
    /// closed).
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        if let Some(record) = self.inner.buffer.get(id) {
            return Ok(Some(record));
        }
        let store = Arc::clone(&self.inner.store);
        let id = id.to_owned();
        // An event leaves the buffer only after its flush committed: looking in the
        // buffer first, then in the store, cannot miss it.
        blocking(move || match lock(&store).as_ref() {
            Some(store) => store.get(&id),
            None => Err(StoreError::Closed),
        })
        .await
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

    /// Writes the buffered events to the store in one transaction and returns how many
    /// were written. On an error they stay buffered, to be retried by the next flush.
    /// Cancel-safe in the same sense: a flush dropped midway is retried (a repeated
    /// insert is ignored).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite fails or the store is closed.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let _flushing = self.inner.flush_lock.lock().await;
        let batch = self.inner.buffer.begin_flush();
        if batch.is_empty() {
            return Ok(0);
        }
        let events = batch.len();
        let store = Arc::clone(&self.inner.store);
        let written = blocking(move || match lock(&store).as_mut() {
            Some(store) => store.insert_batch(&batch),
            None => Err(StoreError::Closed),
        })
        .await;
        match written {
            Ok(inserted) => {
                self.inner.buffer.flushed();
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

    /// Events accepted and not yet committed to the store.
    pub fn buffered(&self) -> usize {
        self.inner.buffer.len()
    }

    /// The `database` cleanup: refuses new events, writes what is still buffered, and
    /// closes the store. Fails, naming how many acknowledged events could not be
    /// written, when the last flush fails.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unflushed`] when buffered events could not be written (the store
    /// is left open: nothing more can be done with them), or the error of closing.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.buffer.close();
        if let Err(error) = self.flush().await {
            let events = self.inner.buffer.len();
            error!(events, error = %error, "acknowledged events could not be written");
            return Err(StoreError::Unflushed {
                events,
                source: Box::new(error),
            });
        }
        let store = Arc::clone(&self.inner.store);
        blocking(move || match lock(&store).take() {
            Some(store) => store.close(),
            None => Ok(()),
        })
        .await?;
        info!("database closed");
        Ok(())
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("buffered", &self.buffered())
            .field("closed", &self.inner.buffer.is_closed())
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
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

fn lock(store: &Mutex<Option<Store>>) -> std::sync::MutexGuard<'_, Option<Store>> {
    // A panic inside SQLite calls leaves the connection usable or closed, never half
    // updated in Rust terms.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Task(join.to_string()))?
}

/// The service could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The database could not be opened.
    Database(StoreError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(error) => error.fmt(f),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Database(error) => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use shutdown_core::CleanupStatus;

    use super::*;
    use crate::redis::tests::fake_redis;
    use crate::store::tests::TempDb;

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

    #[tokio::test]
    async fn events_buffered_when_the_token_is_cancelled_are_stored_before_the_database_closes() {
        let db = TempDb::new("flush-on-cancel");
        // The flusher's period never comes: only the flush on cancellation writes.
        let config = config(&db, &[("FLUSH_INTERVAL_MS", "3600000")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        for i in 0..100 {
            assert_eq!(telemetry.ingest(&event(&format!("e{i}"))).status, 202);
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
        let config = config(&db, &[("FLUSH_INTERVAL_MS", "20")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("a")).status, 202);
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
        let config = config(&db, &[("FLUSH_INTERVAL_MS", "3600000")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");

        assert_eq!(telemetry.ingest(&event("a")).status, 202);
        let duplicate = telemetry.ingest(br#"{"id":"a","satellite":"other","value":9}"#);
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
    async fn invalid_bodies_store_nothing() {
        let db = TempDb::new("invalid");
        let config = config(&db, &[]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        let reply = telemetry.ingest(br#"{"id":"a","value":1}"#);
        assert_eq!(reply.status, 400);
        let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error");
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("missing field `satellite`")),
            "{json}"
        );
        assert_eq!(telemetry.ingest(&vec![b' '; 65 * 1024]).status, 413);
        assert_eq!(telemetry.buffered(), 0);
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);
        assert_eq!(stored(&db), 0);
    }

    #[tokio::test]
    async fn once_the_database_is_closed_new_events_get_503_with_retry_after() {
        let db = TempDb::new("closed");
        let config = config(&db, &[]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        shutdown.request_shutdown("test");
        assert_eq!(shutdown.run().await.exit_code(), 0);

        let reply = telemetry.ingest(&event("late"));
        assert_eq!(reply.status, 503);
        assert_eq!(reply.retry_after_secs, Some(10));
        assert_eq!(telemetry.lookup("late").await.status, 503);
        assert_eq!(stored(&db), 0);
    }

    #[tokio::test]
    async fn the_database_cleanup_fails_when_acknowledged_events_cannot_be_written() {
        let db = TempDb::new("unwritable");
        let config = config(&db, &[("FLUSH_INTERVAL_MS", "3600000")]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("a")).status, 202);
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
    }

    #[tokio::test]
    async fn with_redis_each_event_is_published_and_redis_closes_before_the_database() {
        let (url, mut commands) = fake_redis().await;
        let db = TempDb::new("redis");
        let config = config(&db, &[("REDIS_URL", &url.to_string())]);
        let shutdown = Shutdown::new(config.shutdown.clone());
        let telemetry = Telemetry::start(&config, &shutdown).await.expect("start");
        assert_eq!(telemetry.ingest(&event("r1")).status, 202);
        assert_eq!(telemetry.ingest(&event("r2")).status, 202);
        assert_eq!(telemetry.ingest(&event("r1")).status, 202, "duplicate");

        shutdown.request_shutdown("test");
        let report = shutdown.run().await;
        assert_eq!(report.exit_code(), 0, "{report:?}");
        assert_eq!(cleanup_names(&report), ["redis", "database"]);

        let mut received = Vec::new();
        while let Ok(command) = commands.try_recv() {
            received.push(command);
        }
        let names: Vec<&str> = received.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(names, ["PUBLISH", "PUBLISH", "QUIT"], "{received:?}");
        assert_eq!(received[0][1], "telemetry");
        let published: serde_json::Value =
            serde_json::from_str(&received[0][2]).expect("published JSON");
        assert_eq!(published["id"], "r1");
        assert_eq!(published["satellite"], "sat-1");
        assert_eq!(stored(&db), 2);
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
        assert_eq!(telemetry.ingest(&event("kept")).status, 202);

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
