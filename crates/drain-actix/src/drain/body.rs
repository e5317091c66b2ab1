use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::Payload;
use actix_web::web::Bytes;
use futures_util::Stream;
use pin_project_lite::pin_project;
use shutdown_core::{REJECTION_MESSAGE, RequestGuard};

/// The response body of [`DrainMiddleware`](super::DrainMiddleware): the inner service's
/// body with its request's guard, or the `503` message of a rejected request.
pub type DrainBody<B> = EitherBody<GuardedBody<B>, RejectionBody>;

pin_project! {
    /// The inner service's response body, holding the request's guard.
    ///
    /// The guard is released when the body has yielded its last chunk, when it yields an
    /// error, or when it is dropped (actix drops it unread for a body of size zero or
    /// none, and when the connection goes away mid-stream), whichever comes first; so a
    /// streaming or SSE response holds the drain open until it ends.
    ///
    /// It does not override [`MessageBody::try_into_bytes`]: a body taken whole without
    /// being polled would release its guard before a byte was written.
    pub struct GuardedBody<B> {
        #[pin]
        body: B,
        guard: Option<RequestGuard>,
    }
}

impl<B> GuardedBody<B> {
    /// Wraps `body`, holding `guard` until the body ends, fails or is dropped.
    pub fn new(body: B, guard: Option<RequestGuard>) -> Self {
        Self { body, guard }
    }

    /// `true` while this body still holds its request's guard.
    pub fn holds_guard(&self) -> bool {
        self.guard.is_some()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }
}

impl<B: MessageBody> MessageBody for GuardedBody<B> {
    type Error = B::Error;

    #[inline]
    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let chunk = ready!(this.body.poll_next(cx));
        if !matches!(chunk, Some(Ok(_))) {
            this.guard.take();
        }
        Poll::Ready(chunk)
    }
}

impl<B> fmt::Debug for GuardedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedBody")
            .field("holds_guard", &self.holds_guard())
            .finish_non_exhaustive()
    }
}

/// The body of a `503` sent to a request turned away during the drain:
/// [`REJECTION_MESSAGE`].
///
/// On HTTP/1.x it first reads the rejected request's own body to its end (or up to the
/// discard limit, see [`RequestGate::with_discard_limit`](shutdown_core::RequestGate::with_discard_limit))
/// and throws it away: actix closes a connection whose request body was not read to
/// the end, and closing a socket with unread input makes the kernel send a reset, so a
/// client still sending its body would get a write error instead of the answer. The
/// response head is written before that; only the message waits.
pub struct RejectionBody {
    message: Option<&'static str>,
    discard: Option<Payload>,
    budget: u64,
}

impl RejectionBody {
    /// The message, with nothing to read first.
    pub fn new() -> Self {
        Self {
            message: Some(REJECTION_MESSAGE),
            discard: None,
            budget: 0,
        }
    }

    /// The message, sent once `payload` has been read to its end or for `limit` bytes.
    /// A `limit` of `0` reads nothing.
    pub fn discarding(payload: Payload, limit: u64) -> Self {
        let discard = (limit > 0 && !matches!(payload, Payload::None)).then_some(payload);
        Self {
            message: Some(REJECTION_MESSAGE),
            discard,
            budget: limit,
        }
    }

    /// Ready once the request body has ended, failed, or the budget is spent.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(payload) = self.discard.as_mut() else {
            return Poll::Ready(());
        };
        // Until the body ends or fails, or the budget is spent.
        while let Some(Ok(chunk)) = ready!(Pin::new(&mut *payload).poll_next(cx)) {
            self.budget = self.budget.saturating_sub(chunk.len() as u64);
            if self.budget == 0 {
                break;
            }
        }
        self.discard = None;
        Poll::Ready(())
    }
}

impl Default for RejectionBody {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageBody for RejectionBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(REJECTION_MESSAGE.len() as u64)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        ready!(this.poll_discard(cx));
        Poll::Ready(
            this.message
                .take()
                .map(|m| Ok(Bytes::from_static(m.as_bytes()))),
        )
    }
}

impl fmt::Debug for RejectionBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectionBody")
            .field("discarding", &self.discard.is_some())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}
