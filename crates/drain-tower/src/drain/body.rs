use std::fmt;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use shutdown_core::RequestGuard;

/// The body of a rejected request.
pub(crate) const REJECTED_BODY: &[u8] = shutdown_core::REJECTION_MESSAGE.as_bytes();

/// A request body being read and thrown away, type-erased: see [`Discard`]. Behind a
/// `Mutex` only to make [`GuardedBody`] `Sync` (poem's bodies must be) without asking
/// request bodies to be: it is reached through `get_mut`, which takes no lock.
pub(crate) type Discarding = Mutex<Pin<Box<dyn Discard + Send>>>;

/// Reads a rejected request's body to its end (or to a byte limit) and drops what it
/// reads, so that the server does not close the connection with unread input: the
/// kernel would then send a reset, and a client still sending its body would get a
/// write error instead of the `503`.
pub(crate) trait Discard {
    /// Ready once the body has ended, failed, or `budget` bytes have been read.
    fn poll_discard(self: Pin<&mut Self>, cx: &mut Context<'_>, budget: &mut u64) -> Poll<()>;
}

impl<B: Body> Discard for B {
    fn poll_discard(mut self: Pin<&mut Self>, cx: &mut Context<'_>, budget: &mut u64) -> Poll<()> {
        loop {
            match ready!(self.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let read = frame.data_ref().map_or(0, |data| data.remaining() as u64);
                    *budget = budget.saturating_sub(read);
                    if *budget == 0 {
                        return Poll::Ready(());
                    }
                }
                Some(Err(_)) | None => return Poll::Ready(()),
            }
        }
    }
}

pin_project! {
    /// Response body of [`Drain`](super::Drain): the inner service's body with the
    /// request's guard, or the short message of a rejected request (read after the
    /// rejected request's body, on HTTP/1.x).
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
            guard: Cold<RequestGuard>,
        },
        Message {
            // Whether `REJECTED_BODY` is still to be sent: a flag rather than the slice,
            // so that this variant is no larger than `Inner` for a small body.
            pending: bool,
            discard: Cold<Discarding>,
            budget: u64,
        },
    }
}

/// An `Option` whose contents are dropped out of line: for what is rarely still there
/// when its owner is dropped (the state of a rejection; the guard, which the body gives
/// up when it ends). The drop of this body and of the response future then stays small
/// enough to be inlined into the server's code.
pub(crate) struct Cold<T>(pub(crate) Option<T>);

impl<T> Drop for Cold<T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            drop_cold(value);
        }
    }
}

#[cold]
#[inline(never)]
fn drop_cold<T>(value: T) {
    drop(value);
}

impl<B> GuardedBody<B> {
    /// Wraps `body`, holding `guard` until the body ends, fails or is dropped. For
    /// adapters that reuse this body outside [`Drain`](super::Drain) (poem converts its
    /// bodies to and from http-body ones).
    #[inline]
    pub fn new(body: B, guard: Option<RequestGuard>) -> Self {
        Self {
            kind: Kind::Inner {
                body,
                guard: Cold(guard),
            },
        }
    }

    /// The body of a `503` for a rejected request: reads `request_body` to its end (or
    /// for `discard_limit` bytes) and throws it away, then yields
    /// [`REJECTION_MESSAGE`](shutdown_core::REJECTION_MESSAGE). Reading first keeps the
    /// server from closing the connection with unread input (the kernel would send a
    /// reset, and a client still sending would get an error instead of the `503`).
    /// For adapters that build their own rejections; [`Drain`](super::Drain) uses the
    /// same body.
    pub fn rejection<R>(request_body: R, discard_limit: u64) -> Self
    where
        R: Body + Send + 'static,
    {
        Self::discard_then(request_body, discard_limit, true)
    }

    /// An empty body that reads `request_body` to its end (or for `discard_limit`
    /// bytes) and throws it away before it ends: for adapters whose rejection has no
    /// message of its own (a gRPC trailers-only answer over HTTP/1.x), so that the
    /// server does not close the connection with unread input either.
    pub fn discarding<R>(request_body: R, discard_limit: u64) -> Self
    where
        R: Body + Send + 'static,
    {
        Self::discard_then(request_body, discard_limit, false)
    }

    fn discard_then<R>(request_body: R, discard_limit: u64, message: bool) -> Self
    where
        R: Body + Send + 'static,
    {
        let discard = (!request_body.is_end_stream() && discard_limit > 0)
            .then(|| Discarding::new(Box::pin(request_body)));
        Self::after_discard(discard, discard_limit, message)
    }

    /// [`REJECTED_BODY`], sent once `discard` (the rejected request's body) has been read
    /// to its end or for `budget` bytes.
    pub(crate) fn rejected(discard: Option<Discarding>, budget: u64) -> Self {
        Self::after_discard(discard, budget, true)
    }

    /// [`REJECTED_BODY`] if `message`, else nothing, once `discard` has been read to its
    /// end or for `budget` bytes.
    fn after_discard(discard: Option<Discarding>, budget: u64, message: bool) -> Self {
        Self {
            kind: Kind::Message {
                pending: message,
                discard: Cold(discard),
                budget,
            },
        }
    }

    /// `true` while this body still holds its request's guard.
    pub fn holds_guard(&self) -> bool {
        matches!(
            &self.kind,
            Kind::Inner {
                guard: Cold(Some(_)),
                ..
            }
        )
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, guard } => {
                let poll = body.as_mut().poll_frame(cx);
                // Checked in place and returned as it came: the frame is not moved.
                if let Poll::Ready(frame) = &poll {
                    let ended = match frame {
                        None | Some(Err(_)) => true,
                        Some(Ok(_)) => body.is_end_stream(),
                    };
                    if ended {
                        guard.0.take();
                    }
                }
                poll
            }
            KindProj::Message {
                pending,
                discard,
                budget,
            } => poll_message(pending, &mut discard.0, budget, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Message {
                pending, discard, ..
            } => !pending && discard.0.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Message { pending: true, .. } => SizeHint::with_exact(REJECTED_BODY.len() as u64),
            // Not `0` while the request's body is still to be read: a server would
            // take the body as ended and never poll it (hyper sends `content-length:
            // 0` and closes the connection with the input unread).
            Kind::Message {
                discard: Cold(Some(_)),
                ..
            } => SizeHint::new(),
            Kind::Message { .. } => SizeHint::with_exact(0),
        }
    }
}

/// The rejected request's message, once its body has been discarded. Out of line: it
/// runs once per rejected request, and keeps [`GuardedBody::poll_frame`] small enough to
/// inline on the admitted path.
#[cold]
#[inline(never)]
fn poll_message<D: From<&'static [u8]>, E>(
    pending: &mut bool,
    discard: &mut Option<Discarding>,
    budget: &mut u64,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<D>, E>>> {
    if let Some(body) = discard {
        let body = body.get_mut().unwrap_or_else(PoisonError::into_inner);
        ready!(body.as_mut().poll_discard(cx, budget));
        *discard = None;
    }
    let message = std::mem::replace(pending, false).then_some(REJECTED_BODY);
    Poll::Ready(message.map(|m| Ok(Frame::data(D::from(m)))))
}

impl<B> fmt::Debug for GuardedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedBody")
            .field("holds_guard", &self.holds_guard())
            .finish_non_exhaustive()
    }
}
