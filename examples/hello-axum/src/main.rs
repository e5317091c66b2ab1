//! axum with a graceful shutdown, in five steps. `cargo run -p hello-axum`, then
//! `curl localhost:3000/slow` and press Ctrl-C: the slow request completes, new
//! requests get `503`, cleanup runs, and the process exits with the report's code.

use std::time::Duration;

use axum::{Router, routing::get};
use shutdown_core::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // 1. The handle, configured by `SHUTDOWN_*` (a bad value is an error naming it).
    let shutdown = Shutdown::new(ShutdownConfig::from_env()?);
    // 2. SIGTERM and SIGINT start the shutdown; a second signal exits at once.
    shutdown_signal::install(&shutdown)?;
    // 3. Cleanup tasks, run after the drain, last registered first.
    shutdown.register_cleanup("database", || async { /* pool.close().await */ });
    // 4. The application behind the drain layer, with `/health/live` and `/health/ready`.
    let routes = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow));
    let app = drain_axum::drained(routes, &shutdown);
    // 5. Serve until the drain has ended, clean up, exit with the report's code.
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let report = drain_axum::serve(listener, app, &shutdown).await?;
    std::process::exit(report.exit_code());
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "done\n"
}
