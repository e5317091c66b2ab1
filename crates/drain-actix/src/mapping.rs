//! `shutdown-core`'s drain policy in actix-web's types (`http` 0.2, and a connection
//! type in the response head): the one place this adapter translates, and decides
//! nothing.

use actix_web::HttpResponse;
use actix_web::dev::ResponseHead;
use actix_web::http::header::{CONNECTION, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, StatusCode, Version};
use shutdown_core::{Pass, PlainResponse, Protocol};

/// The policy's [`Protocol`] of a request over `version`.
#[inline]
pub(crate) fn protocol(version: Version) -> Protocol {
    if version < Version::HTTP_2 {
        Protocol::Http1
    } else {
        Protocol::Http2
    }
}

/// Asks actix to close the connection after a response that is ready, when `pass` asks
/// for it (see [`Pass::close_connection`]). actix keeps an upgrade in the head's
/// connection type rather than in the header map: both are shown to the policy.
#[inline]
pub(crate) fn close_connection(pass: &Pass, head: &mut ResponseHead) {
    let upgrade = head.upgrade();
    let close = pass.close_connection(head.status.as_u16(), || {
        head.headers
            .get_all(CONNECTION)
            .map(HeaderValue::as_bytes)
            .chain(upgrade.then_some(&b"upgrade"[..]))
    });
    if close {
        close_head(head);
    }
}

/// actix writes the `Connection` header from the head's connection type and skips one
/// set in the header map; the header is set too, for middleware and tests that read
/// the map.
#[cold]
#[inline(never)]
fn close_head(head: &mut ResponseHead) {
    head.set_connection_type(ConnectionType::Close);
    head.headers
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// `plain`'s status and headers, with `body`.
pub(crate) fn response<B>(plain: &PlainResponse<'_>, body: B) -> HttpResponse<B> {
    let status = StatusCode::from_u16(plain.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::with_body(status, body);
    for (name, value) in plain.headers() {
        if name == "connection" && value == "close" {
            close_head(response.head_mut());
        } else if let Ok(value) = HeaderValue::from_str(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}
