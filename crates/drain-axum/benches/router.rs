//! One request through an axum `Router` in process (no socket): build it, clone the
//! service and `oneshot` it, read the body to its end. Run with
//! `cargo bench -p drain-axum --bench router`.
//!
//! - `bare`: the router alone.
//! - `with_drain`: `DrainRouterExt::with_drain`, the layer added route by route
//!   (`Router::layer`); axum clones each route's boxed service for every request.
//! - `drained`: `drain_axum::drained`, the whole router behind one layer, as
//!   `drain_axum::serve` (`axum::serve`) runs it: its response body boxed into axum's
//!   `Body`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::Response;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use drain_axum::DrainRouterExt;
use http_body_util::BodyExt;
use shutdown_core::Shutdown;
use tower::{Service, ServiceExt};

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello, bench" }))
}

async fn one_request<S, B>(service: &S)
where
    S: Service<Request, Response = Response<B>, Error = Infallible> + Clone,
    B: HttpBody,
    B::Error: std::fmt::Debug,
{
    let request = Request::get("/").body(Body::empty()).expect("request");
    let Ok(response) = service.clone().oneshot(request).await;
    black_box(response.into_body().collect().await.expect("body"));
}

fn bench_router(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = Shutdown::default();
    let mut group = c.benchmark_group("axum_router");
    bench(&mut group, &runtime, "bare", router());
    bench(
        &mut group,
        &runtime,
        "with_drain",
        router().with_drain(&shutdown),
    );
    bench(
        &mut group,
        &runtime,
        "drained",
        drain_axum::drained(router(), &shutdown),
    );
    group.finish();
    assert_eq!(shutdown.in_flight(), 0, "every guard was released");
}

fn bench<S, B>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: S,
) where
    S: Service<Request, Response = Response<B>, Error = Infallible> + Clone,
    B: HttpBody,
    B::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    one_request(&service).await;
                }
                started.elapsed()
            })
        })
    });
}

criterion_group!(benches, bench_router);
criterion_main!(benches);
