#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cleanup;
mod config;
mod drain_signal;
mod gate;
mod in_flight;
mod observer;
mod phase;
mod report;
mod serve;
mod shutdown;
mod sse;
pub mod websocket;

pub use cleanup::{CleanupOutcome, CleanupResult, CleanupStatus, IntoCleanup};
pub use config::{
    ConfigError, ENV_CLEANUP_TIMEOUT, ENV_DELAY, ENV_HANDOFF_GRACE, ENV_RETRY_AFTER,
    ENV_TASK_TIMEOUT, ENV_TIMEOUT, ExitCodes, ShutdownConfig, parse_seconds,
};
pub use drain_signal::{DrainSignal, DrainStarted, ShutdownEvent};
pub use gate::{
    Admission, DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, Pass, PlainResponse, Protocol,
    REJECTION_MESSAGE, Rejection, RequestGate,
};
pub use in_flight::RequestGuard;
pub use observer::ShutdownObserver;
pub use phase::{Phase, Trigger};
pub use report::{DrainSummary, ShutdownReport};
pub use serve::{AcceptUntilHandoff, SERVER_TASK, STOP_GRACE, ServeError};
pub use shutdown::Shutdown;
pub use sse::UntilDrain;

/// Re-exported so that users name the same type the handle returns.
pub use tokio_util::sync::CancellationToken;
