#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod env;
mod error;
// Taking ownership of inherited descriptors cannot be done without it (see the module).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod fds;
mod handoff;
mod pid_file;
#[cfg(target_os = "linux")]
mod restart;

pub use config::{DEFAULT_HANDOFF_TIMEOUT, ENV_HANDOFF_TIMEOUT, ENV_PID_FILE, HandoffConfig};
pub use env::SocketSource;
pub use error::HandoffError;
pub use handoff::Handoff;

pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
