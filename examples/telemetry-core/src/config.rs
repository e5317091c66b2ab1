//! [`Config`]: the demo service's settings, from the environment.

use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shutdown_core::ShutdownConfig;

/// Environment variable for the address to listen on.
pub const ENV_BIND_ADDR: &str = "BIND_ADDR";
/// Environment variable for the SQLite database file.
pub const ENV_DATABASE_PATH: &str = "DATABASE_PATH";
/// Environment variable for the period of the write-behind flusher, in milliseconds.
pub const ENV_FLUSH_INTERVAL_MS: &str = "FLUSH_INTERVAL_MS";
/// Environment variable for the optional Redis server (`redis://host:port`).
pub const ENV_REDIS_URL: &str = "REDIS_URL";
/// Environment variable for when `POST /telemetry` answers `202`: `durable` or
/// `buffered` ([`AckMode`]).
pub const ENV_ACK_MODE: &str = "ACK_MODE";
/// Environment variable for the most events accepted and not yet committed to SQLite.
pub const ENV_BUFFER_CAPACITY: &str = "BUFFER_CAPACITY";
/// Environment variable for the most events committed in one transaction.
pub const ENV_COMMIT_BATCH: &str = "COMMIT_BATCH";
/// Environment variable for how long the durable writer gathers events into a batch,
/// in milliseconds.
pub const ENV_COMMIT_WINDOW_MS: &str = "COMMIT_WINDOW_MS";
/// Environment variable for how long a write waits for a lock held by another
/// connection to the database, in milliseconds.
pub const ENV_DATABASE_BUSY_TIMEOUT_MS: &str = "DATABASE_BUSY_TIMEOUT_MS";
/// Environment variable for when a commit returns: `full` or `normal`
/// ([`Synchronous`]).
pub const ENV_DATABASE_SYNCHRONOUS: &str = "DATABASE_SYNCHRONOUS";

/// The default of `BIND_ADDR`.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";
/// The default of `DATABASE_PATH`.
pub const DEFAULT_DATABASE_PATH: &str = "telemetry.db";
/// The default of `FLUSH_INTERVAL_MS`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// The largest `FLUSH_INTERVAL_MS` accepted: one hour.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The default of `BUFFER_CAPACITY`.
pub const DEFAULT_BUFFER_CAPACITY: usize = 10_000;
/// The largest `BUFFER_CAPACITY` accepted.
pub const MAX_BUFFER_CAPACITY: usize = 1_000_000;
/// The default of `COMMIT_BATCH`.
pub const DEFAULT_COMMIT_BATCH: usize = 1_000;
/// The largest `COMMIT_BATCH` accepted.
pub const MAX_COMMIT_BATCH: usize = 100_000;
/// The default of `COMMIT_WINDOW_MS`.
pub const DEFAULT_COMMIT_WINDOW: Duration = Duration::ZERO;
/// The largest `COMMIT_WINDOW_MS` accepted: one second.
pub const MAX_COMMIT_WINDOW: Duration = Duration::from_secs(1);
/// The default of `DATABASE_BUSY_TIMEOUT_MS`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest `DATABASE_BUSY_TIMEOUT_MS` accepted: one hour.
pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The Redis port when `REDIS_URL` names none.
const DEFAULT_REDIS_PORT: u16 = 6379;

/// Everything the demo service reads from its environment.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `BIND_ADDR` | socket address to listen on; port 0 picks a free port | `127.0.0.1:8080` |
/// | `DATABASE_PATH` | SQLite database file, created if missing | `telemetry.db` |
/// | `FLUSH_INTERVAL_MS` | period of the write-behind flusher, milliseconds (1..=3600000) | 200 |
/// | `REDIS_URL` | `redis://host[:port][/db]`: publish each accepted event | unset: no Redis |
/// | `ACK_MODE` | `durable`: `202` once committed; `buffered`: `202` once in memory ([`AckMode`]) | `durable` |
/// | `BUFFER_CAPACITY` | most events accepted and not yet committed; more get `503` (1..=1000000) | 10000 |
/// | `COMMIT_BATCH` | most events in one transaction (1..=100000) | 1000 |
/// | `COMMIT_WINDOW_MS` | `durable`: how long the writer waits for more events before committing, milliseconds (0..=1000) | 0 |
/// | `DATABASE_BUSY_TIMEOUT_MS` | how long a write waits for another connection's lock, milliseconds (0..=3600000) | 5000 |
/// | `DATABASE_SYNCHRONOUS` | `full`: a commit is fsynced; `normal`: written, fsynced at checkpoints ([`Synchronous`]) | `full` |
/// | `SHUTDOWN_*` | the shutdown deadlines, see [`ShutdownConfig::from_env`] | |
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `BIND_ADDR`.
    pub bind_addr: SocketAddr,
    /// `DATABASE_PATH`.
    pub database_path: PathBuf,
    /// `FLUSH_INTERVAL_MS`.
    pub flush_interval: Duration,
    /// `REDIS_URL`, when set.
    pub redis: Option<RedisUrl>,
    /// `ACK_MODE`.
    pub ack_mode: AckMode,
    /// `BUFFER_CAPACITY`.
    pub buffer_capacity: usize,
    /// `COMMIT_BATCH`.
    pub commit_batch: usize,
    /// `COMMIT_WINDOW_MS`.
    pub commit_window: Duration,
    /// `DATABASE_BUSY_TIMEOUT_MS`.
    pub busy_timeout: Duration,
    /// `DATABASE_SYNCHRONOUS`.
    pub synchronous: Synchronous,
    /// The `SHUTDOWN_*` variables.
    pub shutdown: ShutdownConfig,
}

impl Config {
    /// Reads the configuration from the process environment. An unset variable keeps
    /// its default; a set but malformed one is an error naming the variable and the
    /// value, never replaced by the default silently.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use telemetry_core::Config;
    ///
    /// let config = Config::from_lookup(|name| match name {
    ///     "BIND_ADDR" => Some("127.0.0.1:0".into()),
    ///     "FLUSH_INTERVAL_MS" => Some("50".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.bind_addr.port(), 0);
    /// assert_eq!(config.flush_interval, Duration::from_millis(50));
    ///
    /// let err = Config::from_lookup(|name| (name == "FLUSH_INTERVAL_MS").then(|| "abc".into()))
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), r#"FLUSH_INTERVAL_MS="abc": expected milliseconds, e.g. 200"#);
    /// # Ok::<(), telemetry_core::ConfigError>(())
    /// ```
    pub fn from_lookup<F>(mut lookup: F) -> Result<Self, ConfigError>
    where
        F: FnMut(&str) -> Option<OsString>,
    {
        let bind_addr = match lookup(ENV_BIND_ADDR) {
            Some(raw) => parse_bind_addr(raw)?,
            None => DEFAULT_BIND_ADDR
                .parse()
                .map_err(|_| invalid(ENV_BIND_ADDR, DEFAULT_BIND_ADDR, BIND_ADDR_EXPECTED))?,
        };
        let database_path = match lookup(ENV_DATABASE_PATH) {
            Some(raw) if raw.is_empty() => {
                return Err(invalid(ENV_DATABASE_PATH, "", "expected a file path"));
            }
            Some(raw) => PathBuf::from(raw),
            None => PathBuf::from(DEFAULT_DATABASE_PATH),
        };
        let flush_interval = match lookup(ENV_FLUSH_INTERVAL_MS) {
            Some(raw) => parse_flush_interval(raw)?,
            None => DEFAULT_FLUSH_INTERVAL,
        };
        let redis = lookup(ENV_REDIS_URL)
            .map(|raw| RedisUrl::parse(&text(ENV_REDIS_URL, raw, REDIS_EXPECTED)?))
            .transpose()?;
        let ack_mode = match lookup(ENV_ACK_MODE) {
            Some(raw) => AckMode::parse(raw)?,
            None => AckMode::Durable,
        };
        let buffer_capacity = match lookup(ENV_BUFFER_CAPACITY) {
            Some(raw) => whole(
                ENV_BUFFER_CAPACITY,
                raw,
                1..=MAX_BUFFER_CAPACITY as u64,
                "expected a number of events from 1 to 1000000, e.g. 10000",
            )?,
            None => DEFAULT_BUFFER_CAPACITY as u64,
        };
        let commit_batch = match lookup(ENV_COMMIT_BATCH) {
            Some(raw) => whole(
                ENV_COMMIT_BATCH,
                raw,
                1..=MAX_COMMIT_BATCH as u64,
                "expected a number of events from 1 to 100000, e.g. 1000",
            )?,
            None => DEFAULT_COMMIT_BATCH as u64,
        };
        let commit_window = match lookup(ENV_COMMIT_WINDOW_MS) {
            Some(raw) => Duration::from_millis(whole(
                ENV_COMMIT_WINDOW_MS,
                raw,
                0..=millis(MAX_COMMIT_WINDOW),
                "expected milliseconds from 0 to 1000, e.g. 2",
            )?),
            None => DEFAULT_COMMIT_WINDOW,
        };
        let busy_timeout = match lookup(ENV_DATABASE_BUSY_TIMEOUT_MS) {
            Some(raw) => Duration::from_millis(whole(
                ENV_DATABASE_BUSY_TIMEOUT_MS,
                raw,
                0..=millis(MAX_BUSY_TIMEOUT),
                "expected milliseconds from 0 to 3600000, e.g. 5000",
            )?),
            None => DEFAULT_BUSY_TIMEOUT,
        };
        let synchronous = match lookup(ENV_DATABASE_SYNCHRONOUS) {
            Some(raw) => Synchronous::parse(raw)?,
            None => Synchronous::Full,
        };
        let shutdown = ShutdownConfig::from_lookup(lookup).map_err(ConfigError::Shutdown)?;
        Ok(Self {
            bind_addr,
            database_path,
            flush_interval,
            redis,
            ack_mode,
            // Both bounds are at most `MAX_*`, far below `usize::MAX` on any target.
            buffer_capacity: usize::try_from(buffer_capacity).unwrap_or(MAX_BUFFER_CAPACITY),
            commit_batch: usize::try_from(commit_batch).unwrap_or(MAX_COMMIT_BATCH),
            commit_window,
            busy_timeout,
            synchronous,
            shutdown,
        })
    }
}

const BIND_ADDR_EXPECTED: &str = "expected a socket address, e.g. 127.0.0.1:8080 or [::]:0";
const REDIS_EXPECTED: &str = "expected redis://host:port, e.g. redis://127.0.0.1:6379";

fn text(
    variable: &'static str,
    raw: OsString,
    expected: &'static str,
) -> Result<String, ConfigError> {
    raw.into_string()
        .map_err(|raw| invalid(variable, &raw.to_string_lossy(), expected))
}

fn parse_bind_addr(raw: OsString) -> Result<SocketAddr, ConfigError> {
    let text = text(ENV_BIND_ADDR, raw, BIND_ADDR_EXPECTED)?;
    text.trim()
        .parse()
        .map_err(|_| invalid(ENV_BIND_ADDR, &text, BIND_ADDR_EXPECTED))
}

fn parse_flush_interval(raw: OsString) -> Result<Duration, ConfigError> {
    const EXPECTED: &str = "expected milliseconds, e.g. 200";
    let text = text(ENV_FLUSH_INTERVAL_MS, raw, EXPECTED)?;
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let expected = if trimmed.starts_with('-') {
            "must be positive; expected milliseconds, e.g. 200"
        } else {
            EXPECTED
        };
        return Err(invalid(ENV_FLUSH_INTERVAL_MS, &text, expected));
    }
    let too_large = "too large; expected milliseconds up to 3600000 (one hour)";
    let Ok(ms) = trimmed.parse::<u64>() else {
        return Err(invalid(ENV_FLUSH_INTERVAL_MS, &text, too_large));
    };
    let interval = Duration::from_millis(ms);
    if interval.is_zero() {
        return Err(invalid(
            ENV_FLUSH_INTERVAL_MS,
            &text,
            "must be positive; expected milliseconds, e.g. 200",
        ));
    }
    if interval > MAX_FLUSH_INTERVAL {
        return Err(invalid(ENV_FLUSH_INTERVAL_MS, &text, too_large));
    }
    Ok(interval)
}

/// A whole number in `range`; any other value is an error saying `expected`.
fn whole(
    variable: &'static str,
    raw: OsString,
    range: std::ops::RangeInclusive<u64>,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    let text = text(variable, raw, expected)?;
    let trimmed = text.trim();
    trimmed
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| trimmed.parse::<u64>().ok())
        .flatten()
        .filter(|n| range.contains(n))
        .ok_or_else(|| invalid(variable, &text, expected))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// When `POST /telemetry` answers `202` (`ACK_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// `durable`: once the event is committed to SQLite. Writers are grouped: one
    /// transaction commits the events that arrived while the previous one committed
    /// (at most `COMMIT_BATCH`), and answers all of them. Nothing acknowledged is lost,
    /// whatever happens to the process afterwards.
    #[default]
    Durable,
    /// `buffered`: once the event is in memory; the flusher commits it within
    /// `FLUSH_INTERVAL_MS`. Faster to answer, but a process killed (`SIGKILL`, the OOM
    /// killer, a crash) loses what it acknowledged since the last flush. A graceful
    /// shutdown writes it, or spills it to a file beside the database when the
    /// database cannot be written.
    Buffered,
}

impl AckMode {
    const EXPECTED: &str = "expected durable or buffered";

    fn parse(raw: OsString) -> Result<Self, ConfigError> {
        let text = text(ENV_ACK_MODE, raw, Self::EXPECTED)?;
        match text.trim() {
            "durable" => Ok(Self::Durable),
            "buffered" => Ok(Self::Buffered),
            _ => Err(invalid(ENV_ACK_MODE, &text, Self::EXPECTED)),
        }
    }

    /// `durable` or `buffered`, as in `ACK_MODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Durable => "durable",
            Self::Buffered => "buffered",
        }
    }
}

impl fmt::Display for AckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a commit returns (`DATABASE_SYNCHRONOUS`): SQLite's `synchronous` setting, in
/// WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `full`: once the transaction is written to the WAL file and the file is fsynced.
    /// A committed event survives the process being killed, the operating system
    /// crashing and the machine losing power.
    #[default]
    Full,
    /// `normal`: once the transaction is written to the WAL file; the file is fsynced
    /// at checkpoints. A committed event survives the process being killed (`SIGKILL`,
    /// the OOM killer, a crash); an operating system crash or a power loss may undo
    /// the last commits. Commits are about twice as fast on a disk with a costly
    /// fsync.
    Normal,
}

impl Synchronous {
    const EXPECTED: &str = "expected full or normal";

    fn parse(raw: OsString) -> Result<Self, ConfigError> {
        let text = text(ENV_DATABASE_SYNCHRONOUS, raw, Self::EXPECTED)?;
        match text.trim() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(invalid(ENV_DATABASE_SYNCHRONOUS, &text, Self::EXPECTED)),
        }
    }

    /// `full` or `normal`, as in `DATABASE_SYNCHRONOUS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn invalid(variable: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        variable,
        value: value.to_owned(),
        expected,
    }
}

/// Where the Redis server is: `redis://host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    host: String,
    port: u16,
    db: u32,
}

impl RedisUrl {
    /// Parses `redis://host[:port][/db]` (port 6379 and database 0 by default; an IPv6
    /// host in brackets). The error names `REDIS_URL`.
    ///
    /// ```
    /// use telemetry_core::RedisUrl;
    ///
    /// let url = RedisUrl::parse("redis://127.0.0.1:6380/2")?;
    /// assert_eq!((url.host(), url.port(), url.db()), ("127.0.0.1", 6380, 2));
    /// assert!(RedisUrl::parse("http://localhost").is_err());
    /// # Ok::<(), telemetry_core::ConfigError>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let error = || invalid(ENV_REDIS_URL, url, REDIS_EXPECTED);
        let rest = url.trim().strip_prefix("redis://").ok_or_else(error)?;
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (authority, db.parse().map_err(|_| error())?),
            None => (rest, 0),
        };
        if authority.contains('@') {
            return Err(invalid(
                ENV_REDIS_URL,
                url,
                "credentials are not supported; expected redis://host:port",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(error)?;
            match after.strip_prefix(':') {
                Some(port) => (host, port.parse().map_err(|_| error())?),
                None if after.is_empty() => (host, DEFAULT_REDIS_PORT),
                None => return Err(error()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| error())?),
                None => (authority, DEFAULT_REDIS_PORT),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(error());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            db,
        })
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number (`SELECT`ed after connecting when not 0).
    pub fn db(&self) -> u32 {
        self.db
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "redis://[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// A configuration value that could not be used: the message names the variable and
/// the value, e.g. `FLUSH_INTERVAL_MS="abc": expected milliseconds, e.g. 200`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `SHUTDOWN_*` variable.
    Shutdown(shutdown_core::ConfigError),
    /// One of the demo's own variables.
    Invalid {
        /// The variable, e.g. `BIND_ADDR`.
        variable: &'static str,
        /// The value as it was set (lossily converted when it was not UTF-8).
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
}

impl ConfigError {
    /// The variable that held the bad value.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Shutdown(error) => error.variable(),
            Self::Invalid { variable, .. } => variable,
        }
    }

    /// The value as it was set.
    pub fn value(&self) -> &str {
        match self {
            Self::Shutdown(error) => error.value(),
            Self::Invalid { value, .. } => value,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown(error) => error.fmt(f),
            Self::Invalid {
                variable,
                value,
                expected,
            } => write!(f, "{variable}={value:?}: {expected}"),
        }
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Shutdown(error) => Some(error),
            Self::Invalid { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(variable: &'static str, value: &str) -> Result<Config, ConfigError> {
        let value = OsString::from(value);
        Config::from_lookup(move |name| (name == variable).then(|| value.clone()))
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let config = Config::from_lookup(|_| None).expect("defaults");
        assert_eq!(config.bind_addr.to_string(), DEFAULT_BIND_ADDR);
        assert_eq!(config.database_path, PathBuf::from("telemetry.db"));
        assert_eq!(config.flush_interval, Duration::from_millis(200));
        assert_eq!(config.redis, None);
        assert_eq!(config.ack_mode, AckMode::Durable);
        assert_eq!(config.buffer_capacity, 10_000);
        assert_eq!(config.commit_batch, 1_000);
        assert_eq!(config.commit_window, Duration::ZERO);
        assert_eq!(config.busy_timeout, Duration::from_secs(5));
        assert_eq!(config.synchronous, Synchronous::Full);
        assert_eq!(config.shutdown, ShutdownConfig::new());
    }

    #[test]
    fn good_values_parse() {
        assert_eq!(
            with(ENV_BIND_ADDR, "0.0.0.0:0").map(|c| c.bind_addr.to_string()),
            Ok("0.0.0.0:0".to_owned())
        );
        assert_eq!(
            with(ENV_BIND_ADDR, "[::1]:9000").map(|c| c.bind_addr.port()),
            Ok(9000)
        );
        assert_eq!(
            with(ENV_DATABASE_PATH, "/tmp/x.db").map(|c| c.database_path),
            Ok(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(
            with(ENV_FLUSH_INTERVAL_MS, " 1 ").map(|c| c.flush_interval),
            Ok(Duration::from_millis(1))
        );
        assert_eq!(
            with(ENV_FLUSH_INTERVAL_MS, "3600000").map(|c| c.flush_interval),
            Ok(MAX_FLUSH_INTERVAL)
        );
        assert_eq!(
            with("SHUTDOWN_TIMEOUT", "2.5").map(|c| c.shutdown.drain_timeout()),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(
            with(ENV_ACK_MODE, " buffered ").map(|c| c.ack_mode),
            Ok(AckMode::Buffered)
        );
        assert_eq!(
            with(ENV_ACK_MODE, "durable").map(|c| c.ack_mode),
            Ok(AckMode::Durable)
        );
        assert_eq!(
            with(ENV_BUFFER_CAPACITY, "1").map(|c| c.buffer_capacity),
            Ok(1)
        );
        assert_eq!(
            with(ENV_BUFFER_CAPACITY, "1000000").map(|c| c.buffer_capacity),
            Ok(MAX_BUFFER_CAPACITY)
        );
        assert_eq!(with(ENV_COMMIT_BATCH, "1").map(|c| c.commit_batch), Ok(1));
        assert_eq!(
            with(ENV_COMMIT_WINDOW_MS, "0").map(|c| c.commit_window),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            with(ENV_COMMIT_WINDOW_MS, "1000").map(|c| c.commit_window),
            Ok(MAX_COMMIT_WINDOW)
        );
        assert_eq!(
            with(ENV_DATABASE_BUSY_TIMEOUT_MS, "250").map(|c| c.busy_timeout),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            with(ENV_DATABASE_SYNCHRONOUS, "normal").map(|c| c.synchronous),
            Ok(Synchronous::Normal)
        );
        assert_eq!(
            with(ENV_DATABASE_SYNCHRONOUS, "full").map(|c| c.synchronous),
            Ok(Synchronous::Full)
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases = [
            (
                ENV_FLUSH_INTERVAL_MS,
                "abc",
                r#"FLUSH_INTERVAL_MS="abc": expected milliseconds, e.g. 200"#,
            ),
            (
                ENV_FLUSH_INTERVAL_MS,
                "0",
                r#"FLUSH_INTERVAL_MS="0": must be positive; expected milliseconds, e.g. 200"#,
            ),
            (
                ENV_FLUSH_INTERVAL_MS,
                "-5",
                r#"FLUSH_INTERVAL_MS="-5": must be positive; expected milliseconds, e.g. 200"#,
            ),
            (
                ENV_FLUSH_INTERVAL_MS,
                "2.5",
                r#"FLUSH_INTERVAL_MS="2.5": expected milliseconds, e.g. 200"#,
            ),
            (
                ENV_FLUSH_INTERVAL_MS,
                "",
                r#"FLUSH_INTERVAL_MS="": expected milliseconds, e.g. 200"#,
            ),
            (
                ENV_FLUSH_INTERVAL_MS,
                "3600001",
                r#"FLUSH_INTERVAL_MS="3600001": too large; expected milliseconds up to 3600000 (one hour)"#,
            ),
            (
                ENV_FLUSH_INTERVAL_MS,
                "99999999999999999999999",
                r#"FLUSH_INTERVAL_MS="99999999999999999999999": too large; expected milliseconds up to 3600000 (one hour)"#,
            ),
            (
                ENV_BIND_ADDR,
                "localhost",
                r#"BIND_ADDR="localhost": expected a socket address, e.g. 127.0.0.1:8080 or [::]:0"#,
            ),
            (
                ENV_BIND_ADDR,
                "127.0.0.1:99999",
                r#"BIND_ADDR="127.0.0.1:99999": expected a socket address, e.g. 127.0.0.1:8080 or [::]:0"#,
            ),
            (
                ENV_DATABASE_PATH,
                "",
                r#"DATABASE_PATH="": expected a file path"#,
            ),
            (
                ENV_REDIS_URL,
                "http://localhost:6379",
                r#"REDIS_URL="http://localhost:6379": expected redis://host:port, e.g. redis://127.0.0.1:6379"#,
            ),
            (
                ENV_ACK_MODE,
                "fast",
                r#"ACK_MODE="fast": expected durable or buffered"#,
            ),
            (
                ENV_ACK_MODE,
                "",
                r#"ACK_MODE="": expected durable or buffered"#,
            ),
            (
                ENV_ACK_MODE,
                "Durable",
                r#"ACK_MODE="Durable": expected durable or buffered"#,
            ),
            (
                ENV_BUFFER_CAPACITY,
                "0",
                r#"BUFFER_CAPACITY="0": expected a number of events from 1 to 1000000, e.g. 10000"#,
            ),
            (
                ENV_BUFFER_CAPACITY,
                "1000001",
                r#"BUFFER_CAPACITY="1000001": expected a number of events from 1 to 1000000, e.g. 10000"#,
            ),
            (
                ENV_BUFFER_CAPACITY,
                "-1",
                r#"BUFFER_CAPACITY="-1": expected a number of events from 1 to 1000000, e.g. 10000"#,
            ),
            (
                ENV_BUFFER_CAPACITY,
                "1e3",
                r#"BUFFER_CAPACITY="1e3": expected a number of events from 1 to 1000000, e.g. 10000"#,
            ),
            (
                ENV_COMMIT_BATCH,
                "0",
                r#"COMMIT_BATCH="0": expected a number of events from 1 to 100000, e.g. 1000"#,
            ),
            (
                ENV_COMMIT_BATCH,
                "99999999999999999999999",
                r#"COMMIT_BATCH="99999999999999999999999": expected a number of events from 1 to 100000, e.g. 1000"#,
            ),
            (
                ENV_COMMIT_WINDOW_MS,
                "1001",
                r#"COMMIT_WINDOW_MS="1001": expected milliseconds from 0 to 1000, e.g. 2"#,
            ),
            (
                ENV_COMMIT_WINDOW_MS,
                "2.5",
                r#"COMMIT_WINDOW_MS="2.5": expected milliseconds from 0 to 1000, e.g. 2"#,
            ),
            (
                ENV_DATABASE_BUSY_TIMEOUT_MS,
                "",
                r#"DATABASE_BUSY_TIMEOUT_MS="": expected milliseconds from 0 to 3600000, e.g. 5000"#,
            ),
            (
                ENV_DATABASE_BUSY_TIMEOUT_MS,
                "3600001",
                r#"DATABASE_BUSY_TIMEOUT_MS="3600001": expected milliseconds from 0 to 3600000, e.g. 5000"#,
            ),
            (
                ENV_DATABASE_SYNCHRONOUS,
                "off",
                r#"DATABASE_SYNCHRONOUS="off": expected full or normal"#,
            ),
            (
                "SHUTDOWN_TIMEOUT",
                "abc",
                r#"SHUTDOWN_TIMEOUT="abc": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "SHUTDOWN_DELAY",
                "-5",
                r#"SHUTDOWN_DELAY="-5": must not be negative; expected seconds, e.g. 30 or 2.5"#,
            ),
        ];
        for (variable, value, message) in cases {
            let err = with(variable, value).expect_err(value);
            assert_eq!(err.variable(), variable);
            assert_eq!(err.value(), value);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn redis_urls() {
        let url = RedisUrl::parse("redis://cache").expect("host only");
        assert_eq!((url.host(), url.port(), url.db()), ("cache", 6379, 0));
        let url = RedisUrl::parse("redis://[::1]:7000/").expect("ipv6");
        assert_eq!((url.host(), url.port(), url.db()), ("::1", 7000, 0));
        assert_eq!(url.to_string(), "redis://[::1]:7000/0");
        for bad in [
            "redis://",
            "redis://:6379",
            "redis://host:0",
            "redis://host:port",
            "redis://host:6379/x",
            "redis://user:pw@host:6379",
            "rediss://host:6379",
            "redis://[::1",
        ] {
            let err = RedisUrl::parse(bad).expect_err(bad);
            assert_eq!(err.variable(), ENV_REDIS_URL, "{bad}");
            assert_eq!(err.value(), bad);
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_errors() {
        use std::os::unix::ffi::OsStringExt;
        for variable in [
            ENV_BIND_ADDR,
            ENV_FLUSH_INTERVAL_MS,
            ENV_REDIS_URL,
            ENV_ACK_MODE,
            ENV_BUFFER_CAPACITY,
            ENV_COMMIT_BATCH,
            ENV_COMMIT_WINDOW_MS,
            ENV_DATABASE_BUSY_TIMEOUT_MS,
            ENV_DATABASE_SYNCHRONOUS,
        ] {
            let raw = OsString::from_vec(vec![b'1', 0xff]);
            let err = Config::from_lookup(|name| (name == variable).then(|| raw.clone()))
                .expect_err(variable);
            assert_eq!(err.variable(), variable);
        }
    }
}
