//! The Redis publisher: each accepted event is published to the [`CHANNEL`] channel by a
//! background task, over one [redis-rs] multiplexed connection.
//!
//! Publishing is best effort, like Redis pub/sub itself: the event is acknowledged and
//! stored whatever Redis does, and a request never waits for Redis.
//!
//! - The request path only queues the message (a bounded queue of [`QUEUE`] messages);
//!   when the queue is full the message is dropped and counted
//!   (`telemetry_redis_dropped_total`), logged once until the queue has drained.
//! - The publisher task sends what is queued in batches (one pipeline of `PUBLISH`
//!   commands, one round trip), connecting and waiting for each reply at most
//!   [`TIMEOUT`].
//! - A Redis that is down at start, goes away, or stops answering is logged once when it
//!   starts failing and once when it is back; the messages it could not take are
//!   dropped and counted (`telemetry_redis_failed_total`). Any failure closes the
//!   connection, and the task connects again at most once every [`RETRY_EVERY`],
//!   dropping the messages in between without waiting.
//! - After the drain the task publishes what is still queued (bounded as above), then
//!   the `redis` cleanup task sends `QUIT` and closes the connection.
//!
//! Why not redis-rs' `ConnectionManager`: it reconnects after a dropped connection but
//! not after a timeout (a Redis that stops answering keeps its dead connection), and a
//! command issued while it reconnects waits for the whole reconnect backoff. The task
//! here needs neither: it is the only user of the connection, it replaces the
//! connection after any failure, and it never makes a request wait.
//!
//! [redis-rs]: https://docs.rs/redis

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisResult};
use shutdown_core::{CancellationToken, Shutdown};
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use crate::config::RedisUrl;
use crate::metrics as names;

/// The channel events are published to.
pub const CHANNEL: &str = "telemetry";
/// Bound on connecting, and on waiting for the replies to one batch.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between connection attempts while Redis is failing.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Messages queued for the publisher; more are dropped (and counted).
pub const QUEUE: usize = 10_000;
/// The most messages sent in one pipeline.
const BATCH: usize = 256;

/// Publishes accepted events to Redis from a background task.
#[derive(Debug)]
pub(crate) struct Publisher {
    queue: mpsc::Sender<String>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The open connection; taken by the cleanup task.
    conn: Mutex<Option<Connection>>,
    /// No more connections once the cleanup task has run.
    closed: AtomicBool,
    /// The queue overflowed and has not drained since (its drops are logged once).
    overflowing: AtomicBool,
}

struct Connection(MultiplexedConnection);

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connection")
    }
}

impl Publisher {
    /// Spawns the publisher task on `shutdown`'s tracker; it connects in the background
    /// (its first step, so that the logs tell at start whether Redis is reachable).
    /// Register [`close`](Self::close) as a cleanup task.
    ///
    /// # Errors
    ///
    /// When redis-rs does not accept the address (a `RedisUrl` is always accepted).
    pub(crate) fn start(url: RedisUrl, shutdown: &Shutdown) -> RedisResult<Self> {
        let info = ConnectionAddr::Tcp(url.host().to_owned(), url.port()).into_connection_info()?;
        let settings = info.redis_settings().clone().set_db(i64::from(url.db()));
        let client = Client::open(info.set_redis_settings(settings))?;
        let shared = Arc::new(Shared {
            conn: Mutex::new(None),
            closed: AtomicBool::new(false),
            overflowing: AtomicBool::new(false),
        });
        let (queue, messages) = mpsc::channel(QUEUE);
        let task = PublisherTask {
            client,
            url,
            shared: Arc::clone(&shared),
            retry_at: None,
            failing: false,
        };
        shutdown.spawn(task.run(messages, shutdown.token()));
        Ok(Self { queue, shared })
    }

    /// Queues `message` for publishing. Never waits: when the queue is full, the
    /// message is dropped and counted.
    pub(crate) fn publish(&self, message: String) {
        if self.queue.try_send(message).is_err() {
            ::metrics::counter!(names::REDIS_DROPPED).increment(1);
            if !self.shared.overflowing.swap(true, Ordering::Relaxed) {
                warn!(
                    queue = QUEUE,
                    "the Redis publish queue is full; events are stored but not published until it drains"
                );
            }
        }
    }

    /// The cleanup task: no more connections; sends `QUIT` (bounded by [`TIMEOUT`]) and
    /// closes the connection, if one is open. When it returns, Redis has closed its
    /// side (or did not answer in time, and ours is closed anyway).
    pub(crate) fn close(&self) -> impl Future<Output = RedisResult<()>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move {
            shared.closed.store(true, Ordering::Relaxed);
            let Some(Connection(mut conn)) = shared.conn.lock().await.take() else {
                return Ok(());
            };
            let quit = timeout(TIMEOUT, redis::cmd("QUIT").exec_async(&mut conn)).await;
            drop(conn);
            match quit {
                Ok(Ok(())) => {
                    info!("Redis connection closed");
                    Ok(())
                }
                // Closed without a goodbye: nothing is lost, Redis drops the client.
                Ok(Err(error)) => {
                    warn!(error = %error, "Redis did not accept QUIT; connection closed");
                    Ok(())
                }
                Err(_elapsed) => {
                    warn!("Redis did not answer QUIT in time; connection closed");
                    Ok(())
                }
            }
        }
    }
}

struct PublisherTask {
    client: Client,
    url: RedisUrl,
    shared: Arc<Shared>,
    /// No connection attempt before this instant.
    retry_at: Option<Instant>,
    /// Redis has failed and has not worked since (logged once per episode).
    failing: bool,
}

impl PublisherTask {
    /// Connects, then publishes queued messages until `stop` is cancelled, then those
    /// still queued.
    async fn run(mut self, mut messages: mpsc::Receiver<String>, stop: CancellationToken) {
        tokio::select! {
            biased;
            () = stop.cancelled() => {}
            _ = self.connect() => {}
        }
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                received = messages.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                    self.publish(&mut batch).await;
                    if messages.is_empty() {
                        self.shared.overflowing.store(false, Ordering::Relaxed);
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        messages.close();
        let mut after_drain = 0usize;
        while messages.recv_many(&mut batch, BATCH).await > 0 {
            after_drain += batch.len();
            self.publish(&mut batch).await;
        }
        debug!(
            messages = after_drain,
            "Redis publisher stopped after the drain"
        );
    }

    /// The open connection, or a new one unless a recent attempt failed. A failure is
    /// logged once per episode.
    async fn connect(&mut self) -> Option<MultiplexedConnection> {
        let mut slot = self.shared.conn.lock().await;
        if let Some(Connection(conn)) = slot.as_ref() {
            return Some(conn.clone());
        }
        if self.shared.closed.load(Ordering::Relaxed)
            || self.retry_at.is_some_and(|at| Instant::now() < at)
        {
            return None;
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => {
                *slot = Some(Connection(conn.clone()));
                if !self.failing {
                    info!(url = %self.url, "connected to Redis");
                }
                Some(conn)
            }
            Err(error) => {
                self.retry_at = Some(Instant::now() + RETRY_EVERY);
                if !std::mem::replace(&mut self.failing, true) {
                    warn!(url = %self.url, error = %error,
                        "cannot connect to Redis; events are stored but not published until it is back");
                }
                None
            }
        }
    }

    /// Publishes `batch` (emptied) in one pipeline, or counts it as failed.
    async fn publish(&mut self, batch: &mut Vec<String>) {
        let events = batch.len() as u64;
        let Some(mut conn) = self.connect().await else {
            batch.clear();
            ::metrics::counter!(names::REDIS_FAILED).increment(events);
            return;
        };
        let mut pipeline = redis::pipe();
        for message in batch.drain(..) {
            pipeline.publish(CHANNEL, message).ignore();
        }
        // The response timeout bounds each reply; this bounds the batch as a whole.
        let sent = timeout(TIMEOUT, pipeline.exec_async(&mut conn)).await;
        match sent {
            Ok(Ok(())) => {
                ::metrics::counter!(names::REDIS_PUBLISHED).increment(events);
                if std::mem::take(&mut self.failing) {
                    info!(url = %self.url, "Redis is back; publishing again");
                }
            }
            failed => {
                ::metrics::counter!(names::REDIS_FAILED).increment(events);
                // Whatever failed, the next attempt starts on a new connection.
                self.shared.conn.lock().await.take();
                self.retry_at = Some(Instant::now() + RETRY_EVERY);
                if !std::mem::replace(&mut self.failing, true) {
                    let error = match failed {
                        Ok(Err(error)) if !error.is_timeout() => error.to_string(),
                        _ => format!("no reply within {TIMEOUT:?}"),
                    };
                    warn!(url = %self.url, error,
                        "publishing to Redis failed; events are stored but not published until it is back");
                }
            }
        }
    }
}
