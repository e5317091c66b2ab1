use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use drain_tower::GuardedBody;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use shutdown_core::{Admission, Pass, RequestGate, Shutdown};
use tower_service::Service;

use super::layer::DrainLayer;
use crate::mapping;

/// Middleware that counts each RPC on a [`Shutdown`] handle until its response stream
/// has ended, and answers RPCs arriving during the drain with `UNAVAILABLE`: see the
/// [module docs](crate::drain).
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

    /// The gate that decides for each RPC.
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
        let kind = match self.gate.admit(request.uri().path(), protocol) {
            Admission::Exempt(pass) | Admission::Admitted(pass) => Kind::Served {
                future: self.inner.call(request),
                pass,
            },
            // The request (and its body) is dropped here: on HTTP/2 that resets just
            // its stream once the trailers-only answer has gone out.
            Admission::Rejected(rejection) => Kind::Rejected {
                response: Some(Box::new(mapping::rejection(&rejection))),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// Response future of [`Drain`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Served {
            #[pin]
            future: F,
            pass: Pass,
        },
        Rejected {
            // Boxed: the answer to a rejected RPC is built once per rejection, and the
            // future of an admitted RPC stays small.
            response: Option<Box<Response<B>>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Output = Result<Response<GuardedBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Served { future, pass } => {
                let response = ready!(future.poll(cx))?;
                let (mut parts, body) = response.into_parts();
                drain_tower::mapping::close_connection(pass, parts.status, &mut parts.headers);
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    GuardedBody::new(body, pass.take_guard()),
                )))
            }
            KindProj::Rejected { response } => match response.take() {
                Some(response) => {
                    Poll::Ready(Ok(response.map(|body| GuardedBody::new(body, None))))
                }
                None => panic!("`ResponseFuture` polled after completion"),
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
