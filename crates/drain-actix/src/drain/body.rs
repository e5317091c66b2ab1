use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Payload;
use actix_web::web::Bytes;
use futures_util::Stream;
use pin_project_lite::pin_project;
use shutdown_core::{REJECTION_MESSAGE, RequestGuard};

pin_project! {
    /// The response body of [`Drain`](super::Drain): the inner service's body holding
    /// its request's guard, or the `503` message of a rejected request.
    ///
    /// The guard is released when the body has yielded its last chunk, when it yields an
    /// error, or when it is dropped (actix drops it unread for a body of size zero or
    /// none, and when the connection goes away mid-stream), whichever comes first; so a
    /// streaming or SSE response holds the drain open until it ends.
    ///
    /// It does not override [`MessageBody::try_into_bytes`]: a body taken whole without
    /// being polled would release its guard before a byte was written.
    pub struct GuardedBody<B> {
        // `None` for a rejection, whose message is `rejected`.
        #[pin]
        body: Option<B>,
        guard: Option<RequestGuard>,
        rejected: Option<Box<Rejected>>,
    }
}

/// The `503` message, and the rejected request's body to read and throw away first.
struct Rejected {
    payload: Option<Payload>,
    budget: u64,
    message: Option<&'static str>,
}

impl Rejected {
    /// The message, once the payload has ended, failed or filled the budget.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(payload) = &mut self.payload {
            while let Some(Ok(chunk)) = ready!(Pin::new(&mut *payload).poll_next(cx)) {
                self.budget = self.budget.saturating_sub(chunk.len() as u64);
                if self.budget == 0 {
                    break;
                }
            }
            self.payload = None;
        }
        Poll::Ready(
            self.message
                .take()
                .map(|m| Bytes::from_static(m.as_bytes())),
        )
    }
}

impl<B> GuardedBody<B> {
    /// Wraps `body`, holding `guard` until the body ends, fails or is dropped.
    pub fn new(body: B, guard: Option<RequestGuard>) -> Self {
        Self {
            body: Some(body),
            guard,
            rejected: None,
        }
    }

    /// The body of a `503` for a rejected request: reads `payload` (the rejected
    /// request's body) to its end or for `discard_limit` bytes and throws it away, then
    /// yields [`REJECTION_MESSAGE`]. Reading first keeps actix from closing the
    /// connection with unread input (the kernel would send a reset, and a client still
    /// sending would get an error instead of the `503`). `None` reads nothing.
    pub fn rejection(payload: Payload, discard_limit: Option<u64>) -> Self {
        let budget = discard_limit.unwrap_or(0);
        let payload = (budget > 0 && !matches!(payload, Payload::None)).then_some(payload);
        Self {
            body: None,
            guard: None,
            rejected: Some(Box::new(Rejected {
                payload,
                budget,
                message: Some(REJECTION_MESSAGE),
            })),
        }
    }

    /// `true` while this body still holds its request's guard.
    pub fn holds_guard(&self) -> bool {
        self.guard.is_some()
    }
}

impl<B: MessageBody> MessageBody for GuardedBody<B> {
    type Error = B::Error;

    #[inline]
    fn size(&self) -> BodySize {
        match &self.body {
            Some(body) => body.size(),
            None => BodySize::Sized(REJECTION_MESSAGE.len() as u64),
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let Some(body) = this.body.as_pin_mut() else {
            return match this.rejected {
                Some(rejected) => rejected.poll_message(cx).map(|m| m.map(Ok)),
                None => Poll::Ready(None),
            };
        };
        let chunk = ready!(body.poll_next(cx));
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
