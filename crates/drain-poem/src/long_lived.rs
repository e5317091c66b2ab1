//! Long-lived responses that end when the drain begins: the [`OnDrain`] extractor, the
//! [`sse`] helper (an [`Sse`] response), and the [`ws`](crate::ws) module's WebSocket
//! sessions.

use std::io;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use poem::http::StatusCode;
use poem::web::sse::Event;
use poem::{Body, FromRequest, IntoResponse, Request, RequestBody, Response};
use shutdown_core::{DrainSignal, Shutdown, UntilDrain};

/// The [`Shutdown`] in the request's data (`EndpointExt::data(shutdown)`), or the
/// error that says how to put it there.
pub(crate) fn shutdown_of(request: &Request) -> poem::Result<&Shutdown> {
    request.data::<Shutdown>().ok_or_else(|| {
        poem::Error::from_string(
            "drain-poem: no `Shutdown` in the request's data: add `.data(shutdown.clone())` to the endpoint",
            StatusCode::INTERNAL_SERVER_ERROR,
        )
    })
}

/// Extracts the [`DrainSignal`]: a future (and a flag) that fires when the drain begins,
/// after the pre-stop delay, for a handler to end a long-lived response on its own
/// (distinct from `Shutdown::request_token()`, cancelled at the drain deadline).
///
/// It is built from the [`Shutdown`] in the request's data (`.data(shutdown)` on the
/// endpoint, which the application shares anyway), so the drain middleware does
/// nothing for it per request. Without it the extraction fails with a `500` that says
/// so.
///
/// ```
/// use drain_poem::OnDrain;
/// use poem::{EndpointExt, Route, get, handler};
/// use shutdown_core::Shutdown;
///
/// #[handler]
/// async fn long_poll(OnDrain(drain): OnDrain) -> &'static str {
///     tokio::select! {
///         () = drain.wait() => "come back later",
///         () = tokio::time::sleep(std::time::Duration::from_secs(30)) => "nothing new",
///     }
/// }
///
/// let shutdown = Shutdown::default();
/// let app = Route::new().at("/poll", get(long_poll)).data(shutdown);
/// ```
#[derive(Debug, Clone)]
pub struct OnDrain(pub DrainSignal);

impl<'a> FromRequest<'a> for OnDrain {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(shutdown_of(request)?.drain_signal()))
    }
}

/// An SSE response of `events` that ends when the drain begins: see [`Sse`].
///
/// ```
/// use std::time::Duration;
///
/// use drain_poem::OnDrain;
/// use poem::handler;
/// use poem::web::sse::Event;
///
/// #[handler]
/// fn events(OnDrain(drain): OnDrain) -> drain_poem::Sse {
///     let ticks = futures_util::stream::unfold(0_u64, |n| async move {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         Some((Event::message(n.to_string()).event_type("tick"), n + 1))
///     });
///     drain_poem::sse(ticks, &drain).keep_alive(Duration::from_secs(15))
/// }
/// ```
pub fn sse<S>(events: S, drain: &DrainSignal) -> Sse
where
    S: Stream<Item = Event> + Send + 'static,
{
    let last = Bytes::from(drain.shutdown_event().to_text());
    let text = events.map(|event| Bytes::from(event.to_string()));
    Sse {
        events: UntilDrain::new(text, drain, last).boxed(),
        keep_alive: None,
    }
}

/// An SSE response (poem's [`SSE`](poem::web::sse::SSE), with the same headers and
/// keep-alive) that ends when the drain begins: its last event is
///
/// ```text
/// event: shutdown
/// retry: <SHUTDOWN_RETRY_AFTER in milliseconds>
/// data: shutting down
/// ```
///
/// in one block (poem's own `Event` cannot carry `retry:` with a name), then the body
/// ends properly (the chunked terminator on HTTP/1.1): the client sees a complete
/// response and the request counts as drained. Made by [`sse`].
pub struct Sse {
    events: futures_util::stream::BoxStream<'static, Bytes>,
    keep_alive: Option<Duration>,
}

impl Sse {
    /// Sends a comment (`:`) after each `interval` without an event, as poem's `SSE`
    /// does.
    #[must_use]
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl IntoResponse for Sse {
    fn into_response(self) -> Response {
        let mut events = self.events;
        let body = match self.keep_alive {
            None => Body::from_bytes_stream(events.map(Ok::<_, io::Error>)),
            Some(interval) => {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                let comment = Bytes::from_static(b":\n\n");
                let stream = futures_util::stream::poll_fn(move |cx| {
                    if let Poll::Ready(event) = events.poll_next_unpin(cx) {
                        return Poll::Ready(event);
                    }
                    ticks.poll_tick(cx).map(|_| Some(comment.clone()))
                });
                Body::from_bytes_stream(stream.map(Ok::<_, io::Error>))
            }
        };
        Response::builder()
            .content_type("text/event-stream")
            .header("X-Accel-Buffering", "no")
            .header("Cache-Control", "no-cache")
            .body(body)
    }
}
