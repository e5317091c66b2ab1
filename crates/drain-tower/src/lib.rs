#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod drain;
pub mod health;
pub mod mapping;

pub use drain::{
    DEFAULT_DISCARD_LIMIT, DEFAULT_EXEMPT_PATHS, Drain, DrainLayer, GuardedBody, ResponseFuture,
};
pub use health::{Liveness, Readiness};

/// What [`tower_drain!`] expands to names; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use shutdown_core;
    pub use tower_layer;
}
