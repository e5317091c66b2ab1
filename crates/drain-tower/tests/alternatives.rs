//! What the alternatives of the `per_request` benchmark do with a response whose body
//! is still streaming, against `DrainLayer`.
//!
//! `docs/performance.md` explains that `TaskTracker::track_future` and
//! `ConcurrencyLimit` cost less per request because they let go of the request when the
//! response head is ready, leaving the body alone: a drain built on them would not wait
//! for a streaming or SSE response. These tests pin that down, so that the comparison
//! stays honest if either crate changes.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drain_tower::DrainLayer;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use shutdown_core::Shutdown;
use tokio_util::task::TaskTracker;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

type Senders = Arc<Mutex<Vec<Sender<Bytes, Infallible>>>>;

/// A service whose responses stream until the test drops their senders.
fn streaming(
    senders: Senders,
) -> impl Service<
    Request<String>,
    Response = Response<Channel<Bytes, Infallible>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |_request: Request<String>| {
        let senders = Arc::clone(&senders);
        async move {
            let (sender, body) = Channel::new(4);
            senders.lock().expect("senders").push(sender);
            Ok::<_, Infallible>(Response::new(body))
        }
    })
}

fn request() -> Request<String> {
    Request::new(String::new())
}

/// Ends every open stream.
fn end_streams(senders: &Senders) {
    senders.lock().expect("senders").clear();
}

#[tokio::test]
async fn drain_layer_holds_the_request_until_the_stream_ends() {
    let senders = Senders::default();
    let shutdown = Shutdown::default();
    let service = DrainLayer::new(shutdown.clone()).layer(streaming(Arc::clone(&senders)));

    let response = service.oneshot(request()).await.expect("infallible");
    assert_eq!(shutdown.in_flight(), 1, "the head is out, the body streams");
    end_streams(&senders);
    let body = response.into_body().collect().await.expect("body");
    assert!(body.to_bytes().is_empty());
    assert_eq!(shutdown.in_flight(), 0, "released at the end of the body");
}

#[tokio::test]
async fn track_future_lets_go_at_the_response_head() {
    let senders = Senders::default();
    let tracker = TaskTracker::new();
    let tracked = tracker.clone();
    let service = ServiceBuilder::new()
        .map_future(move |future| tracked.track_future(future))
        .service(streaming(Arc::clone(&senders)));

    let response = service.oneshot(request()).await.expect("infallible");
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .expect("the tracker counts the request as done while its body still streams");
    assert_eq!(senders.lock().expect("senders").len(), 1, "still streaming");
    end_streams(&senders);
    drop(response);
}

#[tokio::test]
async fn concurrency_limit_lets_go_at_the_response_head() {
    let senders = Senders::default();
    let mut service = ConcurrencyLimitLayer::new(1).layer(streaming(Arc::clone(&senders)));

    let first = service
        .ready()
        .await
        .expect("infallible")
        .call(request())
        .await
        .expect("infallible");
    // With a limit of one, a second request is admitted while the first body streams:
    // the permit went back when the first response head was ready.
    let second = tokio::time::timeout(Duration::from_secs(5), service.ready())
        .await
        .expect("the permit is free while the first body still streams")
        .expect("infallible")
        .call(request())
        .await
        .expect("infallible");
    assert_eq!(senders.lock().expect("senders").len(), 2, "both streaming");
    end_streams(&senders);
    drop((first, second));
}
