#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod buffer;
mod config;
mod event;
pub mod metrics;
pub mod redis;
mod reply;
pub mod service;
mod store;
mod telemetry;

pub use buffer::{Accepted, Closed, WriteBehind};
pub use config::{
    Config, ConfigError, DEFAULT_BIND_ADDR, DEFAULT_DATABASE_PATH, DEFAULT_FLUSH_INTERVAL,
    ENV_BIND_ADDR, ENV_DATABASE_PATH, ENV_FLUSH_INTERVAL_MS, ENV_REDIS_URL, MAX_FLUSH_INTERVAL,
    RedisUrl,
};
pub use event::{Event, InvalidEvent, MAX_BODY_BYTES, MAX_ID_CHARS, Record};
pub use reply::{
    JSON, MAX_SLOW_MS, MAX_STREAM_CHUNKS, MAX_STREAM_INTERVAL_MS, Reply, TEXT, query_param, slow,
    stream,
};
pub use store::{SCHEMA, Store, StoreError};
pub use telemetry::{StartError, Telemetry};
