//! [`DrainSignal`]: what a long-lived handler (an SSE stream, a WebSocket session, a
//! long poll) watches to end on its own when the drain begins.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;

use crate::Shutdown;

/// Fires when the drain begins: after the trigger and the pre-stop delay, at the moment
/// new requests start to get `503`. A long-lived response (SSE, WebSocket, long poll)
/// that ends then counts as drained, not interrupted, and the drain does not have to
/// wait for its deadline.
///
/// It differs from [`Shutdown::request_token`], which is cancelled at the drain
/// *deadline*, when what is still running is cut, and from [`Shutdown::triggered`],
/// which resolves at the trigger, when requests are still served (the pre-stop delay).
///
/// Cheap: one reference count to clone or to make, no lock and no allocation to make or
/// to check ([`is_draining`](Self::is_draining) reads an atomic). Awaiting it (it is
/// [`IntoFuture`], see [`wait`](Self::wait)) registers a waiter once it is polled. The
/// adapters hand it to handlers as an extractor (`OnDrain`), built from the `Shutdown`
/// the application already shares, so the drain middleware does nothing for it per
/// request.
///
/// ```
/// use shutdown_core::Shutdown;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = Shutdown::default();
/// let signal = shutdown.drain_signal();
/// let guard = shutdown.try_enter().expect("running");
/// // A long poll: answers when it has news, or when the drain begins.
/// let handler = tokio::spawn(async move {
///     let _guard = guard;
///     tokio::select! {
///         () = signal.wait() => "come back later",
///         () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => "news",
///     }
/// });
/// shutdown.request_shutdown("deploy");
/// let report = shutdown.run().await;
/// assert_eq!(handler.await.unwrap(), "come back later");
/// assert_eq!((report.drain.drained(), report.drain.interrupted), (1, 0));
/// # }
/// ```
#[derive(Clone)]
pub struct DrainSignal {
    shutdown: Shutdown,
}

impl DrainSignal {
    pub(crate) fn new(shutdown: Shutdown) -> Self {
        Self { shutdown }
    }

    /// `true` once the drain has begun. Reads an atomic.
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_draining()
    }

    /// A future that resolves once the drain has begun (at once if it has). Cancel-safe;
    /// make as many as needed, each costs one reference count.
    pub fn wait(&self) -> DrainStarted {
        DrainStarted {
            notified: self.shutdown.drain_notify().notified_owned(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Records that a long-lived response ended because the drain began (an SSE stream
    /// sent its last event, a WebSocket sent its Close): counted in
    /// [`DrainSummary::streams_closed_by_drain`](crate::DrainSummary::streams_closed_by_drain)
    /// and reported to the observer. The helpers of the adapters call it; call it from
    /// a handler of your own that ends a stream on this signal.
    pub fn stream_closed(&self) {
        self.shutdown.record_stream_closed();
    }

    /// The last event of an SSE stream ended by the drain: see [`ShutdownEvent`].
    pub fn shutdown_event(&self) -> ShutdownEvent {
        ShutdownEvent {
            retry: self.shutdown.config().retry_after(),
        }
    }

    /// The handle this signal watches.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

impl From<Shutdown> for DrainSignal {
    fn from(shutdown: Shutdown) -> Self {
        Self::new(shutdown)
    }
}

impl IntoFuture for DrainSignal {
    type Output = ();
    type IntoFuture = DrainStarted;

    fn into_future(self) -> DrainStarted {
        self.wait()
    }
}

impl fmt::Debug for DrainSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainSignal")
            .field("is_draining", &self.is_draining())
            .finish()
    }
}

pin_project! {
    /// The future of [`DrainSignal::wait`]: resolves once the drain has begun.
    #[must_use = "futures do nothing unless polled"]
    pub struct DrainStarted {
        #[pin]
        notified: OwnedNotified,
        shutdown: Shutdown,
    }
}

impl DrainStarted {
    /// `true` once the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_draining()
    }

    /// See [`DrainSignal::stream_closed`].
    pub fn stream_closed(&self) {
        self.shutdown.record_stream_closed();
    }
}

impl Future for DrainStarted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // The waiter exists since `wait`: a drain that begins between this check and
        // the registration below still wakes it (`Notify::notify_waiters` reaches
        // every future made before the call).
        if this.shutdown.is_draining() {
            return Poll::Ready(());
        }
        this.notified.poll(cx)
    }
}

impl fmt::Debug for DrainStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainStarted")
            .field("is_draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

/// The last event of a Server-Sent Events stream that the drain ends, in plain values:
/// each adapter maps it to its framework's event type.
///
/// On the wire it is one event:
///
/// ```text
/// event: shutdown
/// retry: 10000
/// data: shutting down
///
/// ```
///
/// `retry` is the configuration's `Retry-After` in milliseconds
/// ([`ShutdownConfig::retry_after`](crate::ShutdownConfig::retry_after),
/// `SHUTDOWN_RETRY_AFTER`): a browser's `EventSource` waits that long before it
/// reconnects (to another instance, once the load balancer has taken this one out).
/// The `data` line is there because `EventSource` dispatches no event without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownEvent {
    retry: Duration,
}

impl ShutdownEvent {
    /// The event's name: `shutdown`.
    pub const NAME: &'static str = "shutdown";
    /// The event's data: `shutting down`.
    pub const DATA: &'static str = "shutting down";

    /// How long the client should wait before it reconnects.
    pub fn retry(&self) -> Duration {
        self.retry
    }

    /// [`retry`](Self::retry) in whole milliseconds, as the `retry:` field carries it.
    pub fn retry_ms(&self) -> u64 {
        u64::try_from(self.retry.as_millis()).unwrap_or(u64::MAX)
    }

    /// The event in the `text/event-stream` format, for a body written by hand.
    pub fn to_text(&self) -> String {
        format!(
            "event: {}\nretry: {}\ndata: {}\n\n",
            Self::NAME,
            self.retry_ms(),
            Self::DATA
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ShutdownConfig;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_start_of_the_drain_not_at_the_trigger() {
        let shutdown =
            Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(5)));
        let signal = shutdown.drain_signal();
        let waiting = tokio::spawn(signal.clone().into_future());
        let guard = shutdown.try_enter();
        shutdown.request_shutdown("test");
        let drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain().await }
        });
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(!waiting.is_finished(), "not during the pre-stop delay");
        assert!(!signal.is_draining());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(waiting.is_finished(), "at the start of the drain");
        assert!(signal.is_draining());
        assert!(!drain.is_finished(), "while requests are still in flight");
        signal.wait().await;
        drop(guard);
        let summary = drain.await.expect("drain");
        assert_eq!(summary.interrupted, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn streams_closed_are_counted_in_the_summary() {
        let shutdown = Shutdown::default();
        let signal = shutdown.drain_signal();
        let guard = shutdown.try_enter();
        let stream = tokio::spawn(async move {
            signal.wait().await;
            signal.stream_closed();
            drop(guard);
        });
        shutdown.request_shutdown("test");
        let summary = shutdown.drain().await;
        stream.await.expect("stream");
        assert_eq!(summary.streams_closed_by_drain, 1);
        assert_eq!((summary.drained(), summary.interrupted), (1, 0));
    }

    #[test]
    fn the_shutdown_event_carries_the_retry_after_in_milliseconds() {
        let shutdown =
            Shutdown::new(ShutdownConfig::new().with_retry_after(Duration::from_secs(3)));
        let event = shutdown.drain_signal().shutdown_event();
        assert_eq!(event.retry_ms(), 3000);
        assert_eq!(
            event.to_text(),
            "event: shutdown\nretry: 3000\ndata: shutting down\n\n"
        );
    }
}
