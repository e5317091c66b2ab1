use std::fmt;

use drain_tower::mapping;
use poem::{Endpoint, IntoResponse, Request, Response, ResponseParts, Result};
use shutdown_core::{Admission, PlainResponse, RequestGate};

use super::body;

/// The endpoint [`DrainLayer`](super::DrainLayer) wraps around an application: see the
/// [module docs](crate::drain).
///
/// Its responses are [`Response`]s whose body holds the request's guard until it has
/// been sent. An error of the inner endpoint passes through unchanged (outer
/// `catch_error`s still see it); its guard is released as it passes.
pub struct Drain<E> {
    pub(crate) inner: E,
    pub(crate) gate: RequestGate,
}

impl<E> Drain<E> {
    /// The gate that decides for each request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }

    /// The wrapped endpoint.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    /// Unwraps the inner endpoint.
    pub fn into_inner(self) -> E {
        self.inner
    }
}

impl<E: Endpoint> Endpoint for Drain<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Response> {
        let protocol = mapping::protocol(request.version());
        let mut pass = match self.gate.admit(request.uri().path(), protocol) {
            Admission::Exempt(pass) | Admission::Admitted(pass) => pass,
            Admission::Rejected(rejection) => {
                let body = body::rejected(request.take_body(), rejection.discard_limit());
                return Ok(plain_response(&rejection.response(), body));
            }
        };
        let mut response = self.inner.call(request).await?.into_response();
        let status = response.status();
        mapping::close_connection(&pass, status, response.headers_mut());
        if let Some(guard) = pass.take_guard() {
            let body = response.take_body();
            response.set_body(body::guarded(body, guard));
        }
        Ok(response)
    }
}

impl<E: fmt::Debug> fmt::Debug for Drain<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

/// `plain`'s status and headers, with `body`.
pub(crate) fn plain_response(plain: &PlainResponse<'_>, body: poem::Body) -> Response {
    let (head, body) = mapping::response(plain, body).into_parts();
    let head = ResponseParts {
        status: head.status,
        version: head.version,
        headers: head.headers,
        extensions: head.extensions,
    };
    Response::from_parts(head, body)
}
