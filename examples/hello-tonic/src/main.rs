//! tonic with a graceful shutdown, in five steps. `cargo run -p hello-tonic`, call
//! `helloworld.Greeter/SayHello` with the name `slow:5000` and press Ctrl-C: the slow
//! RPC completes, new RPCs get `UNAVAILABLE`, health turns `NOT_SERVING`, open
//! `SayHelloStream` streams end with a status, cleanup runs, and the process exits
//! with the report's code.
//!
//! `BIND_ADDR` (default `127.0.0.1:50051`, port `0` for any) and the `SHUTDOWN_*`
//! variables configure it; a bad value exits with code 2. Prints
//! `listening on <ip>:<port>` on stdout once serving.

use drain_metrics::DrainMetrics;
use drain_tonic::DrainLayer;
use hello_tonic::MyGreeter;
use hello_tonic::pb::greeter_server::GreeterServer;
use shutdown_core::{Shutdown, ShutdownConfig};
use tonic::service::Routes;
use tower_layer::Layer;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    // 1. The handle, configured by `SHUTDOWN_*`; the metrics observer (`drain-metrics`).
    let config = ShutdownConfig::from_env().unwrap_or_else(|error| fail(&error));
    let shutdown = Shutdown::new(config).with_observer(DrainMetrics::new());
    // 2. SIGTERM and SIGINT start the shutdown; a second signal exits at once.
    if let Err(error) = shutdown_signal::install(&shutdown) {
        fail(&error);
    }
    // 3. Cleanup tasks, run after the server has stopped, last registered first.
    shutdown.register_cleanup("database", || async { /* pool.close().await */ });
    // 4. The services behind the drain layer, with the gRPC health service.
    let (reporter, health) = drain_tonic::health_service(&shutdown);
    reporter.set_serving::<GreeterServer<MyGreeter>>().await;
    let routes = Routes::new(health).add_service(MyGreeter::new(shutdown.clone()).into_server());
    let app = DrainLayer::new(shutdown.clone()).layer(routes.prepare());
    // 5. Serve until the drain has ended, clean up, exit with the report's code.
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(error) => fail(&format!("BIND_ADDR={bind:?}: {error}")),
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(error) => fail(&error),
    }
    match drain_tonic::serve(listener, app, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(error.report().exit_code().max(1));
        }
    }
}

/// A configuration error: exit code 2, as the other services.
fn fail(error: &dyn std::fmt::Display) -> ! {
    eprintln!("hello-tonic: {error}");
    std::process::exit(2);
}
