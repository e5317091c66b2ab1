use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use pin_project_lite::pin_project;
use shutdown_core::{Admission, Pass, Rejection, RequestGate};

use super::body::GuardedBody;
use crate::mapping;

/// The middleware [`DrainLayer`](super::DrainLayer) makes for each actix worker: tracks
/// each request on the shared [`Shutdown`](shutdown_core::Shutdown) handle and turns
/// requests away once the drain has begun. See the [module docs](crate::drain).
pub struct Drain<S> {
    pub(crate) service: S,
    pub(crate) gate: RequestGate,
}

impl<S> Drain<S> {
    /// The gate that decides for each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}

impl<S: fmt::Debug> fmt::Debug for Drain<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("service", &self.service)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, B> Service<ServiceRequest> for Drain<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    B: MessageBody,
{
    type Response = ServiceResponse<GuardedBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let protocol = mapping::protocol(request.version());
        match self.gate.admit(request.path(), protocol) {
            Admission::Exempt(pass) | Admission::Admitted(pass) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.service.call(request),
                    pass,
                },
            },
            Admission::Rejected(rejection) => reject(request, &rejection),
        }
    }
}

#[cold]
fn reject<F, B>(request: ServiceRequest, rejection: &Rejection<'_>) -> ResponseFuture<F, B> {
    let (request, payload) = request.into_parts();
    let body = GuardedBody::rejection(payload, rejection.discard_limit());
    let response = mapping::response(&rejection.response(), body);
    ResponseFuture {
        kind: Kind::Rejected {
            response: Some(ServiceResponse::new(request, response)),
        },
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
        Inner {
            #[pin]
            future: F,
            pass: Pass,
        },
        Rejected {
            response: Option<ServiceResponse<GuardedBody<B>>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, E>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<GuardedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, pass } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map_body(|head, body| {
                    mapping::close_connection(pass, head);
                    GuardedBody::new(body, pass.take_guard())
                })))
            }
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
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
