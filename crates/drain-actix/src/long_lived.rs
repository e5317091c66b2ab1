//! Long-lived responses that end when the drain begins: the [`OnDrain`] extractor, the
//! [`sse`] helper, and the [`ws`](crate::ws) module's WebSocket sessions.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::{Bytes, Data};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::Stream;
use shutdown_core::{DrainSignal, Shutdown, UntilDrain};

/// The [`Shutdown`] in the application's data (`App::app_data(shutdown)` or
/// `App::app_data(web::Data::new(shutdown))`), or the error that says how to put it
/// there.
pub(crate) fn shutdown_of(request: &HttpRequest) -> Result<&Shutdown, actix_web::Error> {
    request
        .app_data::<Shutdown>()
        .or_else(|| request.app_data::<Data<Shutdown>>().map(|data| &***data))
        .ok_or_else(|| {
            actix_web::error::ErrorInternalServerError(
                "drain-actix: no `Shutdown` in the application's data: add `App::app_data(shutdown.clone())`",
            )
        })
}

/// Extracts the [`DrainSignal`]: a future (and a flag) that fires when the drain begins,
/// after the pre-stop delay, for a handler to end a long-lived response on its own
/// (distinct from `Shutdown::request_token()`, cancelled at the drain deadline).
///
/// It is built from the [`Shutdown`] in the application's data
/// (`App::app_data(shutdown.clone())`, or a `web::Data<Shutdown>`), so the drain
/// middleware does nothing for it per request. Without it the extraction fails with a
/// `500` that says so.
///
/// ```
/// use actix_web::{App, web};
/// use drain_actix::OnDrain;
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
/// let app = App::new().app_data(shutdown).route("/poll", web::get().to(long_poll));
/// ```
#[derive(Debug, Clone)]
pub struct OnDrain(pub DrainSignal);

impl FromRequest for OnDrain {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(shutdown_of(request).map(|shutdown| Self(shutdown.drain_signal())))
    }
}

/// A `text/event-stream` response of `events` that ends when the drain begins.
///
/// actix-web has no SSE type of its own: `events` yields the stream's text, each item
/// one or more whole events (`event: tick\ndata: 1\n\n`). The last event, once the
/// drain begins, is
///
/// ```text
/// event: shutdown
/// retry: <SHUTDOWN_RETRY_AFTER in milliseconds>
/// data: shutting down
/// ```
///
/// then the body ends properly (the chunked terminator on HTTP/1.1): the client sees a
/// complete response and the request counts as drained. The response carries
/// `Cache-Control: no-cache` and `X-Accel-Buffering: no`.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// use actix_web::HttpResponse;
/// use actix_web::web::Bytes;
/// use drain_actix::OnDrain;
///
/// async fn events(OnDrain(drain): OnDrain) -> HttpResponse {
///     let ticks = futures_util::stream::unfold(0_u64, |n| async move {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         let event = Bytes::from(format!("event: tick\ndata: {n}\n\n"));
///         Some((Ok::<_, Infallible>(event), n + 1))
///     });
///     drain_actix::sse(ticks, &drain)
/// }
/// ```
pub fn sse<S, E>(events: S, drain: &DrainSignal) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, E>> + 'static,
    E: Into<Box<dyn std::error::Error>> + 'static,
{
    let last = Bytes::from(drain.shutdown_event().to_text());
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(UntilDrain::new(events, drain, Ok(last)))
}
