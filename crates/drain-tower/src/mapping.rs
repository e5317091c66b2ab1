//! `shutdown-core`'s drain policy in `http` 1 types: the mapping that [`DrainLayer`],
//! `drain-poem` and any other adapter on `http` 1 (hyper, axum, poem, tonic) share.
//!
//! The policy decides; these functions only translate: a request's [`Version`] to a
//! [`Protocol`], a [`Pass`]'s answer to a `Connection: close` header, a
//! [`PlainResponse`] (the `503` of a rejection, the health answers) to a [`Response`].
//!
//! [`DrainLayer`]: crate::DrainLayer

use http::header::{CONNECTION, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use shutdown_core::{Pass, PlainResponse, Protocol};

/// The policy's [`Protocol`] of a request over `version`.
#[inline]
pub fn protocol(version: Version) -> Protocol {
    if version < Version::HTTP_2 {
        Protocol::Http1
    } else {
        Protocol::Http2
    }
}

/// Adds `Connection: close` to a response head that is ready, when `pass` asks for it
/// (see [`Pass::close_connection`]). Returns whether it did.
#[inline]
pub fn close_connection(pass: &Pass, status: StatusCode, headers: &mut HeaderMap) -> bool {
    let close = pass.close_connection(status.as_u16(), || {
        headers
            .get_all(CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes)
    });
    if close {
        insert_close(headers);
    }
    close
}

#[cold]
#[inline(never)]
fn insert_close(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
}

/// `plain`'s status and headers, with `body`.
pub fn response<B>(plain: &PlainResponse<'_>, body: B) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(plain.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in plain.headers() {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use shutdown_core::{Admission, RequestGate, Shutdown};

    use super::*;

    #[test]
    fn versions_before_http2_are_http1() {
        for version in [Version::HTTP_09, Version::HTTP_10, Version::HTTP_11] {
            assert_eq!(protocol(version), Protocol::Http1, "{version:?}");
        }
        for version in [Version::HTTP_2, Version::HTTP_3] {
            assert_eq!(protocol(version), Protocol::Http2, "{version:?}");
        }
    }

    #[test]
    fn a_plain_response_keeps_every_header() {
        let shutdown = Shutdown::default();
        shutdown.request_shutdown("test");
        let response = response(&PlainResponse::readiness(&shutdown), ());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers().len(), 2);
    }

    #[test]
    fn connection_close_replaces_a_keep_alive_but_spares_an_upgrade() {
        let shutdown = Shutdown::default();
        let gate = RequestGate::new(shutdown.clone());
        let Admission::Admitted(pass) = gate.admit("/", Protocol::Http1) else {
            panic!("admitted");
        };
        shutdown.request_shutdown("test");
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(close_connection(&pass, StatusCode::OK, &mut headers));
        assert_eq!(headers.get_all(CONNECTION).iter().count(), 1);
        assert_eq!(headers[CONNECTION], "close");

        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        assert!(!close_connection(&pass, StatusCode::OK, &mut headers));
        assert_eq!(headers[CONNECTION], "Upgrade");
    }
}
