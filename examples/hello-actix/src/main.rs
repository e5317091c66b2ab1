//! actix-web with a graceful shutdown. `cargo run -p hello-actix`, then
//! `curl localhost:8080/` (it takes 3 s) and press Ctrl-C: the request completes, new
//! requests get `503`, cleanup runs, and the process exits with the report's code.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, web};
use drain_actix::Drain;
use shutdown_core::{Shutdown, ShutdownConfig};

#[actix_web::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = ShutdownConfig::from_env().unwrap_or_else(|error| exit(2, error));
    let shutdown = Shutdown::new(config);
    if let Err(error) = shutdown_signal::install(&shutdown) {
        exit(2, error);
    }
    shutdown.register_cleanup("database", || async { /* pool.close().await */ });

    // Made once, cloned into each worker's app: every worker counts on the same handle.
    let drain = Drain::new(shutdown.clone());
    let health = shutdown.clone();
    let app = move || {
        App::new()
            .wrap(drain.clone())
            .configure(drain_actix::health_routes(health.clone()))
            .route("/", web::get().to(hello))
    };

    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener =
        TcpListener::bind(&addr).unwrap_or_else(|error| exit(2, format!("{addr}: {error}")));
    match drain_actix::serve(listener, app, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => exit(1, error),
    }
}

async fn hello() -> &'static str {
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    "hello\n"
}

fn exit(code: i32, error: impl std::fmt::Display) -> ! {
    eprintln!("{error}");
    std::process::exit(code)
}
