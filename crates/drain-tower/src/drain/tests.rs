//! What the contract suite (`tests/contract.rs`) cannot see from outside: the bodies'
//! own behaviour.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use shutdown_core::Shutdown;
use tower::{BoxError, Layer, Service, service_fn};

use super::{DrainLayer, GuardedBody};

/// Triggers the shutdown and begins the drain (nothing is in flight).
async fn begin_drain(shutdown: &Shutdown) {
    shutdown.request_shutdown("test");
    shutdown.drain().await;
}

#[tokio::test]
async fn the_message_body_yields_one_frame_then_ends() {
    let mut body: GuardedBody<Full<Bytes>> = GuardedBody::rejected(None, 0);
    assert!(!body.is_end_stream());
    assert_eq!(
        body.size_hint().exact(),
        Some(shutdown_core::REJECTION_MESSAGE.len() as u64)
    );
    let frame: Frame<Bytes> = body.frame().await.expect("frame").expect("data");
    assert_eq!(
        frame.into_data().ok(),
        Some(Bytes::from_static(
            shutdown_core::REJECTION_MESSAGE.as_bytes()
        ))
    );
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

#[test]
fn guarded_body_is_send_and_sync_whatever_request_body_it_discards() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GuardedBody<Full<Bytes>>>();
}

#[tokio::test]
async fn a_rejection_body_reads_the_request_body_before_its_message() {
    let (mut tx, request_body) = Channel::<Bytes, BoxError>::new(4);
    let mut body = GuardedBody::<Full<Bytes>>::rejection(request_body, 1024);
    tx.send_data(Bytes::from_static(b"unread upload"))
        .await
        .expect("send");
    let pending = tokio::time::timeout(Duration::from_millis(20), body.frame()).await;
    assert!(
        pending.is_err(),
        "the message waits for the request body to end"
    );
    drop(tx);
    let frame = body.frame().await.expect("message").expect("data");
    assert_eq!(
        frame.into_data().ok(),
        Some(Bytes::from_static(
            shutdown_core::REJECTION_MESSAGE.as_bytes()
        ))
    );
    assert!(body.frame().await.is_none());
}

/// The empty body of a rejection with no message (gRPC's trailers-only answer over
/// HTTP/1.x): it must not look ended, nor of length 0, while the request's body is
/// unread, or a server would not poll it (hyper sends `content-length: 0` and closes
/// the connection with the input unread).
#[tokio::test]
async fn a_discarding_body_reads_the_request_body_then_ends_empty() {
    let (mut tx, request_body) = Channel::<Bytes, BoxError>::new(4);
    let mut body = GuardedBody::<Full<Bytes>>::discarding(request_body, 1024);
    assert!(
        !body.is_end_stream(),
        "polled while the request body is unread"
    );
    assert_eq!(
        body.size_hint().exact(),
        None,
        "no length announced before the end"
    );
    tx.send_data(Bytes::from_static(b"unread upload"))
        .await
        .expect("send");
    let pending = tokio::time::timeout(Duration::from_millis(20), body.frame()).await;
    assert!(pending.is_err(), "it ends only once the request body has");
    drop(tx);
    assert!(body.frame().await.is_none(), "no frame of its own");
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));

    let (_tx, request_body) = Channel::<Bytes, BoxError>::new(4);
    let body = GuardedBody::<Full<Bytes>>::discarding(request_body, 0);
    assert!(body.is_end_stream(), "a limit of 0 reads nothing");
}

#[tokio::test]
async fn a_rejection_dropped_before_its_end_lets_go_of_the_request_body() {
    let shutdown = Shutdown::default();
    begin_drain(&shutdown).await;
    let mut service = DrainLayer::new(shutdown.clone()).layer(service_fn(
        |_request: Request<Channel<Bytes, BoxError>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        },
    ));
    let upload = || {
        let (tx, body) = Channel::<Bytes, BoxError>::new(1);
        let mut request = Request::new(body);
        *request.version_mut() = Version::HTTP_11;
        (tx, request)
    };

    // The client went away before the response future was polled.
    let (mut tx, request) = upload();
    drop(service.call(request));
    assert!(
        tx.send_data(Bytes::from_static(b"more")).await.is_err(),
        "the request body was dropped with the future"
    );

    // The client went away while its upload was being discarded.
    let (mut tx, request) = upload();
    let response = service.call(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut body = response.into_body();
    let waiting = tokio::time::timeout(Duration::from_millis(20), body.frame()).await;
    assert!(waiting.is_err(), "still reading the upload");
    drop(body);
    assert!(
        tx.send_data(Bytes::from_static(b"more")).await.is_err(),
        "the request body was dropped with the response body"
    );
    assert_eq!(shutdown.rejected(), 2);
    assert_eq!(shutdown.in_flight(), 0);
}
