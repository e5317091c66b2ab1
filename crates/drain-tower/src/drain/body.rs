use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use shutdown_core::RequestGuard;

/// The body of a rejected request.
pub(crate) const REJECTED_BODY: &[u8] = b"503 Service Unavailable: shutting down, retry later\n";

pin_project! {
    /// Response body of [`Drain`](super::Drain): the inner service's body with the
    /// request's guard, or the short message of a rejected request.
    ///
    /// The guard is released when the body has yielded its last frame, when it yields
    /// an error, or when it is dropped (the client went away), whichever comes first;
    /// so a streaming or SSE response holds the drain open until it ends.
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
            message: Option<&'static [u8]>,
        },
    }
}

impl<B> GuardedBody<B> {
    pub(crate) fn new(body: B, guard: Option<RequestGuard>) -> Self {
        Self {
            kind: Kind::Inner { body, guard },
        }
    }

    pub(crate) fn message(message: &'static [u8]) -> Self {
        Self {
            kind: Kind::Message {
                message: Some(message),
            },
        }
    }

    /// `true` while this body still holds its request's guard.
    pub fn holds_guard(&self) -> bool {
        matches!(&self.kind, Kind::Inner { guard: Some(_), .. })
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, guard } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                let ended = match &frame {
                    None | Some(Err(_)) => true,
                    Some(Ok(_)) => body.is_end_stream(),
                };
                if ended {
                    guard.take();
                }
                Poll::Ready(frame)
            }
            KindProj::Message { message } => {
                Poll::Ready(message.take().map(|m| Ok(Frame::data(B::Data::from(m)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Message { message } => message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Message { message } => {
                SizeHint::with_exact(message.map_or(0, |m| m.len() as u64))
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
