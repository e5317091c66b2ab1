//! Probe for the axum adapter scenarios: implements the contract of
//! `e2e_tests::scenarios` with `drain-axum`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::routing::{get, post};
use drain_metrics::DrainMetrics;
use drain_metrics::prometheus::PrometheusMetrics;
use futures_util::stream;
use shutdown_core::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() {
    e2e_tests::init_logs();
    let config = ShutdownConfig::from_env().unwrap_or_else(|error| {
        eprintln!("configuration error: {error}");
        std::process::exit(2);
    });
    let metrics = PrometheusMetrics::install().unwrap_or_else(|error| {
        eprintln!("metrics: {error}");
        std::process::exit(2);
    });
    let shutdown = Shutdown::new(config).with_observer(DrainMetrics::new());
    if let Err(error) = shutdown_signal::install(&shutdown) {
        eprintln!("{error}");
        std::process::exit(2);
    }
    e2e_tests::handoff_on_sighup(&shutdown);

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|error| {
            eprintln!("BIND_ADDR={bind:?}: {error}");
            std::process::exit(2);
        });
    let addr = listener.local_addr().unwrap_or_else(|error| {
        eprintln!("local address: {error}");
        std::process::exit(2);
    });
    for name in ["first", "second"] {
        shutdown.register_cleanup(name, move || {
            println!("cleanup {name} listener_closed={}", listener_closed(addr));
        });
    }

    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/slow", get(slow))
        .route("/stream", get(stream_lines))
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("received {} bytes", body.len()) }),
        )
        .merge(drain_axum::metrics_routes(metrics));
    let app = drain_axum::drained(app, &shutdown);

    println!("listening on {addr}");
    match drain_axum::serve(
        drain_axum::HandoffListener::new(listener, &shutdown),
        app,
        &shutdown,
    )
    .await
    {
        Ok(report) => {
            println!("exit_code={}", report.exit_code());
            std::process::exit(report.exit_code());
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}

fn listener_closed(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

fn query(request: &Request, name: &str) -> u64 {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

async fn slow(request: Request) -> &'static str {
    let ms = query(&request, "ms");
    println!("slow started");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

async fn stream_lines(request: Request) -> Body {
    let chunks = query(&request, "chunks");
    let interval = Duration::from_millis(query(&request, "interval_ms"));
    let lines = stream::unfold(0u64, move |i| async move {
        if chunks != 0 && i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((
            Ok::<_, std::convert::Infallible>(format!("chunk {i}\n")),
            i + 1,
        ))
    });
    Body::from_stream(lines)
}
