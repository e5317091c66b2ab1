use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use drain_tower::GuardedBody;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use shutdown_core::{Admission, Pass, Rejection};
use tower_service::Service;

use super::layer::Drain;
use crate::mapping;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Drain<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + Send + 'static,
    ResBody: Body + Default,
    ResBody::Data: From<&'static [u8]>,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let protocol = drain_tower::mapping::protocol(request.version());
        match self.gate.admit(request.uri().path(), protocol) {
            Admission::Exempt(pass) | Admission::Admitted(pass) => ResponseFuture {
                served: Some(self.inner.call(request)),
                pass: Some(pass),
                rejected: None,
            },
            Admission::Rejected(rejection) => ResponseFuture {
                served: None,
                pass: None,
                rejected: Some(Box::new(reject(request, &rejection))),
            },
        }
    }
}

/// The trailers-only answer to a rejected RPC. Over HTTP/2 the request (and its body)
/// is dropped: that resets just its stream once the answer has gone out. Over HTTP/1.x
/// (gRPC-web) the connection closes after the answer, so its empty body first reads the
/// request's body and throws it away (up to the gate's discard limit), as the HTTP
/// `503` does: a connection closed with unread input is reset, and the client could
/// lose the answer.
#[cold]
#[inline(never)]
fn reject<ReqBody, ResBody>(
    request: Request<ReqBody>,
    rejection: &Rejection<'_>,
) -> Response<GuardedBody<ResBody>>
where
    ReqBody: Body + Send + 'static,
    ResBody: Default,
{
    let answer: Response<()> = mapping::rejection(rejection);
    let body = match rejection.discard_limit() {
        Some(limit) => GuardedBody::discarding(request.into_body(), limit),
        None => GuardedBody::new(ResBody::default(), None),
    };
    answer.map(|()| body)
}

pin_project! {
    /// Response future of [`Drain`]: the inner service's, or the ready answer to a
    /// rejected RPC.
    pub struct ResponseFuture<F, B> {
        #[pin]
        served: Option<F>,
        pass: Option<Pass>,
        // Boxed: built once per rejection, and the future of an admitted RPC stays
        // small.
        rejected: Option<Box<Response<GuardedBody<B>>>>,
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardedBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.served.as_pin_mut() else {
            let rejected = this
                .rejected
                .take()
                .expect("`ResponseFuture` polled after completion");
            return Poll::Ready(Ok(*rejected));
        };
        let (mut parts, body) = ready!(future.poll(cx))?.into_parts();
        let guard = this.pass.as_mut().and_then(|pass| {
            drain_tower::mapping::close_connection(pass, parts.status, &mut parts.headers);
            pass.take_guard()
        });
        Poll::Ready(Ok(Response::from_parts(
            parts,
            GuardedBody::new(body, guard),
        )))
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
