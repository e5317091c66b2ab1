//! What the test binaries of this crate share.

use std::time::Duration;

use drain_axum::ServeError;
use shutdown_core::ShutdownReport;
use tokio::task::JoinHandle;

/// The report of a spawned `drain_axum::serve`, once it has returned (within `wait`).
pub async fn served(
    server: JoinHandle<Result<ShutdownReport, ServeError>>,
    wait: Duration,
) -> ShutdownReport {
    tokio::time::timeout(wait, server)
        .await
        .expect("serve returns")
        .expect("server task")
        .expect("serve")
}
