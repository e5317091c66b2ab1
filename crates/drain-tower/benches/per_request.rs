//! One full request through a tower stack: build the request, `ready` + `call`, await
//! the response, read the body to its end (so guards held by the body are released
//! inside the measured iteration). Run with
//! `cargo bench -p drain-tower --bench per_request`.
//!
//! - `bare`: the inner service alone: a `service_fn` answering a small static body.
//! - `drain_layer`: `DrainLayer` over it.
//! - `drain_layer_metrics`: the same, on a `Shutdown` observed by `DrainMetrics`
//!   recording into a real Prometheus recorder.
//! - `arc_counter_layer`: a hand-written layer whose guard is an `Arc<AtomicUsize>`,
//!   incremented in `call` and decremented when the body ends or drops (tower-http's
//!   `InFlightRequests` design): the floor for a guard that lives in the body.
//! - `core_guard_layer`: `Shutdown::try_enter`'s guard in the floor's wrapper: the
//!   guard alone, without what `DrainLayer` adds (exempt paths, `Connection: close`).
//! - `tokio_graceful`: the same body wrapper holding a `tokio-graceful` guard per request.
//! - `task_tracker`: tokio-util's `TaskTracker::track_future` around the inner future.
//! - `concurrency_limit`: tower's `ConcurrencyLimitLayer` with a limit never reached.
//! - `task_tracker_body`, `semaphore_body`: the last two alternatives' primitives held
//!   the way a drain must hold them, in the body wrapper until the body ends: a
//!   `TaskTracker` token, and an owned permit of a tokio `Semaphore` (what
//!   `ConcurrencyLimit` holds). Like for like with the body-held rows above.
//!
//! Group `per_request` runs them on one thread; `per_request_2_threads` runs each on two
//! threads at once, sharing the same state (contended).

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use drain_metrics::DrainMetrics;
use drain_tower::DrainLayer;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use metrics_exporter_prometheus::PrometheusBuilder;
use shutdown_core::Shutdown;
use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const BODY: &[u8] = b"hello, world";

fn inner()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone {
    service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
    })
}

/// One request, start to end of body.
async fn one_request<S, B>(service: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let request = Request::new(Full::new(Bytes::new()));
    let Ok(ready) = service.ready().await;
    let Ok(response) = ready.call(request).await;
    let mut body = pin!(response.into_body());
    while let Some(frame) = body.frame().await {
        black_box(frame.expect("static body"));
    }
}

fn bench<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    name: &str,
    mut service: S,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: Body,
    B::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        // One `block_on` per sample, not per request, so the runtime's entry is not
        // part of the figure.
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    one_request(&mut service).await;
                }
                started.elapsed()
            })
        })
    });
}

/// The same, contended: two threads, each with its own current-thread runtime and a
/// clone of the service (so they share the shutdown state, the counter, the semaphore),
/// started together; the figure is the wall time per request per thread.
fn bench_two_threads<S, B>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, service: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone + Send,
    B: Body,
    B::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(3);
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    let mut service = service.clone();
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("runtime");
                        barrier.wait();
                        runtime.block_on(async {
                            for _ in 0..iters {
                                one_request(&mut service).await;
                            }
                        });
                        barrier.wait();
                    });
                }
                barrier.wait();
                let started = Instant::now();
                barrier.wait();
                started.elapsed()
            })
        })
    });
}

// ----- the hand-written floor, and the same wrapper for tokio-graceful's guard ---------

/// Makes the guard that one request holds until its body ends.
trait Enter: Clone {
    type Guard;
    fn enter(&self) -> Self::Guard;
}

/// An `Arc<AtomicUsize>` count: the hand-written guard.
#[derive(Clone, Default)]
struct ArcCounter(Arc<AtomicUsize>);

struct ArcCounterGuard(Arc<AtomicUsize>);

impl Enter for ArcCounter {
    type Guard = ArcCounterGuard;
    fn enter(&self) -> ArcCounterGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        ArcCounterGuard(Arc::clone(&self.0))
    }
}

impl Drop for ArcCounterGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `shutdown-core`'s own guard in the floor's wrapper: what `DrainLayer` adds beyond
/// the guard (exempt paths, `Connection: close`, the rejection branch).
#[derive(Clone)]
struct CoreGuard(Shutdown);

impl Enter for CoreGuard {
    type Guard = Option<shutdown_core::RequestGuard>;
    fn enter(&self) -> Self::Guard {
        self.0.try_enter()
    }
}

/// tokio-graceful: the layer keeps a weak guard (so that it does not hold the shutdown
/// open itself) and upgrades a clone per request, which then blocks the shutdown until
/// it drops. Same cost as `Shutdown::guard()` (a strong clone).
#[derive(Clone)]
struct Graceful(tokio_graceful::WeakShutdownGuard);

impl Enter for Graceful {
    type Guard = tokio_graceful::ShutdownGuard;
    fn enter(&self) -> tokio_graceful::ShutdownGuard {
        self.0.clone().upgrade()
    }
}

/// A `TaskTracker` token per request.
#[derive(Clone)]
struct Tracked(TaskTracker);

impl Enter for Tracked {
    type Guard = tokio_util::task::task_tracker::TaskTrackerToken;
    fn enter(&self) -> Self::Guard {
        self.0.token()
    }
}

/// An owned permit of a semaphore whose capacity is never reached.
#[derive(Clone)]
struct Permits(Arc<Semaphore>);

impl Enter for Permits {
    type Guard = Option<OwnedSemaphorePermit>;
    fn enter(&self) -> Self::Guard {
        Arc::clone(&self.0).try_acquire_owned().ok()
    }
}

#[derive(Clone)]
struct GuardLayer<E>(E);

impl<S, E: Clone> Layer<S> for GuardLayer<E> {
    type Service = Guarded<S, E>;
    fn layer(&self, inner: S) -> Guarded<S, E> {
        Guarded {
            inner,
            enter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Guarded<S, E> {
    inner: S,
    enter: E,
}

impl<S, E, Req, B> Service<Req> for Guarded<S, E>
where
    S: Service<Req, Response = Response<B>>,
    E: Enter,
{
    type Response = Response<GuardBody<B, E::Guard>>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, E::Guard>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let guard = self.enter.enter();
        GuardFuture {
            future: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    struct GuardFuture<F, G> {
        #[pin]
        future: F,
        guard: Option<G>,
    }
}

impl<F, G, B, E> Future for GuardFuture<F, G>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B, G>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|body| GuardBody { body, guard })))
    }
}

pin_project_lite::pin_project! {
    struct GuardBody<B, G> {
        #[pin]
        body: B,
        guard: Option<G>,
    }
}

impl<B: Body, G> Body for GuardBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.body.as_mut().poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || this.body.is_end_stream() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// ----- the group ------------------------------------------------------------------------

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this process");
    drain_metrics::describe_metrics();

    let shutdown = Shutdown::default();
    let observed = Shutdown::default().with_observer(DrainMetrics::new());
    let counter = ArcCounter::default();
    // Building it spawns the task that waits for its signal: inside the runtime.
    let graceful = runtime.block_on(async {
        tokio_graceful::Shutdown::builder()
            .with_signal(std::future::pending::<()>())
            .build()
    });
    let tracker = TaskTracker::new();
    let semaphore = Arc::new(Semaphore::new(1 << 20));

    let mut group = c.benchmark_group("per_request");
    bench(&mut group, &runtime, "bare", inner());
    bench(
        &mut group,
        &runtime,
        "drain_layer",
        DrainLayer::new(shutdown.clone()).layer(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "drain_layer_metrics",
        DrainLayer::new(observed.clone()).layer(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "arc_counter_layer",
        GuardLayer(counter.clone()).layer(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "core_guard_layer",
        GuardLayer(CoreGuard(shutdown.clone())).layer(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "tokio_graceful",
        GuardLayer(Graceful(graceful.guard_weak())).layer(inner()),
    );
    // The guard-at-future style: the token is released when the response head is
    // ready, not at the end of the body, so this does strictly less work than the
    // body-held guards above (and would not drain a streaming response).
    let tracked = tracker.clone();
    bench(
        &mut group,
        &runtime,
        "task_tracker",
        ServiceBuilder::new()
            .map_future(move |future| tracked.track_future(future))
            .service(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "concurrency_limit",
        ConcurrencyLimitLayer::new(1 << 20).layer(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "task_tracker_body",
        GuardLayer(Tracked(tracker.clone())).layer(inner()),
    );
    bench(
        &mut group,
        &runtime,
        "semaphore_body",
        GuardLayer(Permits(Arc::clone(&semaphore))).layer(inner()),
    );
    group.finish();

    let mut group = c.benchmark_group("per_request_2_threads");
    bench_two_threads(&mut group, "bare", inner());
    bench_two_threads(
        &mut group,
        "drain_layer",
        DrainLayer::new(shutdown.clone()).layer(inner()),
    );
    bench_two_threads(
        &mut group,
        "drain_layer_metrics",
        DrainLayer::new(observed.clone()).layer(inner()),
    );
    bench_two_threads(
        &mut group,
        "arc_counter_layer",
        GuardLayer(counter.clone()).layer(inner()),
    );
    bench_two_threads(
        &mut group,
        "core_guard_layer",
        GuardLayer(CoreGuard(shutdown.clone())).layer(inner()),
    );
    bench_two_threads(
        &mut group,
        "tokio_graceful",
        GuardLayer(Graceful(graceful.guard_weak())).layer(inner()),
    );
    let tracked = tracker.clone();
    bench_two_threads(
        &mut group,
        "task_tracker",
        ServiceBuilder::new()
            .map_future(move |future| tracked.track_future(future))
            .service(inner()),
    );
    bench_two_threads(
        &mut group,
        "concurrency_limit",
        ConcurrencyLimitLayer::new(1 << 20).layer(inner()),
    );
    bench_two_threads(
        &mut group,
        "task_tracker_body",
        GuardLayer(Tracked(tracker.clone())).layer(inner()),
    );
    bench_two_threads(
        &mut group,
        "semaphore_body",
        GuardLayer(Permits(Arc::clone(&semaphore))).layer(inner()),
    );
    group.finish();

    // Every guard was released, and the observer really recorded.
    assert_eq!(shutdown.in_flight(), 0);
    assert_eq!(observed.in_flight(), 0);
    assert_eq!(counter.0.load(Ordering::Acquire), 0);
    assert!(tracker.is_empty());
    assert_eq!(semaphore.available_permits(), 1 << 20);
    assert!(prometheus.render().contains("in_flight_requests 0"));
}

criterion_group!(benches, per_request);
criterion_main!(benches);
