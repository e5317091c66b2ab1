//! [`Store`]: the SQLite table events are committed to.
//!
//! rusqlite is blocking: [`Telemetry`](crate::Telemetry) calls the store only from
//! `tokio::task::spawn_blocking`, never on the async workers.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::config::{DEFAULT_BUSY_TIMEOUT, Synchronous};
use crate::event::Record;

/// The schema, created when the database is opened.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS telemetry (
    id TEXT PRIMARY KEY,
    satellite TEXT NOT NULL,
    value REAL NOT NULL,
    received_at INTEGER NOT NULL
)";

/// A connection to the telemetry database.
///
/// The database is in WAL mode. With [`Synchronous::Full`] (the default) a committed
/// transaction is on disk (its WAL frames fsynced) when
/// [`insert_batch`](Self::insert_batch) returns, so it survives the process being
/// killed and the machine losing power; with [`Synchronous::Normal`] it is written to
/// the WAL file, which survives the process being killed. Readers do not block the
/// writer, and several processes may write to the same file (during an in-place
/// restart, say): a write waits up to the busy timeout for another connection's lock,
/// then fails with `SQLITE_BUSY`.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (and creates, if missing) the database at `path`, and the `telemetry`
    /// table in it, with the default busy timeout (5 s) and [`Synchronous::Full`].
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file when it cannot be opened or the table cannot be
    /// created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, DEFAULT_BUSY_TIMEOUT, Synchronous::Full)
    }

    /// Like [`open`](Self::open): a write waits up to `busy_timeout` for a lock held by
    /// another connection to the same file, and a commit returns as `synchronous`
    /// says.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(
        path: impl AsRef<Path>,
        busy_timeout: Duration,
        synchronous: Synchronous,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let error = |source| StoreError::sqlite("opening", &path, source);
        let conn = Connection::open(&path).map_err(error)?;
        conn.busy_timeout(busy_timeout).map_err(error)?;
        // WAL is a property of the file: set once, kept by every later connection. On
        // a file system without shared memory SQLite keeps its rollback journal, which
        // is as durable, only slower.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(error)?;
        let synchronous = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(error)?;
        conn.execute_batch(SCHEMA).map_err(error)?;
        Ok(Self { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts `records` in one transaction with `INSERT OR IGNORE`: an id already
    /// stored (or earlier in `records`) keeps its first row. Returns, for each record,
    /// whether its row is new. All or nothing: on an error no row of the batch is
    /// stored; once it returns `Ok`, every row is committed and on disk.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite fails (disk full, file removed, read-only, locked by
    /// another connection for longer than the busy timeout).
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<Vec<bool>, StoreError> {
        let error = |source| StoreError::sqlite("writing to", &self.path, source);
        // IMMEDIATE takes the write lock at `BEGIN`, where the busy timeout applies.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error)?;
        // In key order, each index page is visited once per batch instead of once per
        // row: a large batch in arrival (or hash) order touches more pages than
        // SQLite's cache holds. The sort is stable: of two rows with one id, the first
        // is still inserted first and kept.
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|&a, &b| records[a].id.cmp(&records[b].id));
        let mut inserted = vec![false; records.len()];
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO telemetry (id, satellite, value, received_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(error)?;
            for index in order {
                let record = &records[index];
                let rows = insert
                    .execute(params![
                        record.id,
                        record.satellite,
                        record.value,
                        record.received_at
                    ])
                    .map_err(error)?;
                inserted[index] = rows > 0;
            }
        }
        tx.commit().map_err(error)?;
        Ok(inserted)
    }

    /// The stored event with `id`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite fails.
    pub fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, satellite, value, received_at FROM telemetry WHERE id = ?1",
                [id],
                |row| {
                    Ok(Record {
                        id: row.get(0)?,
                        satellite: row.get(1)?,
                        value: row.get(2)?,
                        received_at: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|source| StoreError::sqlite("reading from", &self.path, source))
    }

    /// How many events are stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite fails.
    pub fn count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM telemetry", [], |row| row.get(0))
            .map_err(|source| StoreError::sqlite("reading from", &self.path, source))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Closes the connection, reporting an error that dropping it would hide.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite cannot close the file cleanly.
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.path;
        self.conn
            .close()
            .map_err(|(_, source)| StoreError::sqlite("closing", &path, source))
    }
}

/// The store shared by the writer, the flusher, the readers and the `database` cleanup:
/// every operation runs on a blocking thread (`spawn_blocking`), one at a time; `None`
/// once closed. A cheap [`Clone`].
#[derive(Debug, Clone)]
pub(crate) struct SharedStore(Arc<Mutex<Option<Store>>>);

impl SharedStore {
    pub(crate) fn new(store: Store) -> Self {
        Self(Arc::new(Mutex::new(Some(store))))
    }

    fn lock(store: &Mutex<Option<Store>>) -> MutexGuard<'_, Option<Store>> {
        // A panic inside SQLite calls leaves the connection usable or closed, never half
        // updated in Rust terms.
        store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the store, on a blocking thread.
    ///
    /// # Errors
    ///
    /// `work`'s error; [`StoreError::Closed`] once [`close`](Self::close) has run.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(&self.0);
        blocking(move || match Self::lock(&store).as_mut() {
            Some(store) => work(store),
            None => Err(StoreError::Closed),
        })
        .await
    }

    /// Runs `work` on the store on this thread, which may block: call it only from a
    /// thread of its own (the durable writer's).
    ///
    /// # Errors
    ///
    /// `work`'s error; [`StoreError::Closed`] once [`close`](Self::close) has run.
    pub(crate) fn run_here<T>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match Self::lock(&self.0).as_mut() {
            Some(store) => work(store),
            None => Err(StoreError::Closed),
        }
    }

    /// Closes the connection (after the operation under way, if any). Idempotent.
    ///
    /// # Errors
    ///
    /// The error of closing.
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let store = Arc::clone(&self.0);
        blocking(move || match Self::lock(&store).take() {
            Some(store) => store.close(),
            None => Ok(()),
        })
        .await
    }
}

/// Runs `work` on tokio's blocking threads.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Task(join.to_string()))?
}

/// A database operation failed, or the database is already closed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    Sqlite {
        /// What was being done: `opening`, `writing to`, `reading from`, `closing`.
        operation: &'static str,
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was closed by the shutdown's cleanup.
    Closed,
    /// The blocking task running the operation panicked or was cancelled.
    Task(String),
    /// The last flush before closing failed: acknowledged events were not written to
    /// the database.
    Unflushed {
        /// How many acknowledged events were not written.
        events: usize,
        /// Why the flush failed.
        source: Box<StoreError>,
        /// Where they were spilled (replayed at the next start), or why that failed too
        /// (then they are lost).
        spill: Result<PathBuf, String>,
    },
}

impl StoreError {
    fn sqlite(operation: &'static str, path: &Path, source: rusqlite::Error) -> Self {
        Self::Sqlite {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite {
                operation,
                path,
                source,
            } => write!(f, "{operation} the database {}: {source}", path.display()),
            Self::Closed => f.write_str("the database is closed"),
            Self::Task(message) => write!(f, "the database task failed: {message}"),
            Self::Unflushed {
                events,
                source,
                spill: Ok(path),
            } => write!(
                f,
                "{events} acknowledged events could not be written to the database ({source}); \
                 spilled to {}, to be replayed at the next start",
                path.display()
            ),
            Self::Unflushed {
                events,
                source,
                spill: Err(spill),
            } => write!(
                f,
                "{events} acknowledged events could not be written: {source}; \
                 spilling them failed too: {spill}"
            ),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Sqlite { source, .. } => Some(source),
            Self::Unflushed { source, .. } => Some(&**source),
            Self::Closed | Self::Task(_) => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::Event;

    /// A database path in the temporary directory, unique to this process and `name`,
    /// removed (with its journal) when dropped.
    #[derive(Debug)]
    pub(crate) struct TempDb(pub(crate) PathBuf);

    impl TempDb {
        pub(crate) fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("telemetry-core-{}-{name}.db", std::process::id()));
            let db = Self(path);
            db.remove();
            db
        }

        fn remove(&self) {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
            }
            for spill in crate::spill::files(&self.0).unwrap_or_default() {
                let _ = std::fs::remove_file(spill);
            }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            self.remove();
        }
    }

    pub(crate) fn record(id: &str, value: f64) -> Record {
        Record::new(
            Event {
                id: id.into(),
                satellite: "sat".into(),
                value,
            },
            1_000,
        )
    }

    #[test]
    fn a_repeated_id_is_stored_once_and_keeps_its_first_row() {
        let db = TempDb::new("dedup");
        let mut store = Store::open(&db.0).expect("open");
        assert_eq!(
            store
                .insert_batch(&[record("a", 1.0), record("b", 2.0), record("a", 3.0)])
                .expect("insert"),
            [true, true, false]
        );
        assert_eq!(
            store
                .insert_batch(&[record("b", 4.0), record("c", 5.0)])
                .expect("insert"),
            [false, true]
        );
        assert_eq!(store.count().expect("count"), 3);
        assert_eq!(store.get("a").expect("get"), Some(record("a", 1.0)));
        assert_eq!(store.get("b").expect("get"), Some(record("b", 2.0)));
        assert_eq!(store.get("missing").expect("get"), None);
        store.close().expect("close");
    }

    #[test]
    fn rows_survive_reopening() {
        let db = TempDb::new("reopen");
        let mut store = Store::open(&db.0).expect("open");
        store.insert_batch(&[record("kept", 9.5)]).expect("insert");
        store.close().expect("close");

        let store = Store::open(&db.0).expect("reopen");
        assert_eq!(store.get("kept").expect("get"), Some(record("kept", 9.5)));
        assert_eq!(store.path(), db.0.as_path());
    }

    #[test]
    fn the_database_is_in_wal_mode_and_a_batch_waits_out_a_short_lock() {
        let db = TempDb::new("wal");
        let mut store =
            Store::open_with(&db.0, Duration::from_secs(10), Synchronous::Full).expect("open");
        let other = Connection::open(&db.0).expect("second connection");
        let mode: String = other
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
        let synchronous: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .expect("synchronous");
        assert_eq!(synchronous, 2, "FULL");

        other.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.execute_batch("COMMIT").expect("unlock");
        });
        assert_eq!(
            store.insert_batch(&[record("a", 1.0)]).expect("waited"),
            [true]
        );
        release.join().expect("unlocking thread");
    }

    #[test]
    fn a_batch_locked_out_past_the_busy_timeout_fails_and_stores_nothing() {
        let db = TempDb::new("busy");
        let mut store =
            Store::open_with(&db.0, Duration::from_millis(50), Synchronous::Normal).expect("open");
        let synchronous: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .expect("synchronous");
        assert_eq!(synchronous, 1, "NORMAL");
        let other = Connection::open(&db.0).expect("second connection");
        other.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let err = store
            .insert_batch(&[record("a", 1.0), record("b", 2.0)])
            .expect_err("locked");
        assert!(err.to_string().contains("writing to the database"), "{err}");
        assert!(err.to_string().contains("locked"), "{err}");
        other.execute_batch("COMMIT").expect("unlock");
        assert_eq!(store.count().expect("count"), 0);
        assert_eq!(
            store.insert_batch(&[record("b", 2.0)]).expect("unlocked"),
            [true]
        );
    }

    #[test]
    fn an_unopenable_path_is_an_error_naming_the_file() {
        let path = std::env::temp_dir().join("telemetry-core-no-such-dir/x/y.db");
        let err = Store::open(&path).expect_err("missing directory");
        assert!(err.to_string().contains("opening the database"), "{err}");
        assert!(err.to_string().contains("y.db"), "{err}");
    }
}
