#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod drain;
pub mod health;
pub mod mapping;
mod serve;
pub mod stream;

pub use drain::{DEFAULT_EXEMPT_PATHS, Drain, DrainLayer, ResponseFuture};
pub use drain_tower::GuardedBody;
pub use health::{DrainHealth, HealthReporter, HealthServer, health_service};
pub use serve::{ServeConfig, serve, serve_with};
pub use shutdown_core::ServeError;
pub use stream::{DrainStream, end_on_drain};
