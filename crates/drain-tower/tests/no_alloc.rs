//! The admitted path of `Drain` allocates nothing per request: `call`, the response
//! future, the guarded body read to its end and dropped. A counting global allocator in
//! a test binary of its own (the allocator is process-wide); requests are built outside
//! the counted region and futures are polled with a no-op waker, with no runtime.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use drain_tower::Drain;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use shutdown_core::Shutdown;
use test_support::alloc::{Counting, allocations};
use tower::Service;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BODY: &[u8] = b"hello, world";
const REQUESTS: usize = 10_000;

/// An inner service whose future and body allocate nothing.
#[derive(Clone)]
struct Static;

impl Service<Request<Full<Bytes>>> for Static {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        ready(Ok(Response::new(Full::new(Bytes::from_static(BODY)))))
    }
}

/// What one request through [`serve`] saw.
#[derive(Debug, PartialEq)]
struct Served {
    status: StatusCode,
    body_held_guard: bool,
    bytes: usize,
}

/// One request through `service`: `poll_ready`, `call`, the response future polled to
/// completion, the body read to its end and dropped. Everything is ready at once, so a
/// no-op waker is enough.
fn serve(service: &mut Drain<Static>, request: Request<Full<Bytes>>) -> Served {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut future = pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        panic!("the inner service answers at once");
    };
    let status = response.status();
    let body_held_guard = response.body().holds_guard();
    let mut body = pin!(response.into_body());
    let mut bytes = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                bytes += frame
                    .expect("static body")
                    .into_data()
                    .map_or(0, |data| data.len());
            }
            Poll::Ready(None) => break,
            Poll::Pending => panic!("a static body is always ready"),
        }
    }
    Served {
        status,
        body_held_guard,
        bytes,
    }
}

fn requests(path: &'static str) -> Vec<Request<Full<Bytes>>> {
    (0..REQUESTS)
        .map(|_| {
            Request::get(path)
                .body(Full::new(Bytes::new()))
                .expect("valid request")
        })
        .collect()
}

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations(|| drop(std::hint::black_box(Box::new(1u64)))) >= 1);
}

#[test]
fn admitted_requests_do_not_allocate() {
    let shutdown = Shutdown::default();
    let mut service = Drain::new(Static, shutdown.clone());
    let requests = requests("/");
    let admitted = Served {
        status: StatusCode::OK,
        body_held_guard: true,
        bytes: BODY.len(),
    };

    let n = allocations(|| {
        for request in requests {
            assert_eq!(serve(&mut service, request), admitted);
        }
    });

    assert_eq!(n, 0);
    assert_eq!(shutdown.in_flight(), 0);
    assert_eq!(shutdown.rejected(), 0);
}

#[test]
fn exempt_requests_do_not_allocate_and_rejections_are_answered() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let shutdown = Shutdown::default();
    let mut service = Drain::new(Static, shutdown.clone());
    let probes = requests("/health/ready");
    let exempt = allocations(|| {
        for request in probes {
            let served = serve(&mut service, request);
            assert_eq!(served.status, StatusCode::OK);
            assert!(!served.body_held_guard);
        }
    });
    assert_eq!(exempt, 0);

    // Once the shutdown has begun, responses on HTTP/1.x get `Connection: close`,
    // which allocates the header map of a response that had none, and the 503 path
    // allocates its response's headers (`Retry-After`, `Content-Type`, `Connection`):
    // that is fine, it is not the accept path, so only the answers are checked here.
    shutdown.request_shutdown("test");
    runtime.block_on(shutdown.drain());
    for request in requests("/health/ready") {
        let served = serve(&mut service, request);
        assert_eq!(served.status, StatusCode::OK);
        assert!(!served.body_held_guard);
    }
    for request in requests("/") {
        let served = serve(&mut service, request);
        assert_eq!(served.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!served.body_held_guard);
        assert!(served.bytes > 0, "the 503 carries a message");
    }
    assert_eq!(shutdown.in_flight(), 0);
    assert_eq!(shutdown.rejected(), REQUESTS as u64);
}
