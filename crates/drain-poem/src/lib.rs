#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod drain;
mod handoff;
pub mod health;
mod long_lived;
#[cfg(feature = "prometheus")]
mod metrics;
mod serve;
pub mod ws;

pub use drain::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, Drain, DrainLayer};
pub use handoff::HandoffAcceptor;
pub use health::{Liveness, Readiness, health_routes};
pub use long_lived::{OnDrain, Sse, sse};
#[cfg(feature = "prometheus")]
pub use metrics::Metrics;
pub use serve::{serve, serve_server};
pub use shutdown_core::ServeError;
