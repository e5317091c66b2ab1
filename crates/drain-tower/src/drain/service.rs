use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use shutdown_core::{Admission, Pass, Rejection};
use tower_service::Service;

use crate::mapping;

use super::body::{Cold, Discarding, GuardedBody};
use super::layer::Drain;

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
        let protocol = mapping::protocol(request.version());
        match self.gate.admit(request.uri().path(), protocol) {
            // One call site for the inner service, built in place: the hot path moves the
            // request and the inner future as little as the floor (a plain guard layer)
            // does.
            Admission::Exempt(pass) | Admission::Admitted(pass) => ResponseFuture {
                kind: Kind::Passthrough {
                    future: self.inner.call(request),
                    pass,
                },
            },
            Admission::Rejected(rejection) => reject(request, &rejection),
        }
    }
}

/// Everything a `503` needs, boxed so that the response future of the admitted path
/// stays small.
#[cold]
#[inline(never)]
fn reject<ReqBody, F>(request: Request<ReqBody>, rejection: &Rejection<'_>) -> ResponseFuture<F>
where
    ReqBody: Body + Send + 'static,
{
    let body = request.into_body();
    let discard = rejection
        .discard_limit()
        .filter(|_| !body.is_end_stream())
        .map(|limit| (Discarding::new(Box::pin(body)), limit));
    let rejected = Box::new(Rejected {
        head: mapping::response(&rejection.response(), ()),
        discard,
    });
    ResponseFuture {
        kind: Kind::Rejected {
            rejected: Cold(Some(rejected)),
        },
    }
}

pub(crate) struct Rejected {
    head: Response<()>,
    /// The request body to read first, and how much of it.
    discard: Option<(Discarding, u64)>,
}

impl Rejected {
    #[cold]
    #[inline(never)]
    fn into_response<B>(self) -> Response<GuardedBody<B>> {
        let (discard, budget) = match self.discard {
            Some((discard, budget)) => (Some(discard), budget),
            None => (None, 0),
        };
        self.head.map(|()| GuardedBody::rejected(discard, budget))
    }
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
            pass: Pass,
        },
        Rejected {
            rejected: Cold<Box<Rejected>>,
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
            KindProj::Passthrough { future, pass } => {
                let response = ready!(future.poll(cx))?;
                let (mut parts, body) = response.into_parts();
                mapping::close_connection(pass, parts.status, &mut parts.headers);
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    GuardedBody::new(body, pass.take_guard()),
                )))
            }
            KindProj::Rejected { rejected } => match rejected.0.take() {
                Some(rejected) => Poll::Ready(Ok(rejected.into_response())),
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
