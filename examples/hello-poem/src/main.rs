//! A poem service that shuts down gracefully. Run it, `curl localhost:3000/work`, press
//! Ctrl-C while the request runs: it completes, new requests get `503`, then the
//! cleanup runs. `SHUTDOWN_TIMEOUT`, `SHUTDOWN_DELAY`, ... and `BIND_ADDR` configure it.

use std::time::Duration;

use drain_poem::{Drain, health_routes};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{EndpointExt, Route, get, handler};
use shutdown_core::{Shutdown, ShutdownConfig};

#[handler]
async fn work() -> &'static str {
    tokio::time::sleep(Duration::from_secs(2)).await;
    "done\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();

    // A bad value (SHUTDOWN_TIMEOUT=abc) is an error naming the variable, not a default.
    let shutdown = Shutdown::new(ShutdownConfig::from_env()?);
    shutdown_signal::install(&shutdown)?;
    shutdown.register_cleanup("database", || async {
        tracing::info!("closing the database pool");
    });

    // Drain last, so it sees every request first; health paths are exempt from it.
    let app = Route::new()
        .at("/work", get(work))
        .nest("/health", health_routes(shutdown.clone()))
        .with(Drain::new(shutdown.clone()));

    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    for addr in acceptor.local_addr() {
        tracing::info!(%addr, "serving GET /work, /health/live, /health/ready");
    }

    // Serves through the drain, stops poem (bounded), runs the cleanup.
    let report = drain_poem::serve(acceptor, app, &shutdown).await?;
    std::process::exit(report.exit_code());
}
