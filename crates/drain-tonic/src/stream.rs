//! The drain signal for streaming handlers: [`end_on_drain`] ends a response stream
//! with a status when the drain begins.
//!
//! A unary RPC finishes by itself; a server stream or a bidirectional stream may never.
//! [`DrainLayer`](crate::DrainLayer) counts it until its stream has ended, so one that
//! ignores the shutdown holds the drain open until `SHUTDOWN_TIMEOUT`, is then cut and
//! counted as interrupted (exit code 3). Wrapped with [`end_on_drain`], it sends
//! what it has, then ends with `UNAVAILABLE` (or the status of
//! [`DrainStream::with_status`]) at the start of the drain (after the pre-stop delay),
//! so the client sees a proper end, reconnects elsewhere and resumes, and the RPC
//! counts as completed.
//!
//! A handler that needs more than ending its stream (flushing its own state, sending a
//! last message) awaits [`Shutdown::draining`] itself.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use shutdown_core::{DrainStarted, Shutdown};
use tonic::Status;

/// The message of the status that ends a stream at the start of the drain.
pub const DRAIN_MESSAGE: &str = "the server is shutting down; reconnect to resume";

/// `stream`, ended at the start of the drain of `shutdown` with
/// `UNAVAILABLE` ([`DRAIN_MESSAGE`]).
///
/// Items the stream has already produced are sent first; the status follows them as
/// the stream's trailers. A stream that ends on its own before the drain ends as usual.
///
/// ```
/// use drain_tonic::end_on_drain;
/// use shutdown_core::{DrainStarted, Shutdown};
/// use tonic::{Response, Status};
///
/// # async fn handler(shutdown: Shutdown) -> Result<(), Status> {
/// let ticks = tokio_stream::iter([Ok::<_, Status>(1), Ok(2)]);
/// let response = Response::new(end_on_drain(ticks, &shutdown));
/// # let _ = response;
/// # Ok(())
/// # }
/// ```
pub fn end_on_drain<S>(stream: S, shutdown: &Shutdown) -> DrainStream<S> {
    DrainStream {
        inner: stream,
        draining: Box::pin(shutdown.drain_signal().wait()),
        status: Some(Status::unavailable(DRAIN_MESSAGE)),
        ended: false,
    }
}

pin_project! {
    /// A response stream that ends with a status when the drain begins: see
    /// [`end_on_drain`].
    pub struct DrainStream<S> {
        #[pin]
        inner: S,
        // Boxed: the stream stays `Unpin` when `S` is.
        draining: Pin<Box<DrainStarted>>,
        status: Option<Status>,
        ended: bool,
    }
}

impl<S> DrainStream<S> {
    /// Ends the stream with `status` instead of `UNAVAILABLE`; `Status::ok("")` ends it
    /// as if it had finished.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, T> Stream for DrainStream<S>
where
    S: Stream<Item = Result<T, Status>>,
{
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if this.draining.as_mut().poll(cx).is_ready() {
            *this.ended = true;
            // Counted in the report's `streams_closed_by_drain`.
            this.draining.stream_closed();
            return Poll::Ready(this.status.take().map(Err));
        }
        let item = this.inner.poll_next(cx);
        if let Poll::Ready(None) = item {
            *this.ended = true;
        }
        item
    }
}

impl<S> fmt::Debug for DrainStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shutdown_core::ShutdownConfig;
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::IntervalStream;
    use tonic::Code;

    use super::*;

    /// `1, 2, 3, ...`, one every 100 ms.
    fn ticks() -> impl Stream<Item = Result<u32, Status>> + Unpin {
        let interval = tokio::time::interval(Duration::from_millis(100));
        let mut n = 0;
        IntervalStream::new(interval).map(move |_| {
            n += 1;
            Ok(n)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_ends_with_unavailable_when_the_drain_begins() {
        let shutdown =
            Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(1)));
        let mut stream = end_on_drain(ticks(), &shutdown);
        assert_eq!(stream.next().await.expect("item").expect("ok"), 1);
        shutdown.request_shutdown("test");
        let drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain().await }
        });
        let mut items = 1;
        let status = loop {
            match stream.next().await.expect("not ended yet") {
                Ok(_) => items += 1,
                Err(status) => break status,
            }
        };
        assert!(
            items >= 10,
            "served through the pre-stop delay: {items} items"
        );
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), DRAIN_MESSAGE);
        assert!(stream.next().await.is_none(), "ended after the status");
        drain.await.expect("drain");
        assert_eq!(
            shutdown.streams_closed_by_drain(),
            1,
            "counted as closed by the drain"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_status_can_be_ok() {
        let shutdown = Shutdown::default();
        let mut stream = end_on_drain(ticks(), &shutdown).with_status(Status::ok("bye"));
        shutdown.request_shutdown("test");
        shutdown.drain().await;
        let status = stream.next().await.expect("a status").expect_err("status");
        assert_eq!(status.code(), Code::Ok);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_that_ends_first_ends_as_usual() {
        let shutdown = Shutdown::default();
        let mut stream = end_on_drain(tokio_stream::iter([Ok::<_, Status>(7)]), &shutdown);
        assert_eq!(stream.next().await.expect("item").expect("ok"), 7);
        assert!(stream.next().await.is_none());
        shutdown.request_shutdown("test");
        shutdown.drain().await;
        assert!(stream.next().await.is_none(), "no status after its own end");
        assert_eq!(shutdown.streams_closed_by_drain(), 0);
    }
}
