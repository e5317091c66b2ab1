//! axum with a graceful shutdown. `cargo run -p hello-axum`, then
//! `curl localhost:3000/slow` and press Ctrl-C: the slow request completes, new
//! requests get `503`, cleanup runs, and the process exits with the report's code.

use std::time::Duration;

use axum::{Router, routing::get};
use shutdown_core::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = ShutdownConfig::from_env().unwrap_or_else(|error| {
        eprintln!("configuration error: {error}");
        std::process::exit(2);
    });
    let shutdown = Shutdown::new(config);
    if let Err(error) = shutdown_signal::install(&shutdown) {
        eprintln!("{error}");
        std::process::exit(2);
    }
    shutdown.register_cleanup("database", || async { /* pool.close().await */ });

    let routes = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow));
    let app = drain_axum::drained(routes, &shutdown);

    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {addr}: {error}");
            std::process::exit(2);
        }
    };
    match drain_axum::serve(listener, app).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "done\n"
}
