//! [`ShutdownConfig`]: the deadlines of the shutdown sequence, from code or from the
//! environment.

use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

/// Environment variable for the drain deadline, in seconds.
pub const ENV_TIMEOUT: &str = "SHUTDOWN_TIMEOUT";
/// Environment variable for the pre-stop delay, in seconds.
pub const ENV_DELAY: &str = "SHUTDOWN_DELAY";
/// Environment variable for the default timeout of each cleanup task, in seconds.
pub const ENV_CLEANUP_TIMEOUT: &str = "SHUTDOWN_CLEANUP_TIMEOUT";
/// Environment variable for the bound on background tasks after cancellation, in seconds.
pub const ENV_TASK_TIMEOUT: &str = "SHUTDOWN_TASK_TIMEOUT";
/// Environment variable for the `Retry-After` value of rejected requests, in whole seconds.
pub const ENV_RETRY_AFTER: &str = "SHUTDOWN_RETRY_AFTER";
/// Environment variable for the handoff grace, in seconds.
pub const ENV_HANDOFF_GRACE: &str = "SHUTDOWN_HANDOFF_GRACE";

/// Exit codes that [`ShutdownReport::exit_code`](crate::ShutdownReport::exit_code) maps
/// an outcome to.
///
/// When both requests were interrupted and a cleanup failed, `cleanup_failed` wins:
/// an operator should look at possibly unflushed data first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExitCodes {
    /// Every request drained, every task and cleanup finished. Default `0`.
    pub clean: i32,
    /// The drain deadline passed with requests still in flight. Default `3`.
    pub requests_interrupted: i32,
    /// A cleanup task failed, panicked or timed out, or background tasks outlived their
    /// bound. Default `4`.
    pub cleanup_failed: i32,
}

impl ExitCodes {
    /// The defaults: `0` clean, `3` requests interrupted, `4` cleanup failed.
    pub const DEFAULT: Self = Self {
        clean: 0,
        requests_interrupted: 3,
        cleanup_failed: 4,
    };

    /// Sets all three codes.
    pub const fn new(clean: i32, requests_interrupted: i32, cleanup_failed: i32) -> Self {
        Self {
            clean,
            requests_interrupted,
            cleanup_failed,
        }
    }
}

impl Default for ExitCodes {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How long each step of the shutdown may take, and what rejected clients are told.
///
/// Build it in code, or read it from the environment with [`from_env`](Self::from_env):
///
/// ```
/// use std::time::Duration;
/// use shutdown_core::ShutdownConfig;
///
/// let config = ShutdownConfig::new()
///     .with_drain_timeout(Duration::from_secs(20))
///     .with_pre_stop_delay(Duration::from_secs(5));
/// assert_eq!(config.retry_after(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownConfig {
    drain_timeout: Duration,
    pre_stop_delay: Duration,
    cleanup_timeout: Duration,
    task_timeout: Duration,
    retry_after: Duration,
    server_stop_timeout: Duration,
    handoff_grace: Duration,
    exit_codes: ExitCodes,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownConfig {
    /// The defaults: drain 30 s, pre-stop delay 0, cleanup tasks 10 s each, background
    /// tasks 10 s, `Retry-After: 10`, server stop 1 s, handoff grace 5 s,
    /// [`ExitCodes::DEFAULT`].
    pub const fn new() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            pre_stop_delay: Duration::ZERO,
            cleanup_timeout: Duration::from_secs(10),
            task_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(10),
            server_stop_timeout: Duration::from_secs(1),
            handoff_grace: Duration::from_secs(5),
            exit_codes: ExitCodes::DEFAULT,
        }
    }

    /// Reads the configuration from the process environment, starting from the
    /// defaults of [`new`](Self::new):
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `SHUTDOWN_TIMEOUT` | drain deadline, seconds (decimals allowed) | 30 |
    /// | `SHUTDOWN_DELAY` | pre-stop delay, seconds | 0 |
    /// | `SHUTDOWN_CLEANUP_TIMEOUT` | default timeout of each cleanup task, seconds | 10 |
    /// | `SHUTDOWN_TASK_TIMEOUT` | bound on background tasks after cancellation, seconds | 10 |
    /// | `SHUTDOWN_RETRY_AFTER` | `Retry-After` of rejected requests, whole seconds | 10 |
    /// | `SHUTDOWN_HANDOFF_GRACE` | after a handoff, how long open connections are served before the drain, seconds | 5 |
    ///
    /// An unset variable keeps its default. A set but malformed one (`abc`, `-5`,
    /// `1e999`, empty, not UTF-8) is an error naming the variable and the value; it is
    /// never replaced by the default silently.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`from_env`](Self::from_env), but reads variables through `lookup`: for
    /// tests, or for configuration that arrives from elsewhere.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shutdown_core::ShutdownConfig;
    ///
    /// let config = ShutdownConfig::from_lookup(|name| match name {
    ///     "SHUTDOWN_TIMEOUT" => Some("2.5".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.drain_timeout(), Duration::from_millis(2500));
    ///
    /// let err = ShutdownConfig::from_lookup(|name| {
    ///     (name == "SHUTDOWN_DELAY").then(|| "abc".into())
    /// })
    /// .unwrap_err();
    /// assert_eq!(err.to_string(), r#"SHUTDOWN_DELAY="abc": expected seconds, e.g. 30 or 2.5"#);
    /// # Ok::<(), shutdown_core::ConfigError>(())
    /// ```
    pub fn from_lookup<F>(mut lookup: F) -> Result<Self, ConfigError>
    where
        F: FnMut(&str) -> Option<OsString>,
    {
        let mut config = Self::new();
        let mut read =
            |variable: &'static str, whole: bool| -> Result<Option<Duration>, ConfigError> {
                lookup(variable)
                    .map(|raw| parse_seconds_as(variable, raw, whole))
                    .transpose()
            };
        if let Some(value) = read(ENV_TIMEOUT, false)? {
            config.drain_timeout = value;
        }
        if let Some(value) = read(ENV_DELAY, false)? {
            config.pre_stop_delay = value;
        }
        if let Some(value) = read(ENV_CLEANUP_TIMEOUT, false)? {
            config.cleanup_timeout = value;
        }
        if let Some(value) = read(ENV_TASK_TIMEOUT, false)? {
            config.task_timeout = value;
        }
        if let Some(value) = read(ENV_RETRY_AFTER, true)? {
            config.retry_after = value;
        }
        if let Some(value) = read(ENV_HANDOFF_GRACE, false)? {
            config.handoff_grace = value;
        }
        Ok(config)
    }

    /// Sets how long in-flight requests may take to finish once draining has begun.
    /// At the deadline the request-scope token is cancelled and the requests still in
    /// flight count as interrupted.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets how long requests are still served after readiness has turned false, so
    /// that load balancers stop sending traffic before the drain turns it away.
    pub fn with_pre_stop_delay(mut self, delay: Duration) -> Self {
        self.pre_stop_delay = delay;
        self
    }

    /// Sets the default timeout of each cleanup task.
    pub fn with_cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = timeout;
        self
    }

    /// Sets how long background tasks may take to finish once cancelled.
    pub fn with_task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// Sets the `Retry-After` value that rejected requests carry. Adapters send it in
    /// whole seconds, rounded up.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Sets how long an adapter's `serve` gives the HTTP server, once the drain has
    /// ended, to close its connections (idle keep-alive ones, and those of requests the
    /// deadline interrupted) before it abandons them and moves on to cleanup.
    pub fn with_server_stop_timeout(mut self, timeout: Duration) -> Self {
        self.server_stop_timeout = timeout;
        self
    }

    /// Sets, for a shutdown triggered by a handoff ([`Trigger::Handoff`](crate::Trigger::Handoff)),
    /// how long the open connections are still served before the drain begins, in place
    /// of the pre-stop delay: an idle keep-alive connection gets this long for its next
    /// request, answered normally with `Connection: close`, before the server closes it.
    pub fn with_handoff_grace(mut self, grace: Duration) -> Self {
        self.handoff_grace = grace;
        self
    }

    /// Sets the exit codes the report maps its outcome to.
    pub fn with_exit_codes(mut self, exit_codes: ExitCodes) -> Self {
        self.exit_codes = exit_codes;
        self
    }

    /// The drain deadline (`SHUTDOWN_TIMEOUT`).
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// The pre-stop delay (`SHUTDOWN_DELAY`).
    pub fn pre_stop_delay(&self) -> Duration {
        self.pre_stop_delay
    }

    /// The default timeout of each cleanup task (`SHUTDOWN_CLEANUP_TIMEOUT`).
    pub fn cleanup_timeout(&self) -> Duration {
        self.cleanup_timeout
    }

    /// The bound on background tasks after cancellation (`SHUTDOWN_TASK_TIMEOUT`).
    pub fn task_timeout(&self) -> Duration {
        self.task_timeout
    }

    /// The `Retry-After` value of rejected requests (`SHUTDOWN_RETRY_AFTER`).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up, as the
    /// `Retry-After` header carries it.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        }
    }

    /// The handoff grace (`SHUTDOWN_HANDOFF_GRACE`).
    pub fn handoff_grace(&self) -> Duration {
        self.handoff_grace
    }

    /// How long the server may take to close its connections after the drain.
    pub fn server_stop_timeout(&self) -> Duration {
        self.server_stop_timeout
    }

    /// The exit codes.
    pub fn exit_codes(&self) -> ExitCodes {
        self.exit_codes
    }
}

/// Reads a duration in seconds (decimals allowed) held by `variable`, the way
/// [`ShutdownConfig::from_env`] reads its own: for a crate that adds a bound of its own
/// (`SHUTDOWN_HANDOFF_TIMEOUT`), so that every bound is written, checked and reported
/// alike.
///
/// ```
/// use std::time::Duration;
///
/// let timeout = shutdown_core::parse_seconds("MY_TIMEOUT", "2.5")?;
/// assert_eq!(timeout, Duration::from_millis(2500));
/// let err = shutdown_core::parse_seconds("MY_TIMEOUT", "soon").unwrap_err();
/// assert_eq!(err.to_string(), r#"MY_TIMEOUT="soon": expected seconds, e.g. 30 or 2.5"#);
/// # Ok::<(), shutdown_core::ConfigError>(())
/// ```
pub fn parse_seconds(
    variable: &'static str,
    value: impl Into<OsString>,
) -> Result<Duration, ConfigError> {
    parse_seconds_as(variable, value.into(), false)
}

fn parse_seconds_as(
    variable: &'static str,
    raw: OsString,
    whole: bool,
) -> Result<Duration, ConfigError> {
    let error = |value: String, problem: Problem| ConfigError {
        variable,
        value,
        problem,
    };
    let text = match raw.into_string() {
        Ok(text) => text,
        Err(raw) => return Err(error(raw.to_string_lossy().into_owned(), Problem::NotUtf8)),
    };
    let trimmed = text.trim();
    let (int, frac) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() || !whole)
        && !(trimmed.ends_with('.'));
    if !well_formed {
        let problem = if trimmed.starts_with('-') {
            Problem::Negative
        } else if whole {
            Problem::NotWholeSeconds
        } else {
            Problem::NotSeconds
        };
        return Err(error(text, problem));
    }
    let Ok(secs) = int.parse::<u64>() else {
        return Err(error(text, Problem::TooLarge));
    };
    let nanos = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
    let duration = Duration::new(secs, 0) + Duration::from_nanos(u64::from(nanos));
    if duration > MAX_SECONDS {
        return Err(error(text, Problem::TooLarge));
    }
    Ok(duration)
}

/// Larger values are certainly a mistake, and would overflow deadline arithmetic.
const MAX_SECONDS: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A configuration value that could not be used: names the variable and the value.
///
/// ```
/// use shutdown_core::ShutdownConfig;
///
/// let err = ShutdownConfig::from_lookup(|name| {
///     (name == "SHUTDOWN_TIMEOUT").then(|| "-5".into())
/// })
/// .unwrap_err();
/// assert_eq!(err.variable(), "SHUTDOWN_TIMEOUT");
/// assert_eq!(err.value(), "-5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    NotSeconds,
    NotWholeSeconds,
    Negative,
    TooLarge,
    NotUtf8,
}

impl ConfigError {
    /// The variable that held the bad value, e.g. `SHUTDOWN_TIMEOUT`.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The value as it was set (lossily converted when it was not UTF-8).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = match self.problem {
            Problem::NotSeconds => "expected seconds, e.g. 30 or 2.5",
            Problem::NotWholeSeconds => "expected whole seconds, e.g. 10",
            Problem::Negative => "must not be negative; expected seconds, e.g. 30 or 2.5",
            Problem::TooLarge => "too large; expected seconds up to 31536000 (one year)",
            Problem::NotUtf8 => "not valid UTF-8; expected seconds, e.g. 30 or 2.5",
        };
        write!(f, "{}={:?}: {expected}", self.variable, self.value)
    }
}

impl Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(variable: &'static str, value: &str) -> Result<ShutdownConfig, ConfigError> {
        let value = OsString::from(value);
        ShutdownConfig::from_lookup(move |name| (name == variable).then(|| value.clone()))
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let config = ShutdownConfig::from_lookup(|_| None).expect("no variables");
        assert_eq!(config, ShutdownConfig::new());
        assert_eq!(config.drain_timeout(), Duration::from_secs(30));
        assert_eq!(config.pre_stop_delay(), Duration::ZERO);
        assert_eq!(config.retry_after_secs(), 10);
    }

    #[test]
    fn good_values_parse() {
        let cases = [
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("2.5", Duration::from_millis(2500)),
            (" 7 ", Duration::from_secs(7)),
            ("0.001", Duration::from_millis(1)),
            ("1.123456789", Duration::new(1, 123_456_789)),
            ("31536000", Duration::from_secs(31_536_000)),
        ];
        for (raw, expected) in cases {
            for variable in [
                ENV_TIMEOUT,
                ENV_DELAY,
                ENV_CLEANUP_TIMEOUT,
                ENV_TASK_TIMEOUT,
            ] {
                let config =
                    with(variable, raw).unwrap_or_else(|e| panic!("{variable}={raw}: {e}"));
                let got = match variable {
                    ENV_TIMEOUT => config.drain_timeout(),
                    ENV_DELAY => config.pre_stop_delay(),
                    ENV_CLEANUP_TIMEOUT => config.cleanup_timeout(),
                    _ => config.task_timeout(),
                };
                assert_eq!(got, expected, "{variable}={raw:?}");
            }
        }
        assert_eq!(
            with(ENV_RETRY_AFTER, "120").map(|c| c.retry_after_secs()),
            Ok(120)
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases = [
            (
                "abc",
                r#"SHUTDOWN_TIMEOUT="abc": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "-5",
                r#"SHUTDOWN_TIMEOUT="-5": must not be negative; expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "1e999",
                r#"SHUTDOWN_TIMEOUT="1e999": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "",
                r#"SHUTDOWN_TIMEOUT="": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "  ",
                r#"SHUTDOWN_TIMEOUT="  ": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "5.",
                r#"SHUTDOWN_TIMEOUT="5.": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                ".5",
                r#"SHUTDOWN_TIMEOUT=".5": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "NaN",
                r#"SHUTDOWN_TIMEOUT="NaN": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "inf",
                r#"SHUTDOWN_TIMEOUT="inf": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "30s",
                r#"SHUTDOWN_TIMEOUT="30s": expected seconds, e.g. 30 or 2.5"#,
            ),
            (
                "99999999999999999999999",
                r#"SHUTDOWN_TIMEOUT="99999999999999999999999": too large; expected seconds up to 31536000 (one year)"#,
            ),
            (
                "31536001",
                r#"SHUTDOWN_TIMEOUT="31536001": too large; expected seconds up to 31536000 (one year)"#,
            ),
        ];
        for (raw, message) in cases {
            let err = with(ENV_TIMEOUT, raw).expect_err(raw);
            assert_eq!(err.variable(), ENV_TIMEOUT);
            assert_eq!(err.value(), raw);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn every_variable_reports_its_own_name() {
        for variable in [
            ENV_TIMEOUT,
            ENV_DELAY,
            ENV_CLEANUP_TIMEOUT,
            ENV_TASK_TIMEOUT,
            ENV_RETRY_AFTER,
        ] {
            let err = with(variable, "abc").expect_err(variable);
            assert_eq!(err.variable(), variable);
            assert!(
                err.to_string().starts_with(&format!("{variable}=\"abc\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn retry_after_takes_whole_seconds_only() {
        let err = with(ENV_RETRY_AFTER, "2.5").expect_err("fraction");
        assert_eq!(
            err.to_string(),
            r#"SHUTDOWN_RETRY_AFTER="2.5": expected whole seconds, e.g. 10"#
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_value_is_an_error_not_a_default() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![b'3', 0xff]);
        let err = ShutdownConfig::from_lookup(|name| (name == ENV_DELAY).then(|| raw.clone()))
            .expect_err("not utf-8");
        assert_eq!(err.variable(), ENV_DELAY);
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let config = ShutdownConfig::new().with_retry_after(Duration::from_millis(1500));
        assert_eq!(config.retry_after_secs(), 2);
    }
}
