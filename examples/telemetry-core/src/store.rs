//! [`Store`]: the SQLite table the write-behind buffer is flushed into.
//!
//! rusqlite is blocking: [`Telemetry`](crate::Telemetry) calls the store only from
//! `tokio::task::spawn_blocking`, never on the async workers.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::event::Record;

/// The schema, created when the database is opened.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS telemetry (
    id TEXT PRIMARY KEY,
    satellite TEXT NOT NULL,
    value REAL NOT NULL,
    received_at INTEGER NOT NULL
)";

/// How long a statement waits for a lock held by another connection to the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the telemetry database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (and creates, if missing) the database at `path`, and the `telemetry`
    /// table in it.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file when it cannot be opened or the table cannot be
    /// created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let error = |source| StoreError::sqlite("opening", &path, source);
        let conn = Connection::open(&path).map_err(error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
        conn.execute_batch(SCHEMA).map_err(error)?;
        Ok(Self { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts `records` in one transaction with `INSERT OR IGNORE`: an id already
    /// stored keeps its first row. Returns how many rows were new. All or nothing: on
    /// an error no row of the batch is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when SQLite fails (disk full, file removed, locked too long).
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<usize, StoreError> {
        let error = |source| StoreError::sqlite("writing to", &self.path, source);
        let tx = self.conn.transaction().map_err(error)?;
        let mut inserted = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO telemetry (id, satellite, value, received_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(error)?;
            for record in records {
                inserted += insert
                    .execute(params![
                        record.id,
                        record.satellite,
                        record.value,
                        record.received_at
                    ])
                    .map_err(error)?;
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
    /// The last flush before closing failed: acknowledged events were not written.
    Unflushed {
        /// How many acknowledged events are still only in memory.
        events: usize,
        /// Why the flush failed.
        source: Box<StoreError>,
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
            Self::Unflushed { events, source } => write!(
                f,
                "{events} acknowledged events could not be written: {source}"
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
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_file(self.0.with_extension("db-journal"));
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
            2
        );
        assert_eq!(
            store
                .insert_batch(&[record("b", 4.0), record("c", 5.0)])
                .expect("insert"),
            1
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
    fn an_unopenable_path_is_an_error_naming_the_file() {
        let path = std::env::temp_dir().join("telemetry-core-no-such-dir/x/y.db");
        let err = Store::open(&path).expect_err("missing directory");
        assert!(err.to_string().contains("opening the database"), "{err}");
        assert!(err.to_string().contains("y.db"), "{err}");
    }
}
