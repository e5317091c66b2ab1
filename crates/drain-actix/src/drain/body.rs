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
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            guard: Option<RequestGuard>,
        },
        Message {
            pending: bool,
            discard: Option<Payload>,
            budget: u64,
        },
    }
}

impl<B> GuardedBody<B> {
    /// Wraps `body`, holding `guard` until the body ends, fails or is dropped.
    pub fn new(body: B, guard: Option<RequestGuard>) -> Self {
        Self {
            kind: Kind::Inner { body, guard },
        }
    }

    /// The body of a `503` for a rejected request: reads `payload` (the rejected
    /// request's body) to its end or for `discard_limit` bytes and throws it away, then
    /// yields [`REJECTION_MESSAGE`]. Reading first keeps actix from closing the
    /// connection with unread input (the kernel would send a reset, and a client still
    /// sending would get an error instead of the `503`). `None` reads nothing.
    pub fn rejection(payload: Payload, discard_limit: Option<u64>) -> Self {
        let budget = discard_limit.unwrap_or(0);
        let discard = (budget > 0 && !matches!(payload, Payload::None)).then_some(payload);
        Self {
            kind: Kind::Message {
                pending: true,
                discard,
                budget,
            },
        }
    }

    /// `true` while this body still holds its request's guard.
    pub fn holds_guard(&self) -> bool {
        matches!(&self.kind, Kind::Inner { guard: Some(_), .. })
    }
}

impl<B: MessageBody> MessageBody for GuardedBody<B> {
    type Error = B::Error;

    #[inline]
    fn size(&self) -> BodySize {
        match &self.kind {
            Kind::Inner { body, .. } => body.size(),
            Kind::Message { .. } => BodySize::Sized(REJECTION_MESSAGE.len() as u64),
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body, guard } => {
                let chunk = ready!(body.poll_next(cx));
                if !matches!(chunk, Some(Ok(_))) {
                    guard.take();
                }
                Poll::Ready(chunk)
            }
            KindProj::Message {
                pending,
                discard,
                budget,
            } => {
                if let Some(payload) = discard {
                    // Until the body ends or fails, or the budget is spent.
                    while let Some(Ok(chunk)) = ready!(Pin::new(&mut *payload).poll_next(cx)) {
                        *budget = budget.saturating_sub(chunk.len() as u64);
                        if *budget == 0 {
                            break;
                        }
                    }
                    *discard = None;
                }
                let message = std::mem::replace(pending, false).then_some(REJECTION_MESSAGE);
                Poll::Ready(message.map(|m| Ok(Bytes::from_static(m.as_bytes()))))
            }
        }
    }
}

impl<B> fmt::Debug for GuardedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedBody")
            .field("holds_guard", &self.holds_guard())
            .finish_non_exhaustive()
    }
}
