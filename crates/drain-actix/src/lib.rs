#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod drain;
pub mod health;
mod long_lived;
mod mapping;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod metrics;
mod serve;
pub mod ws;

pub use drain::{DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, Drain, DrainLayer, GuardedBody};
pub use health::health_routes;
pub use long_lived::{OnDrain, sse};
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use metrics::metrics_routes;
pub use serve::{serve, serve_server};
pub use shutdown_core::ServeError;
