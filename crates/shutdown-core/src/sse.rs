//! [`UntilDrain`]: a stream of Server-Sent Events that ends, with a last `shutdown`
//! event, when the drain begins; each adapter's SSE helper wraps its framework's event
//! stream in it.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::drain_signal::{DrainSignal, DrainStarted};

pin_project! {
    /// A stream that yields the items of `stream` until the drain begins, then one last
    /// item (the [`ShutdownEvent`](crate::ShutdownEvent) in the framework's event type),
    /// and ends.
    ///
    /// Wrapped around the event stream of an SSE response, it ends the response
    /// properly when the drain begins: the client gets the `shutdown` event with its
    /// `retry:` and a complete body (on HTTP/1.1 the chunked terminator), and the
    /// request, whose guard the body holds, leaves the count as drained instead of
    /// holding the drain open until its deadline. The end is recorded once with
    /// [`DrainSignal::stream_closed`]. A stream that ends on its own ends the response
    /// as usual, without the last event.
    ///
    /// Once the drain has begun the last item comes before any other: an event the
    /// inner stream has ready at that moment is not sent.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use shutdown_core::{Shutdown, UntilDrain};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::default();
    /// let ticks = futures_util::stream::iter(0..).map(|n| format!("data: {n}\n\n"));
    /// let signal = shutdown.drain_signal();
    /// let last = signal.shutdown_event().to_text();
    /// let mut events = std::pin::pin!(UntilDrain::new(ticks, &signal, last));
    /// assert_eq!(events.next().await.as_deref(), Some("data: 0\n\n"));
    ///
    /// shutdown.request_shutdown("deploy");
    /// shutdown.drain().await;
    /// assert_eq!(
    ///     events.next().await.as_deref(),
    ///     Some("event: shutdown\nretry: 10000\ndata: shutting down\n\n")
    /// );
    /// assert_eq!(events.next().await, None);
    /// assert_eq!(shutdown.streams_closed_by_drain(), 1);
    /// # }
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct UntilDrain<S, T> {
        #[pin]
        stream: S,
        #[pin]
        drain: DrainStarted,
        last: Option<T>,
        ended: bool,
    }
}

impl<S, T> UntilDrain<S, T> {
    /// Yields the items of `stream` until `signal` fires, then `last`, then ends.
    pub fn new(stream: S, signal: &DrainSignal, last: T) -> Self {
        Self {
            stream,
            drain: signal.wait(),
            last: Some(last),
            ended: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S, T> Stream for UntilDrain<S, T>
where
    S: Stream<Item = T>,
{
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if this.drain.as_mut().poll(cx).is_ready() {
            *this.ended = true;
            this.drain.stream_closed();
            return Poll::Ready(this.last.take());
        }
        match this.stream.poll_next(cx) {
            Poll::Ready(None) => {
                *this.ended = true;
                Poll::Ready(None)
            }
            poll => poll,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.ended {
            return (0, Some(0));
        }
        let (_, upper) = self.stream.size_hint();
        (0, upper.and_then(|n| n.checked_add(1)))
    }
}

impl<S, T> fmt::Debug for UntilDrain<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilDrain")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Shutdown, ShutdownConfig};

    async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
        std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn runs_through_the_pre_stop_delay_and_ends_at_the_drain() {
        let shutdown =
            Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(2)));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        let rx = channel::Receiver(rx);
        let signal = shutdown.drain_signal();
        let mut events = Box::pin(UntilDrain::new(rx, &signal, "last"));
        // What the response body holds.
        let guard = shutdown.try_enter();
        tx.send("one").expect("open");
        assert_eq!(next(&mut events).await, Some("one"));

        shutdown.request_shutdown("test");
        let drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain().await }
        });
        tx.send("during the delay").expect("open");
        assert_eq!(next(&mut events).await, Some("during the delay"));
        assert_eq!(next(&mut events).await, Some("last"), "at the drain");
        assert!(shutdown.is_draining());
        tx.send("after").expect("still open");
        assert_eq!(next(&mut events).await, None);
        assert_eq!(next(&mut events).await, None, "fused");
        drop(guard);
        assert_eq!(drain.await.expect("drain").streams_closed_by_drain, 1);
    }

    #[tokio::test]
    async fn a_stream_that_ends_first_sends_no_shutdown_event() {
        let shutdown = Shutdown::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        let signal = shutdown.drain_signal();
        let mut events = Box::pin(UntilDrain::new(channel::Receiver(rx), &signal, "last"));
        drop(tx);
        assert_eq!(next(&mut events).await, None);
        shutdown.request_shutdown("test");
        let summary = shutdown.drain().await;
        assert_eq!(next(&mut events).await, None);
        assert_eq!(summary.streams_closed_by_drain, 0);
    }

    /// An mpsc receiver as a [`Stream`].
    mod channel {
        use super::*;

        pub(super) struct Receiver<T>(pub(super) tokio::sync::mpsc::UnboundedReceiver<T>);

        impl<T> Stream for Receiver<T> {
            type Item = T;

            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }
}
