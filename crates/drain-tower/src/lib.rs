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
