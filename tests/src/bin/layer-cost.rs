//! The memory and allocations the drain layer adds per request, measured with dhat's
//! heap statistics (a global allocator); run by `cargo xtask bench`, which puts its
//! table into `docs/bench-summary.md`. Not a test: it reports, it asserts nothing.
//!
//! For each stack, with and without the layer:
//! - allocations per request, over 1000 requests run one after the other, each read to
//!   the end of its body;
//! - heap bytes per request in flight: 1000 requests started, each boxed the way a
//!   server's connection task boxes it, and parked in its handler; the heap grown
//!   meanwhile, divided by 1000. What the layer adds inline (its guard, its state in the
//!   response future) shows up here because the boxed future is larger.
//!
//! Stacks: `drain-tower`'s `Drain` over a `tower::service_fn`; axum's `Router` bare,
//! with `with_drain` (route by route), and `drained` (the whole router, as
//! `drain_axum::serve` runs it).
//!
//! Prints markdown table rows on stdout.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http;
use axum::routing::get;
use bytes::Bytes;
use drain_axum::DrainRouterExt;
use drain_tower::DrainLayer;
use http_body_util::{BodyExt, Full};
use shutdown_core::Shutdown;
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt, service_fn};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUESTS: usize = 1000;

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Makes the future of one request (start to end of body) on some stack.
trait Stack {
    fn request(&self, path: &'static str) -> BoxFuture;
}

impl<S, B> Stack for S
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + 'static,
    B: HttpBody + 'static,
    B::Error: std::fmt::Debug,
{
    fn request(&self, path: &'static str) -> BoxFuture {
        let service = self.clone();
        Box::pin(async move {
            let request = http::Request::get(path)
                .body(Body::empty())
                .expect("static request");
            let Ok(response) = service.oneshot(request).await;
            let body = response.into_body().collect().await.expect("body");
            std::hint::black_box(body);
        })
    }
}

fn poll_once(future: &mut BoxFuture) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    future.as_mut().poll(&mut cx).is_ready()
}

/// Allocations per completed request.
fn allocations_per_request(stack: &dyn Stack) -> f64 {
    // Warm up (lazily built state, first-use allocations).
    for _ in 0..10 {
        let mut future = stack.request("/");
        assert!(poll_once(&mut future), "a `/` request completes at once");
    }
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..REQUESTS {
        let mut future = stack.request("/");
        assert!(poll_once(&mut future), "a `/` request completes at once");
    }
    (dhat::HeapStats::get().total_blocks - before) as f64 / REQUESTS as f64
}

/// Heap bytes per request parked in its handler (on `/hold`), then released.
fn bytes_per_request_in_flight(stack: &dyn Stack, hold: &Notify) -> f64 {
    let mut parked = Vec::with_capacity(REQUESTS);
    let before = dhat::HeapStats::get().curr_bytes;
    for _ in 0..REQUESTS {
        let mut future = stack.request("/hold");
        assert!(!poll_once(&mut future), "`/hold` waits in its handler");
        parked.push(future);
    }
    let grown = dhat::HeapStats::get().curr_bytes - before;
    hold.notify_waiters();
    for mut future in parked {
        assert!(poll_once(&mut future), "released by the notification");
    }
    grown as f64 / REQUESTS as f64
}

fn row(name: &str, stack: &dyn Stack, hold: &Notify) -> String {
    let allocations = allocations_per_request(stack);
    let bytes = bytes_per_request_in_flight(stack, hold);
    format!("| {name} | {allocations:.2} | {bytes:.0} |")
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let hold = Arc::new(Notify::new());
    let shutdown = Shutdown::default();

    let inner = {
        let hold = Arc::clone(&hold);
        service_fn(move |request: http::Request<Body>| {
            let hold = Arc::clone(&hold);
            async move {
                if request.uri().path() == "/hold" {
                    hold.notified().await;
                }
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        })
    };
    let router = {
        let hold = Arc::clone(&hold);
        Router::new().route("/", get(|| async { "ok" })).route(
            "/hold",
            get(move || {
                let hold = Arc::clone(&hold);
                async move {
                    hold.notified().await;
                    "ok"
                }
            }),
        )
    };

    println!("| stack | allocations per request | heap bytes per request in flight |");
    println!("|---|---|---|");
    println!("{}", row("tower `service_fn`", &inner, &hold));
    println!(
        "{}",
        row(
            "tower `service_fn` + `DrainLayer`",
            &DrainLayer::new(shutdown.clone()).layer(inner.clone()),
            &hold
        )
    );
    println!("{}", row("axum `Router`", &router, &hold));
    println!(
        "{}",
        row(
            "axum `Router` + `with_drain` (route by route)",
            &router.clone().with_drain(&shutdown),
            &hold
        )
    );
    println!(
        "{}",
        row(
            "axum `Router` + `drained` (whole router)",
            &drain_axum::drained(router.clone(), &shutdown),
            &hold
        )
    );
    assert_eq!(shutdown.in_flight(), 0, "every guard was released");
}
