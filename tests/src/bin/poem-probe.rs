//! Probe for the poem adapter scenarios: a poem service that follows the probe contract
//! of `e2e_tests::scenarios`, served through `drain-poem` (`Drain` middleware, health
//! routes, `/metrics`, `serve`).
//!
//! Configuration comes from the usual `SHUTDOWN_*` variables (a bad one exits with code
//! 2 and a message) and `BIND_ADDR` (default `127.0.0.1:0`).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use drain_metrics::{DrainMetrics, PrometheusMetrics};
use drain_poem::DrainLayer;
use poem::listener::TcpAcceptor;
use poem::{Body, EndpointExt, Request, Route, get, handler, post};
use shutdown_core::{Shutdown, ShutdownConfig};

#[handler]
fn index() -> &'static str {
    "ok"
}

/// Sleeps `ms` milliseconds whatever happens (a handler stuck on I/O).
#[handler]
async fn slow(request: &Request) -> &'static str {
    println!("slow started");
    tokio::time::sleep(Duration::from_millis(param(request, "ms"))).await;
    "done"
}

/// `chunks` lines, one every `interval_ms`; `chunks=0` never ends.
#[handler]
fn stream(request: &Request) -> Body {
    let chunks = param(request, "chunks");
    let interval = Duration::from_millis(param(request, "interval_ms"));
    let lines = futures_util::stream::unfold(0u64, move |i| async move {
        if chunks != 0 && i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let line = Bytes::from(format!("chunk {i}\n"));
        Some((Ok::<_, std::io::Error>(line), i + 1))
    });
    Body::from_bytes_stream(lines)
}

#[handler]
async fn upload(body: Body) -> poem::Result<String> {
    let body = body.into_bytes().await?;
    Ok(format!("received {} bytes", body.len()))
}

/// The query parameter `name` as a number; 0 when absent or not a number.
fn param(request: &Request, name: &str) -> u64 {
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

/// Whether a connection to `addr` is refused: the server has closed its listener.
fn listener_closed(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused)
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("{message}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    e2e_tests::init_logs();

    let config = ShutdownConfig::from_env()
        .unwrap_or_else(|error| fail(format_args!("configuration error: {error}")));
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let prometheus = PrometheusMetrics::install().unwrap_or_else(|error| fail(error));
    let shutdown = Shutdown::new(config).with_observer(DrainMetrics::new());
    if let Err(error) = shutdown_signal::install(&shutdown) {
        fail(error);
    }
    e2e_tests::handoff_on_sighup(&shutdown);

    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|error| fail(format_args!("BIND_ADDR={bind:?}: {error}")));
    let addr = listener.local_addr().unwrap_or_else(|error| fail(error));
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap_or_else(|error| fail(error));
    for name in ["first", "second"] {
        shutdown.register_cleanup(name, move || {
            println!("cleanup {name} listener_closed={}", listener_closed(addr));
        });
    }

    let app = Route::new()
        .at("/", get(index))
        .at("/slow", get(slow))
        .at("/stream", get(stream))
        .at("/upload", post(upload))
        .nest("/health", drain_poem::health_routes(shutdown.clone()))
        .at("/metrics", drain_poem::Metrics::new(prometheus))
        .with(DrainLayer::new(shutdown.clone()));

    println!("listening on {addr}");
    let code = match drain_poem::serve(acceptor, app, &shutdown).await {
        Ok(report) => report.exit_code(),
        Err(error) => {
            eprintln!("{error}");
            1
        }
    };
    println!("exit_code={code}");
    std::process::exit(code);
}
