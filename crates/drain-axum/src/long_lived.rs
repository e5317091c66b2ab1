//! Long-lived responses that end when the drain begins: the [`OnDrain`] extractor, the
//! [`sse`] helper, and the [`ws`](crate::ws) module's WebSocket sessions.

use std::convert::Infallible;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::sse::{Event, Sse};
use futures_core::Stream;
use shutdown_core::{DrainSignal, Shutdown, ShutdownEvent, UntilDrain};

/// Extracts the [`DrainSignal`]: a future (and a flag) that fires when the drain begins,
/// after the pre-stop delay, for a handler to end a long-lived response on its own
/// (distinct from `Shutdown::request_token()`, cancelled at the drain deadline).
///
/// It is built from the [`Shutdown`] of the router's state (`Shutdown: FromRef<S>`: a
/// state that is the `Shutdown`, or implements `FromRef` for it), so the drain layer
/// does nothing for it per request. Extracting it costs a reference count.
///
/// ```
/// use axum::{Router, routing::get};
/// use drain_axum::OnDrain;
/// use shutdown_core::Shutdown;
///
/// async fn long_poll(OnDrain(drain): OnDrain) -> &'static str {
///     tokio::select! {
///         () = drain.wait() => "come back later",
///         () = tokio::time::sleep(std::time::Duration::from_secs(30)) => "nothing new",
///     }
/// }
///
/// let shutdown = Shutdown::default();
/// let app: Router = Router::new().route("/poll", get(long_poll)).with_state(shutdown);
/// ```
#[derive(Debug, Clone)]
pub struct OnDrain(pub DrainSignal);

impl<S> FromRequestParts<S> for OnDrain
where
    Shutdown: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Self(DrainSignal::from(Shutdown::from_ref(state))))
    }
}

/// An SSE response of `stream` that ends when the drain begins: axum's [`Sse`] around
/// [`UntilDrain`]. The last event is `event: shutdown` with `retry:` (the
/// configuration's `Retry-After`, in milliseconds) and `data: shutting down`; then the
/// body ends properly (the chunked terminator on HTTP/1.1), so the client sees a
/// complete response and the request counts as drained. A stream that ends on its own
/// ends the response without that event. Add `keep_alive` to the result as usual.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// use axum::response::sse::{Event, KeepAlive, Sse};
/// use drain_axum::OnDrain;
/// use futures_core::Stream;
///
/// async fn events(OnDrain(drain): OnDrain) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
///     let ticks = futures_util::stream::unfold(0_u64, |n| async move {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         Some((Ok(Event::default().event("tick").data(n.to_string())), n + 1))
///     });
///     drain_axum::sse(ticks, &drain).keep_alive(KeepAlive::default())
/// }
/// ```
pub fn sse<S, E>(stream: S, drain: &DrainSignal) -> Sse<UntilDrain<S, Result<Event, E>>>
where
    S: Stream<Item = Result<Event, E>> + Send + 'static,
    E: Into<axum::BoxError> + Send + 'static,
{
    let last = drain.shutdown_event();
    let event = Event::default()
        .event(ShutdownEvent::NAME)
        .retry(last.retry())
        .data(ShutdownEvent::DATA);
    Sse::new(UntilDrain::new(stream, drain, Ok(event)))
}
