//! A minimal Redis client (RESP2 over a tokio `TcpStream`: `PUBLISH`, `SELECT`, `QUIT`)
//! and the publisher task that sends each accepted event to the `telemetry` channel.
//!
//! Publishing is best effort, like Redis pub/sub itself: the event is acknowledged and
//! stored whatever Redis does. A failing Redis is logged (once when it starts failing,
//! once when it is back), its messages are dropped and counted, and the connection is
//! retried at most once a second.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use shutdown_core::{CancellationToken, Shutdown};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use crate::config::RedisUrl;
use crate::metrics as names;

/// The channel events are published to.
pub const CHANNEL: &str = "telemetry";

/// Bound on connecting and on each command.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between connection attempts while Redis is failing.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Messages queued for the publisher; more are dropped (and counted).
const QUEUE: usize = 10_000;
/// The longest reply line read (status, error, integer, bulk length).
const MAX_LINE: u64 = 64 * 1024;
/// The largest bulk reply read.
const MAX_BULK: usize = 16 * 1024 * 1024;

/// A reply from Redis (error replies are returned as `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespReply {
    /// `+OK`.
    Simple(String),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nabc` (`None` for the nil bulk string).
    Bulk(Option<Vec<u8>>),
}

/// One connection to Redis.
#[derive(Debug)]
pub struct RedisConnection {
    stream: BufReader<TcpStream>,
}

impl RedisConnection {
    /// Connects to `url` and selects its database, each step bounded by a timeout.
    ///
    /// # Errors
    ///
    /// The I/O error, a timeout (`TimedOut`), or Redis' error reply to `SELECT`.
    pub async fn connect(url: &RedisUrl) -> io::Result<Self> {
        let stream = timeout(IO_TIMEOUT, TcpStream::connect((url.host(), url.port())))
            .await
            .map_err(|_| timed_out("connecting"))??;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            stream: BufReader::new(stream),
        };
        if url.db() != 0 {
            conn.command(&[b"SELECT", url.db().to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply, bounded by a timeout.
    ///
    /// # Errors
    ///
    /// The I/O error, a timeout, a malformed reply (`InvalidData`), or Redis' error
    /// reply (`Other`, with its message).
    pub async fn command(&mut self, args: &[&[u8]]) -> io::Result<RespReply> {
        timeout(IO_TIMEOUT, self.command_unbounded(args))
            .await
            .map_err(|_| timed_out("waiting for a reply"))?
    }

    async fn command_unbounded(&mut self, args: &[&[u8]]) -> io::Result<RespReply> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&request).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> io::Result<RespReply> {
        let mut line = Vec::new();
        (&mut self.stream)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        let Some(line) = line.strip_suffix(b"\r\n") else {
            return Err(invalid("a reply line without CRLF"));
        };
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| invalid("an empty reply"))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(RespReply::Simple(text)),
            b'-' => Err(io::Error::other(format!("Redis: {text}"))),
            b':' => text
                .parse()
                .map(RespReply::Integer)
                .map_err(|_| invalid("a bad integer reply")),
            b'$' => {
                let len: i64 = text.parse().map_err(|_| invalid("a bad bulk length"))?;
                if len < 0 {
                    return Ok(RespReply::Bulk(None));
                }
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= MAX_BULK)
                    .ok_or_else(|| invalid("a bulk reply too large"))?;
                let mut bulk = vec![0; len + 2];
                self.stream.read_exact(&mut bulk).await?;
                bulk.truncate(len);
                Ok(RespReply::Bulk(Some(bulk)))
            }
            _ => Err(invalid("an unsupported reply type")),
        }
    }

    /// `PUBLISH channel message`: returns how many subscribers received it.
    ///
    /// # Errors
    ///
    /// As [`command`](Self::command), or a reply that is not an integer.
    pub async fn publish(&mut self, channel: &str, message: &str) -> io::Result<i64> {
        match self
            .command(&[b"PUBLISH", channel.as_bytes(), message.as_bytes()])
            .await?
        {
            RespReply::Integer(receivers) => Ok(receivers),
            other => Err(invalid(&format!("PUBLISH answered {other:?}"))),
        }
    }

    /// `QUIT`, then closes the connection.
    ///
    /// # Errors
    ///
    /// As [`command`](Self::command).
    pub async fn quit(mut self) -> io::Result<()> {
        let reply = self.command(&[b"QUIT"]).await;
        // Closing matters more than the reply: Redis closes its side after `+OK`.
        let _ = self.stream.get_mut().shutdown().await;
        reply.map(drop)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Redis sent {what}"))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("Redis: {what} took longer than {IO_TIMEOUT:?}"),
    )
}

type SharedConnection = Arc<Mutex<Option<RedisConnection>>>;

/// Publishes accepted events to Redis from a background task.
#[derive(Debug)]
pub(crate) struct Publisher {
    queue: mpsc::Sender<String>,
    conn: SharedConnection,
}

impl Publisher {
    /// Connects (a failure is logged, not fatal: the task retries) and spawns the
    /// publisher task on `shutdown`'s tracker. Register [`close`](Self::close) as a
    /// cleanup task.
    pub(crate) async fn start(url: RedisUrl, shutdown: &Shutdown) -> Self {
        let conn: SharedConnection = Arc::new(Mutex::new(None));
        let mut task = PublisherTask {
            url,
            conn: Arc::clone(&conn),
            retry_at: None,
            failing: false,
        };
        task.ensure_connected().await;
        let (queue, messages) = mpsc::channel(QUEUE);
        shutdown.spawn(task.run(messages, shutdown.token()));
        Self { queue, conn }
    }

    /// The cleanup task: sends `QUIT` and closes the connection, if one is open.
    pub(crate) fn close(&self) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let conn = Arc::clone(&self.conn);
        async move {
            let Some(conn) = conn.lock().await.take() else {
                return Ok(());
            };
            conn.quit().await?;
            info!("Redis connection closed");
            Ok(())
        }
    }

    /// Queues `message` for publishing. Never waits: when the queue is full, the
    /// message is dropped and counted.
    pub(crate) fn publish(&self, message: String) {
        if self.queue.try_send(message).is_err() {
            ::metrics::counter!(names::REDIS_FAILED).increment(1);
        }
    }
}

struct PublisherTask {
    url: RedisUrl,
    conn: SharedConnection,
    retry_at: Option<Instant>,
    failing: bool,
}

impl PublisherTask {
    /// Publishes queued messages until `stop` is cancelled, then those still queued.
    async fn run(mut self, mut messages: mpsc::Receiver<String>, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                message = messages.recv() => match message {
                    Some(message) => self.publish(&message).await,
                    None => return,
                },
                () = stop.cancelled() => break,
            }
        }
        messages.close();
        let mut published = 0usize;
        while let Ok(message) = messages.try_recv() {
            self.publish(&message).await;
            published += 1;
        }
        debug!(
            messages = published,
            "Redis publisher stopped after the drain"
        );
    }

    async fn ensure_connected(&mut self) -> bool {
        let mut conn = self.conn.lock().await;
        if conn.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        match RedisConnection::connect(&self.url).await {
            Ok(connected) => {
                *conn = Some(connected);
                self.retry_at = None;
                if std::mem::take(&mut self.failing) {
                    info!(url = %self.url, "Redis is back; publishing again");
                } else {
                    info!(url = %self.url, "connected to Redis");
                }
                true
            }
            Err(error) => {
                self.retry_at = Some(Instant::now() + RETRY_EVERY);
                if !std::mem::replace(&mut self.failing, true) {
                    warn!(url = %self.url, error = %error,
                        "cannot connect to Redis; events are stored but not published until it is back");
                }
                false
            }
        }
    }

    async fn publish(&mut self, message: &str) {
        if !self.ensure_connected().await {
            ::metrics::counter!(names::REDIS_FAILED).increment(1);
            return;
        }
        let mut conn = self.conn.lock().await;
        // Taken by the cleanup task after an abandoned shutdown step: nothing to do.
        let Some(connection) = conn.as_mut() else {
            ::metrics::counter!(names::REDIS_FAILED).increment(1);
            return;
        };
        match connection.publish(CHANNEL, message).await {
            Ok(_) => ::metrics::counter!(names::REDIS_PUBLISHED).increment(1),
            Err(error) => {
                ::metrics::counter!(names::REDIS_FAILED).increment(1);
                *conn = None;
                self.retry_at = Some(Instant::now() + RETRY_EVERY);
                if !std::mem::replace(&mut self.failing, true) {
                    warn!(url = %self.url, error = %error,
                        "publishing to Redis failed; events are stored but not published until it is back");
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A fake Redis on 127.0.0.1: answers `PUBLISH` with `:1`, `SELECT` and `QUIT` with
    /// `+OK` (then closes), and sends every command it received on the channel.
    pub(crate) async fn fake_redis() -> (RedisUrl, mpsc::UnboundedReceiver<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while let Some(command) = read_command(&mut stream).await {
                        let reply: &[u8] = match command[0].as_str() {
                            "PUBLISH" => b":1\r\n",
                            _ => b"+OK\r\n",
                        };
                        let quit = command[0] == "QUIT";
                        let _ = tx.send(command);
                        if stream.get_mut().write_all(reply).await.is_err() || quit {
                            return;
                        }
                    }
                });
            }
        });
        let url = RedisUrl::parse(&format!("redis://{addr}")).expect("url");
        (url, rx)
    }

    async fn read_command(stream: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
        let mut args = Vec::with_capacity(count);
        for _ in 0..count {
            line.clear();
            stream.read_line(&mut line).await.ok()?;
            let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
            let mut arg = vec![0; len + 2];
            stream.read_exact(&mut arg).await.ok()?;
            arg.truncate(len);
            args.push(String::from_utf8(arg).ok()?);
        }
        Some(args)
    }

    #[tokio::test]
    async fn publish_select_and_quit_speak_resp() {
        let (url, mut commands) = fake_redis().await;
        let url = RedisUrl::parse(&format!("redis://{}:{}/3", url.host(), url.port()))
            .expect("url with a database");
        let mut conn = RedisConnection::connect(&url).await.expect("connect");
        assert_eq!(
            conn.publish("telemetry", "{\"id\":\"a\"}")
                .await
                .expect("publish"),
            1
        );
        conn.quit().await.expect("quit");
        let mut received = Vec::new();
        while let Some(command) = commands.recv().await {
            let quit = command[0] == "QUIT";
            received.push(command);
            if quit {
                break;
            }
        }
        assert_eq!(
            received,
            [
                vec!["SELECT", "3"],
                vec!["PUBLISH", "telemetry", "{\"id\":\"a\"}"],
                vec!["QUIT"],
            ]
        );
    }

    #[tokio::test]
    async fn an_error_reply_is_an_error_with_its_message() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0; 256];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"-NOAUTH Authentication required.\r\n")
                    .await;
            }
        });
        let url = RedisUrl::parse(&format!("redis://{addr}")).expect("url");
        let mut conn = RedisConnection::connect(&url).await.expect("connect");
        let err = conn
            .publish("telemetry", "x")
            .await
            .expect_err("error reply");
        assert!(err.to_string().contains("NOAUTH"), "{err}");
    }
}
