//! Framework-agnostic answers: [`Reply`] (a status and a JSON body), and the
//! `/slow`, `/stream` and `/events` endpoints used by the drain tests.

use std::time::Duration;

use futures_util::Stream;
use tracing::info;

/// The `Content-Type` of every [`Reply`].
pub const JSON: &str = "application/json";
/// The `Content-Type` of [`stream`]'s body.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The longest `/slow` accepted, in milliseconds.
pub const MAX_SLOW_MS: u64 = 60_000;
/// The most lines `/stream` sends.
pub const MAX_STREAM_CHUNKS: u64 = 10_000;
/// The longest pause between two lines of `/stream`, in milliseconds.
pub const MAX_STREAM_INTERVAL_MS: u64 = 60_000;

/// An HTTP answer without framework types: a status, a JSON body ([`JSON`]), and a
/// `Retry-After` value for `503`s. Each binary turns it into its framework's response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The JSON body.
    pub body: String,
    /// `Retry-After`, in seconds, when set.
    pub retry_after_secs: Option<u64>,
}

impl Reply {
    /// `status` with a JSON `body`.
    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            body,
            retry_after_secs: None,
        }
    }

    /// `status` with `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": message }).to_string())
    }

    /// `413` for a body over [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES), for binaries
    /// whose framework stopped reading it.
    pub fn too_large() -> Self {
        Self::error(
            413,
            &format!(
                "the body is larger than {} bytes",
                crate::event::MAX_BODY_BYTES
            ),
        )
    }

    /// `503` with `Retry-After`: the database is closing.
    pub fn unavailable(retry_after_secs: u64) -> Self {
        Self::retry_later(retry_after_secs, "shutting down, retry later")
    }

    /// `503` with `Retry-After` and `{"error": message}`.
    pub fn retry_later(retry_after_secs: u64, message: &str) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::error(503, message)
        }
    }
}

/// The value of `name` in a query string (`a=1&b=2`), if present.
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A whole number from the query, `default` when absent, at most `max`.
fn number(query: Option<&str>, name: &str, default: u64, max: u64) -> Result<u64, Reply> {
    let Some(raw) = query_param(query, name) else {
        return Ok(default);
    };
    raw.parse().ok().filter(|n| *n <= max).ok_or_else(|| {
        Reply::error(
            400,
            &format!("{name} must be a whole number from 0 to {max}"),
        )
    })
}

/// `GET /slow?ms=N`: waits N milliseconds (at most [`MAX_SLOW_MS`], 1000 when absent),
/// then answers `200` `{"slept_ms": N}`; `400` for a bad N. Logs `slow request
/// started` when it begins, so that tests know it is in flight.
///
/// It does not watch the request-scope token, like a handler stuck on I/O: it is what
/// the drain deadline is for.
pub async fn slow(query: Option<&str>) -> Reply {
    let ms = match number(query, "ms", 1000, MAX_SLOW_MS) {
        Ok(ms) => ms,
        Err(reply) => return reply,
    };
    info!(ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Reply::json(200, serde_json::json!({ "slept_ms": ms }).to_string())
}

/// `GET /stream?chunks=N&interval_ms=M`: N lines (`chunk 0\n`, `chunk 1\n`, ...), one
/// every M ms, the first at once; N at most [`MAX_STREAM_CHUNKS`] (10 when absent), M
/// at most [`MAX_STREAM_INTERVAL_MS`] (100 when absent). Serve the lines as a streaming
/// `200` body with [`TEXT`].
///
/// # Errors
///
/// A `400` [`Reply`] for a bad N or M.
pub fn stream(query: Option<&str>) -> Result<impl Stream<Item = String> + Send + 'static, Reply> {
    let chunks = number(query, "chunks", 10, MAX_STREAM_CHUNKS)?;
    let interval =
        Duration::from_millis(number(query, "interval_ms", 100, MAX_STREAM_INTERVAL_MS)?);
    Ok(futures_util::stream::unfold(0u64, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((format!("chunk {i}\n"), i + 1))
    }))
}

/// `GET /events?interval_ms=M`: the numbers of the SSE ticks (`0`, `1`, ...), one every
/// M ms (at most [`MAX_STREAM_INTERVAL_MS`], 1000 when absent, at least 1), the first at
/// once; never ending. Each binary sends them as `event: tick` / `data: <n>` through its
/// adapter's SSE helper, which ends the stream with a `shutdown` event when the drain
/// begins.
///
/// # Errors
///
/// A `400` [`Reply`] for a bad M.
pub fn ticks(query: Option<&str>) -> Result<impl Stream<Item = u64> + Send + 'static, Reply> {
    let interval = number(query, "interval_ms", 1000, MAX_STREAM_INTERVAL_MS)?.max(1);
    let interval = Duration::from_millis(interval);
    Ok(futures_util::stream::unfold(0u64, move |n| async move {
        if n > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((n, n + 1))
    }))
}

/// The name of the events of `/events`.
pub const TICK_EVENT: &str = "tick";

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("ms=5&x=1"), "ms"), Some("5"));
        assert_eq!(query_param(Some("x=1&ms=7"), "ms"), Some("7"));
        assert_eq!(query_param(Some("ms"), "ms"), None);
        assert_eq!(query_param(None, "ms"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_waits_and_rejects_bad_values() {
        let started = tokio::time::Instant::now();
        let reply = slow(Some("ms=1500")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, r#"{"slept_ms":1500}"#);
        assert_eq!(started.elapsed(), Duration::from_millis(1500));

        for bad in ["ms=60001", "ms=-1", "ms=abc", "ms="] {
            let reply = slow(Some(bad)).await;
            assert_eq!(reply.status, 400, "{bad}");
            assert!(reply.body.contains("ms must be"), "{}", reply.body);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stream_sends_n_lines_m_ms_apart() {
        let started = tokio::time::Instant::now();
        let lines: Vec<String> = stream(Some("chunks=3&interval_ms=200"))
            .expect("valid")
            .collect()
            .await;
        assert_eq!(lines, ["chunk 0\n", "chunk 1\n", "chunk 2\n"]);
        assert_eq!(started.elapsed(), Duration::from_millis(400));
        assert_eq!(stream(Some("chunks=0")).expect("valid").count().await, 0);
        assert!(stream(Some("chunks=10001")).is_err());
        assert!(stream(Some("interval_ms=x")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_count_up_m_ms_apart_the_first_at_once() {
        let started = tokio::time::Instant::now();
        let ticks: Vec<u64> = ticks(Some("interval_ms=250"))
            .expect("valid")
            .take(3)
            .collect()
            .await;
        assert_eq!(ticks, [0, 1, 2]);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        let started = tokio::time::Instant::now();
        let _: Vec<u64> = super::ticks(None).expect("valid").take(2).collect().await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "1000 ms by default"
        );
        assert!(super::ticks(Some("interval_ms=60001")).is_err());
        assert!(super::ticks(Some("interval_ms=x")).is_err());
    }

    #[test]
    fn replies() {
        let reply = Reply::unavailable(10);
        assert_eq!(reply.status, 503);
        assert_eq!(reply.retry_after_secs, Some(10));
        assert_eq!(
            Reply::error(404, "no \"x\"").body,
            r#"{"error":"no \"x\""}"#
        );
        assert_eq!(Reply::too_large().status, 413);
    }
}
