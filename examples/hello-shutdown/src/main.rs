//! A service without HTTP that shows the whole shutdown sequence: simulated requests
//! arrive every 250 ms and take 0.5 to 3 s, a background flusher ticks, and two
//! resources are closed at the end. Press Ctrl-C (or send SIGTERM) and watch it drain;
//! press Ctrl-C again to exit at once.
//!
//! ```text
//! cargo run -p hello-shutdown
//! SHUTDOWN_TIMEOUT=1 cargo run -p hello-shutdown   # see a drain timeout (exit code 3)
//! ```

use std::time::Duration;

use shutdown_core::{Shutdown, ShutdownConfig};
use tracing::info;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let config = match ShutdownConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            std::process::exit(2);
        }
    };
    let shutdown = Shutdown::new(config);
    if let Err(error) = shutdown_signal::install(&shutdown) {
        eprintln!("{error}");
        std::process::exit(2);
    }

    // Opened first, closed last.
    shutdown.register_cleanup("database", || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        info!("database closed");
    });
    let flusher_token = shutdown.token();
    shutdown.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut flushed = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => flushed += 1,
                () = flusher_token.cancelled() => break,
            }
        }
        info!(flushes = flushed + 1, "flusher wrote its last batch");
    });
    shutdown.register_cleanup("metrics", || info!("metrics flushed"));

    // The "server": a new simulated request every 250 ms until the drain turns them away.
    let server = shutdown.clone();
    tokio::spawn(async move {
        let mut arrivals = tokio::time::interval(Duration::from_millis(250));
        for n in 0u64.. {
            arrivals.tick().await;
            let Some(guard) = server.try_enter() else {
                info!(request = n, "503 Service Unavailable (draining)");
                continue;
            };
            let work = Duration::from_millis(500 + (n * 613) % 2500);
            tokio::spawn(async move {
                tokio::time::sleep(work).await;
                drop(guard);
            });
        }
    });

    info!("serving simulated requests; press Ctrl-C to shut down gracefully");
    let report = shutdown.run().await;
    std::process::exit(report.exit_code());
}
