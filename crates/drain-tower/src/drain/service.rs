use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use shutdown_core::{Admission, RequestGate, RequestGuard, Shutdown};
use tower_service::Service;

use super::body::{Cold, Discarding, GuardedBody};
use super::layer::DrainLayer;

/// Middleware that tracks each request on a [`Shutdown`] handle and turns requests
/// away once the drain has begun: see the [module docs](crate::drain).
///
/// Cloning it clones the inner service and one reference count (the gate's).
#[derive(Clone)]
pub struct Drain<S> {
    pub(crate) inner: S,
    pub(crate) gate: RequestGate,
}

impl<S> Drain<S> {
    /// Wraps `inner` with the defaults of [`DrainLayer::new`].
    pub fn new(inner: S, shutdown: Shutdown) -> Self {
        tower_layer::Layer::layer(&DrainLayer::new(shutdown), inner)
    }

    /// The gate that decides for each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Drain<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Drain<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + Send + 'static,
    ResBody: Body,
    ResBody::Data: From<&'static [u8]>,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let http1 = is_http1(request.version());
        let guard = match self.gate.admit(request.uri().path()) {
            Admission::Exempt => None,
            Admission::Admitted(guard) => Some(guard),
            Admission::Rejected => return self.reject(request, http1),
        };
        // One call site for the inner service, built in place: the hot path moves the
        // request and the inner future as little as the floor (a plain guard layer) does.
        ResponseFuture {
            kind: Kind::Passthrough {
                future: self.inner.call(request),
                guard,
                http1,
            },
        }
    }
}

impl<S> Drain<S> {
    /// Everything a `503` needs, boxed so that the response future of the admitted path
    /// stays small.
    #[cold]
    #[inline(never)]
    fn reject<ReqBody, F>(&self, request: Request<ReqBody>, http1: bool) -> ResponseFuture<F>
    where
        ReqBody: Body + Send + 'static,
    {
        // On HTTP/1.x an unread body would be cut off by closing the connection (a
        // reset for a client still sending it): the 503's body reads it first. HTTP/2
        // resets just the stream, which is harmless.
        let discard_limit = self.gate.discard_limit();
        let body = request.into_body();
        let discard = (http1 && !body.is_end_stream() && discard_limit > 0)
            .then(|| Discarding::new(Box::pin(body)));
        let rejection = Box::new(Rejection {
            retry_after: HeaderValue::from(self.gate.retry_after_secs()),
            http1,
            discard,
            discard_limit,
        });
        ResponseFuture {
            kind: Kind::Rejected {
                rejection: Cold(Some(rejection)),
            },
        }
    }
}

pub(crate) struct Rejection {
    retry_after: HeaderValue,
    http1: bool,
    discard: Option<Discarding>,
    discard_limit: u64,
}

impl Rejection {
    #[cold]
    #[inline(never)]
    fn into_response<B>(self) -> Response<GuardedBody<B>> {
        let body = GuardedBody::rejected(self.discard, self.discard_limit);
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, self.retry_after);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.http1 {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cold]
#[inline(never)]
fn close_parts(parts: &mut http::response::Parts) {
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

pin_project! {
    /// Response future of [`Drain`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Passthrough {
            #[pin]
            future: F,
            guard: Option<RequestGuard>,
            http1: bool,
        },
        Rejected {
            rejection: Cold<Box<Rejection>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Output = Result<Response<GuardedBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough {
                future,
                guard,
                http1,
            } => {
                let response = ready!(future.poll(cx))?;
                let guard = guard.take();
                let (mut parts, body) = response.into_parts();
                if *http1 && guard.as_ref().is_some_and(RequestGuard::is_shutting_down) {
                    close_parts(&mut parts);
                }
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    GuardedBody::new(body, guard),
                )))
            }
            KindProj::Rejected { rejection } => match rejection.0.take() {
                Some(rejection) => Poll::Ready(Ok(rejection.into_response())),
                None => panic!("`ResponseFuture` polled after completion"),
            },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
