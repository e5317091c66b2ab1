//! Helpers shared by the workspace's tests (a dev-dependency only, never published).
//!
//! - [`alloc`]: a global allocator that counts the allocations of a closure, for the
//!   tests that prove a path allocates nothing.
//! - [`logs`]: a tracing layer that keeps the events, for the tests that assert on the
//!   logs.
//! - [`redis`]: a real `redis-server` on a free loopback port, and a subscriber.

pub mod alloc;
pub mod logs;
pub mod redis;
