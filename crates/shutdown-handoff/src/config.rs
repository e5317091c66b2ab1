//! [`HandoffConfig`]: how long a successor may take to get ready, and where the pid
//! file is, from code or from the environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::HandoffError;

/// Environment variable for the bound on a successor's start, in seconds.
pub const ENV_HANDOFF_TIMEOUT: &str = "SHUTDOWN_HANDOFF_TIMEOUT";
/// Environment variable for the pid file.
pub const ENV_PID_FILE: &str = "PID_FILE";

/// The default of `SHUTDOWN_HANDOFF_TIMEOUT`: 30 seconds.
pub const DEFAULT_HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);

/// How an in-place restart is bounded, and where the serving process writes its pid.
///
/// ```
/// use std::time::Duration;
/// use shutdown_handoff::HandoffConfig;
///
/// let config = HandoffConfig::from_lookup(|name| match name {
///     "SHUTDOWN_HANDOFF_TIMEOUT" => Some("5".into()),
///     "PID_FILE" => Some("/run/ingest/ingest.pid".into()),
///     _ => None,
/// })?;
/// assert_eq!(config.timeout(), Duration::from_secs(5));
/// assert_eq!(config.pid_file().unwrap().to_str(), Some("/run/ingest/ingest.pid"));
///
/// let err = HandoffConfig::from_lookup(|name| {
///     (name == "SHUTDOWN_HANDOFF_TIMEOUT").then(|| "soon".into())
/// })
/// .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"SHUTDOWN_HANDOFF_TIMEOUT="soon": expected seconds, e.g. 30 or 2.5"#
/// );
/// # Ok::<(), shutdown_handoff::HandoffError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffConfig {
    timeout: Duration,
    pid_file: Option<PathBuf>,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HandoffConfig {
    /// The defaults: a successor has 30 s to report ready; no pid file.
    pub const fn new() -> Self {
        Self {
            timeout: DEFAULT_HANDOFF_TIMEOUT,
            pid_file: None,
        }
    }

    /// Reads the configuration from the process environment:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `SHUTDOWN_HANDOFF_TIMEOUT` | how long a successor may take to report ready, seconds (decimals allowed) | 30 |
    /// | `PID_FILE` | file the serving process writes its pid to once ready | unset: none |
    ///
    /// A set but malformed value is an error naming the variable and the value.
    pub fn from_env() -> Result<Self, HandoffError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup<F>(mut lookup: F) -> Result<Self, HandoffError>
    where
        F: FnMut(&str) -> Option<OsString>,
    {
        let mut config = Self::new();
        if let Some(raw) = lookup(ENV_HANDOFF_TIMEOUT) {
            config.timeout = shutdown_core::parse_seconds(ENV_HANDOFF_TIMEOUT, raw)?;
        }
        if let Some(raw) = lookup(ENV_PID_FILE) {
            if raw.is_empty() {
                return Err(HandoffError::env(
                    ENV_PID_FILE,
                    "",
                    "empty; expected a file path, or leave it unset",
                ));
            }
            config.pid_file = Some(PathBuf::from(raw));
        }
        Ok(config)
    }

    /// Sets how long a successor may take, from its start, to report ready. Past it
    /// the successor is killed and this process keeps serving.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the pid file: written (atomically) by the process that serves, once ready.
    pub fn with_pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// The bound on a successor's start (`SHUTDOWN_HANDOFF_TIMEOUT`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The pid file (`PID_FILE`), if any.
    pub fn pid_file(&self) -> Option<&Path> {
        self.pid_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(variable: &'static str, value: &str) -> Result<HandoffConfig, HandoffError> {
        let value = OsString::from(value);
        HandoffConfig::from_lookup(move |name| (name == variable).then(|| value.clone()))
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let config = HandoffConfig::from_lookup(|_| None).expect("no variables");
        assert_eq!(config.timeout(), Duration::from_secs(30));
        assert_eq!(config.pid_file(), None);
    }

    #[test]
    fn bad_timeouts_are_errors_naming_the_variable_and_the_value() {
        for raw in ["abc", "-5", "1e999", "", "99999999999"] {
            let err = with(ENV_HANDOFF_TIMEOUT, raw).expect_err(raw);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("SHUTDOWN_HANDOFF_TIMEOUT={raw:?}")),
                "{message}"
            );
        }
        assert_eq!(
            with(ENV_HANDOFF_TIMEOUT, "2.5").map(|c| c.timeout()).ok(),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn an_empty_pid_file_is_an_error() {
        let err = with(ENV_PID_FILE, "").expect_err("empty");
        assert_eq!(
            err.to_string(),
            r#"PID_FILE="": empty; expected a file path, or leave it unset"#
        );
    }
}
