//! A minimal service for the signal tests: it installs the signal handlers, keeps one
//! simulated request in flight for `PROBE_REQUEST_MS` milliseconds (giving up when the
//! request-scope token is cancelled at the drain deadline), registers cleanup tasks that
//! print their name, prints `ready` once all that is in place, and exits with the
//! report's exit code.
//!
//! `PROBE_CLEANUP_FAIL=1` makes the "database" cleanup fail. Configuration comes from
//! the usual `SHUTDOWN_*` variables; a bad one exits with code 2 and a message.

use std::time::Duration;

use shutdown_core::{Shutdown, ShutdownConfig};

#[tokio::main]
async fn main() {
    e2e_tests::init_logs();

    let config = match ShutdownConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            std::process::exit(2);
        }
    };
    let request_ms = match std::env::var("PROBE_REQUEST_MS").map(|v| v.parse::<u64>()) {
        Ok(Ok(ms)) => ms,
        Err(_) => 0,
        Ok(Err(error)) => {
            eprintln!("PROBE_REQUEST_MS: {error}");
            std::process::exit(2);
        }
    };
    let cleanup_fails = std::env::var_os("PROBE_CLEANUP_FAIL").is_some();

    let shutdown = Shutdown::new(config);
    if let Err(error) = shutdown_signal::install(&shutdown) {
        eprintln!("{error}");
        std::process::exit(2);
    }

    shutdown.register_cleanup("database", move || async move {
        println!("cleanup database");
        if cleanup_fails {
            Err("connection reset while closing")
        } else {
            Ok(())
        }
    });
    shutdown.register_cleanup("flush", || println!("cleanup flush"));

    let token = shutdown.token();
    shutdown.spawn(async move {
        token.cancelled().await;
        println!("background task stopped");
    });

    if request_ms > 0 {
        let Some(guard) = shutdown.try_enter() else {
            eprintln!("draining before the first request");
            std::process::exit(2);
        };
        let cancelled = shutdown.request_token();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(request_ms)) => println!("request completed"),
                () = cancelled.cancelled() => println!("request cancelled"),
            }
            drop(guard);
        });
    }

    println!("ready");
    let report = shutdown.run().await;
    println!("exit_code={}", report.exit_code());
    std::process::exit(report.exit_code());
}
