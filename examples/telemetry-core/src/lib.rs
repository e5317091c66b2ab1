#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod buffer;
mod commit;
mod config;
mod event;
pub mod metrics;
pub mod redis;
mod reply;
pub mod service;
mod spill;
mod store;
mod telemetry;

pub use buffer::{Accepted, Refused, WriteBehind};
pub use config::{
    AckMode, Config, ConfigError, DEFAULT_BIND_ADDR, DEFAULT_BUFFER_CAPACITY, DEFAULT_BUSY_TIMEOUT,
    DEFAULT_COMMIT_BATCH, DEFAULT_COMMIT_WINDOW, DEFAULT_DATABASE_PATH, DEFAULT_FLUSH_INTERVAL,
    ENV_ACK_MODE, ENV_BIND_ADDR, ENV_BUFFER_CAPACITY, ENV_COMMIT_BATCH, ENV_COMMIT_WINDOW_MS,
    ENV_DATABASE_BUSY_TIMEOUT_MS, ENV_DATABASE_PATH, ENV_DATABASE_SYNCHRONOUS,
    ENV_FLUSH_INTERVAL_MS, ENV_REDIS_URL, MAX_BUFFER_CAPACITY, MAX_BUSY_TIMEOUT, MAX_COMMIT_BATCH,
    MAX_COMMIT_WINDOW, MAX_FLUSH_INTERVAL, RedisUrl, Synchronous,
};
pub use event::{Event, InvalidEvent, MAX_BODY_BYTES, MAX_ID_CHARS, Record};
pub use reply::{
    JSON, MAX_SLOW_MS, MAX_STREAM_CHUNKS, MAX_STREAM_INTERVAL_MS, Reply, TEXT, TICK_EVENT,
    query_param, slow, stream, ticks,
};
pub use store::{SCHEMA, Store, StoreError};
pub use telemetry::{RETRY_AFTER_BUSY_SECS, StartError, Telemetry};
