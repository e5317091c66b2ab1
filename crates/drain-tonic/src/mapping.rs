//! `shutdown-core`'s drain policy in gRPC terms: the one mapping that makes this crate
//! differ from the HTTP adapters.
//!
//! A rejected RPC is answered the way gRPC servers say "not here, try elsewhere": a
//! **trailers-only** response (HTTP status `200`, one `HEADERS` frame that ends the
//! stream, no message) with `grpc-status: 14` (`UNAVAILABLE`), a `grpc-message`
//! (percent-encoded as the gRPC spec asks) and `grpc-retry-pushback-ms` (the policy's
//! `Retry-After`, in milliseconds). A `503` would reach a gRPC client as an
//! `UNAVAILABLE` it made up itself, without the message; the trailers-only answer is
//! what a retry policy (`retryableStatusCodes: [UNAVAILABLE]`) acts on.

use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Response};
use shutdown_core::Rejection;
use tonic::Status;

/// The `grpc-message` of an RPC turned away during the drain.
pub const REJECTION_MESSAGE: &str = "shutting down, retry on another instance";

/// The header telling a gRPC client how long to wait before it retries, in
/// milliseconds.
pub const RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The trailers-only `UNAVAILABLE` answer to `rejection`, with an empty body of type
/// `B`.
///
/// `Connection: close` is added only when the policy asks for it (an RPC over
/// HTTP/1.x, gRPC-web); on HTTP/2 the server ends the connection with a `GOAWAY`
/// instead.
pub fn rejection<B: Default>(rejection: &Rejection<'_>) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    // Cannot fail: the message is a constant of printable ASCII.
    let _ = Status::unavailable(REJECTION_MESSAGE).add_header(headers);
    headers.insert(
        RETRY_PUSHBACK_MS,
        HeaderValue::from(rejection.retry_after_secs().saturating_mul(1000)),
    );
    if rejection.close_connection() {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use http_body::Body as _;
    use shutdown_core::{Admission, Protocol, RequestGate, Shutdown, ShutdownConfig};
    use tonic::Code;

    use super::*;

    async fn draining(retry_after_secs: u64) -> (Shutdown, RequestGate) {
        let shutdown = Shutdown::new(ShutdownConfig::new());
        let gate = RequestGate::new(shutdown.clone()).with_retry_after_secs(retry_after_secs);
        shutdown.request_shutdown("test");
        shutdown.drain().await;
        (shutdown, gate)
    }

    #[tokio::test]
    async fn a_rejection_is_a_trailers_only_unavailable_with_200() {
        let (shutdown, gate) = draining(3).await;
        let Admission::Rejected(rejected) =
            gate.admit("/helloworld.Greeter/SayHello", Protocol::Http2)
        else {
            panic!("rejected during the drain");
        };
        let response: Response<tonic::body::Body> = rejection(&rejected);
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "gRPC errors travel with 200"
        );
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()[RETRY_PUSHBACK_MS], "3000");
        assert!(
            response.headers().get(CONNECTION).is_none(),
            "no Connection header on HTTP/2"
        );
        assert!(
            response.body().is_end_stream(),
            "no message: the headers end the stream (trailers-only)"
        );
        let status = Status::from_header_map(response.headers()).expect("a gRPC status");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), REJECTION_MESSAGE);
        assert_eq!(shutdown.rejected(), 1);
    }

    #[tokio::test]
    async fn the_message_is_percent_encoded() {
        let (_shutdown, gate) = draining(10).await;
        let Admission::Rejected(rejected) = gate.admit("/a.B/C", Protocol::Http2) else {
            panic!("rejected");
        };
        let response: Response<tonic::body::Body> = rejection(&rejected);
        let raw = response.headers()["grpc-message"].to_str().expect("ASCII");
        assert_eq!(raw, REJECTION_MESSAGE.replace(' ', "%20"));
        assert!(raw.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b' '));
    }

    #[tokio::test]
    async fn a_retry_after_of_zero_asks_for_an_immediate_retry() {
        let (_shutdown, gate) = draining(0).await;
        let Admission::Rejected(rejected) = gate.admit("/a.B/C", Protocol::Http2) else {
            panic!("rejected");
        };
        let response: Response<tonic::body::Body> = rejection(&rejected);
        assert_eq!(response.headers()[RETRY_PUSHBACK_MS], "0");
    }

    #[tokio::test]
    async fn grpc_web_over_http1_also_closes_the_connection() {
        let (_shutdown, gate) = draining(10).await;
        let Admission::Rejected(rejected) = gate.admit("/a.B/C", Protocol::Http1) else {
            panic!("rejected");
        };
        let response: Response<tonic::body::Body> = rejection(&rejected);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()[CONNECTION], "close");
    }
}
