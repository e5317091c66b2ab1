//! Server for the end-to-end benchmarks of `cargo xtask bench` (`xtask/src/bench_e2e.rs`):
//! one axum router with `GET /` (a short static body), served three ways.
//!
//! - `BENCH_MODE=bare`: plain axum, `axum::serve`, stopped by SIGTERM.
//! - `BENCH_MODE=drain`: the same router through `drain_axum::drained` (the whole router
//!   behind one `DrainLayer`) and `drain_axum::serve`.
//!   Two more routes for the scale run: `GET /hold` (inside the drain layer) waits until
//!   the shutdown is triggered, the request token is cancelled, or 60 s pass; and
//!   `GET /in-flight` (outside the layer) answers the number of requests in flight.
//! - `BENCH_MODE=graceful`: the same router where each request holds a `tokio-graceful`
//!   guard until its response is produced (an `axum::middleware::from_fn` layer, the way
//!   a user adds it); `axum::serve` with graceful shutdown on that crate's signal.
//!
//! `BIND_ADDR` (default `127.0.0.1:0`). Prints `listening on <addr>` on stdout; logs to
//! stderr. Exit code 2 on a bad variable.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use drain_axum::{DEFAULT_EXEMPT_PATHS, DrainLayer};
use shutdown_core::{RequestGate, Shutdown, ShutdownConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const BODY: &str = "hello, bench";

#[tokio::main]
async fn main() {
    e2e_tests::init_logs();
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "bare".into());
    if !matches!(mode.as_str(), "bare" | "drain" | "graceful") {
        eprintln!("BENCH_MODE={mode:?}: expected bare, drain or graceful");
        std::process::exit(2);
    }
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&bind).await.unwrap_or_else(|error| {
        eprintln!("BIND_ADDR={bind:?}: {error}");
        std::process::exit(2);
    });
    let addr = listener.local_addr().unwrap_or_else(|error| {
        eprintln!("local address: {error}");
        std::process::exit(2);
    });
    let code = match mode.as_str() {
        "drain" => drain(listener, &addr.to_string()).await,
        "graceful" => graceful(listener, &addr.to_string()).await,
        _ => bare(listener, &addr.to_string()).await,
    };
    std::process::exit(code);
}

fn router() -> Router {
    Router::new().route("/", get(|| async { BODY }))
}

async fn bare(listener: TcpListener, addr: &str) -> i32 {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            eprintln!("SIGTERM handler: {error}");
            return 2;
        }
    };
    println!("listening on {addr}");
    let stopped = async move {
        term.recv().await;
    };
    match axum::serve(listener, router())
        .with_graceful_shutdown(stopped)
        .await
    {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("serving failed: {error}");
            1
        }
    }
}

async fn drain(listener: TcpListener, addr: &str) -> i32 {
    let config = match ShutdownConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return 2;
        }
    };
    let shutdown = Shutdown::new(config);
    if let Err(error) = shutdown_signal::install(&shutdown) {
        eprintln!("{error}");
        return 2;
    }
    let hold = {
        let shutdown = shutdown.clone();
        let requests = shutdown.request_token();
        move || {
            let (shutdown, requests) = (shutdown.clone(), requests.clone());
            async move {
                tokio::select! {
                    () = shutdown.triggered() => "released by the shutdown",
                    () = requests.cancelled() => "interrupted at the drain deadline",
                    () = tokio::time::sleep(Duration::from_secs(60)) => "held for 60 s",
                }
            }
        }
    };
    let in_flight = {
        let shutdown = shutdown.clone();
        move || {
            let count = shutdown.in_flight();
            async move { count.to_string() }
        }
    };
    // `/in-flight` is exempt, like the probes: it does not count itself.
    let exempt = DEFAULT_EXEMPT_PATHS.into_iter().chain(["/in-flight"]);
    let layer = DrainLayer::from_gate(RequestGate::new(shutdown.clone()).with_exempt_paths(exempt));
    let app = drain_axum::Drained::new(
        router()
            .route("/hold", get(hold))
            .route("/in-flight", get(in_flight)),
        layer,
    );
    println!("listening on {addr}");
    match drain_axum::serve(listener, app, &shutdown).await {
        Ok(report) => report.exit_code(),
        Err(error) => {
            eprintln!("{error}");
            1
        }
    }
}

async fn graceful(listener: TcpListener, addr: &str) -> i32 {
    let term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            eprintln!("SIGTERM handler: {error}");
            return 2;
        }
    };
    let shutdown = tokio_graceful::Shutdown::builder()
        .with_signal(async move {
            let mut term = term;
            term.recv().await;
        })
        .build();
    // A weak guard in the layer (a strong one would hold the shutdown open itself),
    // upgraded per request.
    let weak = shutdown.guard_weak();
    let app = router().layer(middleware::from_fn_with_state(weak, hold_guard));
    println!("listening on {addr}");
    let stopped = shutdown.guard_weak();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped.into_cancelled().await })
        .await;
    if let Err(error) = served {
        eprintln!("serving failed: {error}");
        return 1;
    }
    match shutdown.shutdown_with_limit(Duration::from_secs(30)).await {
        Ok(_) => 0,
        Err(error) => {
            eprintln!("tokio-graceful: {error}");
            1
        }
    }
}

async fn hold_guard(
    State(weak): State<tokio_graceful::WeakShutdownGuard>,
    request: Request,
    next: Next,
) -> Response {
    let guard = weak.upgrade();
    let response = next.run(request).await;
    drop(guard);
    response
}
