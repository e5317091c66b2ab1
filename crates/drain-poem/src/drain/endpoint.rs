use std::fmt;

use poem::http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use poem::http::{HeaderValue, StatusCode, Version};
use poem::{Body, Endpoint, IntoResponse, Request, Response, Result};
use shutdown_core::{Admission, RequestGate};

use super::body;

/// The endpoint that [`Drain`](super::Drain) wraps around an application: see the
/// [module docs](crate::drain).
///
/// Its responses are [`Response`]s whose body holds the request's guard until it has
/// been sent. An error of the inner endpoint passes through unchanged (outer
/// `catch_error`s still see it); its guard is released as it passes.
pub struct DrainEndpoint<E> {
    pub(crate) inner: E,
    pub(crate) gate: RequestGate,
    pub(crate) retry_after: HeaderValue,
    pub(crate) discard_limit: u64,
}

impl<E> DrainEndpoint<E> {
    /// The wrapped endpoint.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    /// Unwraps the inner endpoint.
    pub fn into_inner(self) -> E {
        self.inner
    }

    /// The `503` answer to a request turned away. On HTTP/1.x its body first reads and
    /// throws away the request's unread body, up to the discard limit.
    #[cold]
    fn rejection(&self, request_body: Body, http1: bool) -> Response {
        let limit = if http1 { self.discard_limit } else { 0 };
        let mut response = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(body::rejected(request_body, limit));
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, self.retry_after.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if http1 {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl<E: Endpoint> Endpoint for DrainEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Response> {
        let http1 = is_http1(request.version());
        match self.gate.admit(request.uri().path()) {
            Admission::Exempt => self
                .inner
                .call(request)
                .await
                .map(IntoResponse::into_response),
            Admission::Admitted(guard) => {
                let mut response = self.inner.call(request).await?.into_response();
                if http1 && self.gate.should_close_connection() {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                let body = response.take_body();
                response.set_body(body::guarded(body, guard));
                Ok(response)
            }
            Admission::Rejected => Ok(self.rejection(request.take_body(), http1)),
        }
    }
}

fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

impl<E: fmt::Debug> fmt::Debug for DrainEndpoint<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainEndpoint")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .field("discard_limit", &self.discard_limit)
            .finish()
    }
}
