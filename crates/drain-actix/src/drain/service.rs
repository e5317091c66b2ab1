use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ResponseHead, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use actix_web::http::{ConnectionType, StatusCode, Version};
use pin_project_lite::pin_project;
use shutdown_core::{Admission, RequestGuard};

use super::body::{DrainBody, GuardedBody, RejectionBody};
use super::transform::Drain;

/// The middleware [`Drain`] makes for each actix worker: tracks each request on the
/// shared [`Shutdown`](shutdown_core::Shutdown) handle and turns requests away once the
/// drain has begun. See the [module docs](crate::drain).
pub struct DrainMiddleware<S> {
    pub(crate) service: S,
    pub(crate) drain: Drain,
}

impl<S> DrainMiddleware<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}

impl<S: fmt::Debug> fmt::Debug for DrainMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainMiddleware")
            .field("service", &self.service)
            .field("drain", &self.drain)
            .finish()
    }
}

impl<S, B> Service<ServiceRequest> for DrainMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    B: MessageBody,
{
    type Response = ServiceResponse<DrainBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let http1 = is_http1(request.version());
        let gate = &self.drain.gate;
        let (guard, close) = match gate.admit(request.path()) {
            // Exempt requests (probes, scrapes) are answered at once: whether to close is
            // decided now. Closing idle keep-alive connections also lets actix's workers
            // stop sooner once the drain has ended.
            Admission::Exempt => (None, http1 && gate.should_close_connection()),
            Admission::Admitted(guard) => (Some(guard), false),
            Admission::Rejected => return self.reject(request, http1),
        };
        ResponseFuture {
            kind: Kind::Inner {
                future: self.service.call(request),
                guard,
                http1,
                close,
            },
        }
    }
}

impl<S> DrainMiddleware<S> {
    fn reject<B>(&self, request: ServiceRequest, http1: bool) -> ResponseFuture<S::Future, B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    {
        let (request, payload) = request.into_parts();
        // On HTTP/1.x actix closes a connection whose request body was not read to its
        // end, and closing with unread input makes the kernel reset it: read it first.
        // HTTP/2 resets just the stream, which is harmless.
        let body = if http1 {
            RejectionBody::discarding(payload, self.drain.discard_limit)
        } else {
            RejectionBody::new()
        };
        let mut response =
            HttpResponse::with_body(StatusCode::SERVICE_UNAVAILABLE, EitherBody::right(body));
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, self.drain.retry_after.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if http1 {
            close_connection(response.head_mut());
        }
        ResponseFuture {
            kind: Kind::Rejected {
                response: Some(ServiceResponse::new(request, response)),
            },
        }
    }
}

/// Asks actix to close the connection after this response. Actix writes the
/// `Connection` header itself from the head's connection type and skips one set in the
/// header map; the header is set too, for middleware and tests that read the map. An
/// upgrade (a WebSocket handshake) keeps its connection.
fn close_connection(head: &mut ResponseHead) {
    if head.upgrade() {
        return;
    }
    head.set_connection_type(ConnectionType::Close);
    head.headers
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

pin_project! {
    /// Response future of [`DrainMiddleware`].
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
            guard: Option<RequestGuard>,
            http1: bool,
            close: bool,
        },
        Rejected {
            response: Option<ServiceResponse<DrainBody<B>>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, E>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<DrainBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                future,
                guard,
                http1,
                close,
            } => {
                let response = ready!(future.poll(cx))?;
                let guard = guard.take();
                let close = *close
                    || (*http1 && guard.as_ref().is_some_and(RequestGuard::is_shutting_down));
                Poll::Ready(Ok(response.map_body(|head, body| {
                    if close {
                        close_connection(head);
                    }
                    EitherBody::left(GuardedBody::new(body, guard))
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
