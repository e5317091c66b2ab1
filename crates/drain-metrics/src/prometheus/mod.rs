//! Prometheus: install `metrics-exporter-prometheus`, serve its text on your own
//! `/metrics` route, and push the final values to a Pushgateway after the shutdown.
//!
//! Only with the `prometheus` feature.
//!
//! How it differs from using `metrics-exporter-prometheus` directly:
//!
//! - The exporter's own HTTP listener (`http-listener` feature) opens a second port with
//!   a server of its own, which the shutdown sequence does not know about. Here the
//!   text is a plain `String` from [`PrometheusMetrics::render`]: serve it on a route of
//!   the service's own router (any framework), so it stays answerable during the drain
//!   like the health routes.
//! - The exporter's `push-gateway` feature pushes on an interval from a background task
//!   and brings in a TLS stack. A shutdown needs one push, at the very end, when the
//!   final values are recorded: [`PrometheusMetrics::push`] is that push, over plain
//!   HTTP, bounded by a timeout, with no extra dependency.
//!
//! ```no_run
//! use std::time::Duration;
//! use drain_metrics::{DrainMetrics, PrometheusMetrics};
//! use shutdown_core::Shutdown;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Installs the global recorder and describes the metrics.
//! let prometheus = PrometheusMetrics::install()?;
//! let shutdown = Shutdown::default().with_observer(DrainMetrics::new());
//!
//! // Histograms need upkeep; it stops with the background tasks.
//! shutdown.spawn(prometheus.upkeep(Duration::from_secs(5), shutdown.token()));
//!
//! // In the `/metrics` handler of your router:
//! let body: String = prometheus.render();
//! let content_type = drain_metrics::prometheus::CONTENT_TYPE;
//! # let _ = (body, content_type);
//!
//! shutdown.request_shutdown("example");
//! let report = shutdown.run().await;
//! // The final values are recorded by now: push them once.
//! if let Err(error) = prometheus.push("http://pushgateway:9091", "my-service").await {
//!     eprintln!("{error}");
//! }
//! std::process::exit(report.exit_code());
//! # }
//! ```

mod push;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use shutdown_core::CancellationToken;

pub use push::{DEFAULT_PUSH_TIMEOUT, PushError};

use crate::describe_metrics;

/// The `Content-Type` of [`PrometheusMetrics::render`]'s text: the Prometheus text
/// exposition format 0.0.4. Answer `/metrics` with it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The shortest period [`PrometheusMetrics::upkeep`] accepts; a shorter one is raised
/// to it.
pub const MIN_UPKEEP_PERIOD: Duration = Duration::from_millis(1);

/// A Prometheus recorder's handle: renders the text for `/metrics`, runs the upkeep the
/// exporter needs, and pushes the final values to a Pushgateway.
///
/// A cheap [`Clone`] (one reference count).
#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    handle: PrometheusHandle,
}

impl PrometheusMetrics {
    /// Installs a Prometheus recorder with the exporter's default settings as the global
    /// `metrics` recorder, then calls [`describe_metrics`]. Create the
    /// [`DrainMetrics`](crate::DrainMetrics) after this.
    ///
    /// # Errors
    ///
    /// [`InstallError::AlreadyInstalled`] when a global recorder is already installed
    /// (there can be only one per process).
    pub fn install() -> Result<Self, InstallError> {
        Self::install_with(PrometheusBuilder::new())
    }

    /// Like [`install`](Self::install), with a builder you configured: global labels,
    /// histogram buckets, idle timeouts. Its exporter settings (HTTP listener, push
    /// gateway) are ignored: only the recorder is installed.
    ///
    /// ```no_run
    /// use drain_metrics::PrometheusMetrics;
    /// use drain_metrics::prometheus::PrometheusBuilder;
    ///
    /// let builder = PrometheusBuilder::new().add_global_label("service", "ingest");
    /// let prometheus = PrometheusMetrics::install_with(builder)?;
    /// # Ok::<(), drain_metrics::InstallError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InstallError::AlreadyInstalled`] when a global recorder is already installed.
    pub fn install_with(builder: PrometheusBuilder) -> Result<Self, InstallError> {
        let handle = builder.install_recorder().map_err(InstallError::from)?;
        describe_metrics();
        Ok(Self { handle })
    }

    /// Wraps the handle of a recorder you built and installed yourself, for example
    /// with `PrometheusBuilder::build_recorder` and a local recorder in tests. Call
    /// [`describe_metrics`] yourself once it is installed.
    pub fn from_handle(handle: PrometheusHandle) -> Self {
        Self { handle }
    }

    /// The exporter's handle.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// The current values in the Prometheus text format, for the body of a `/metrics`
    /// response (with [`CONTENT_TYPE`]). Framework-agnostic: any router can serve a
    /// `String`.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Runs the exporter's upkeep once: drains recorded histogram samples into their
    /// summaries and publishes new descriptions. Rendering does the same, so only a
    /// service that records histograms and is rarely scraped needs it; see
    /// [`upkeep`](Self::upkeep).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// A task that runs the upkeep every `every` (at least [`MIN_UPKEEP_PERIOD`]) until
    /// `stop` is cancelled. The exporter runs it by itself only when built with its
    /// `async-runtime` feature, which this crate leaves off.
    ///
    /// Spawn it on the shutdown's tracker with the shutdown's token, so that it ends with
    /// the other background tasks:
    /// `shutdown.spawn(prometheus.upkeep(period, shutdown.token()))`.
    pub fn upkeep(
        &self,
        every: Duration,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let handle = self.handle.clone();
        let every = every.max(MIN_UPKEEP_PERIOD);
        async move {
            while tokio::time::timeout(every, stop.cancelled()).await.is_err() {
                handle.run_upkeep();
            }
        }
    }

    /// Pushes [`render`](Self::render)'s text to a Prometheus Pushgateway, replacing
    /// what was pushed before for `job`: `PUT <gateway_url>/metrics/job/<job>`, bounded
    /// by [`DEFAULT_PUSH_TIMEOUT`].
    ///
    /// Call it once, after `Shutdown::run` returns: by then the observer has recorded
    /// the final values (`shutdown_duration_seconds`, `requests_interrupted`, the
    /// cleanup outcomes).
    ///
    /// `gateway_url` is the Pushgateway's base URL, for example
    /// `http://pushgateway:9091` (a path prefix is kept). **Only `http://` is
    /// supported**: there is no TLS client here; push through a sidecar or a proxy
    /// inside the cluster for TLS. A `job` with characters outside `A-Z a-z 0-9 - _ . ~`
    /// (for example a `/`) is sent base64-encoded (`job@base64/...`), as the
    /// Pushgateway expects.
    ///
    /// Cancel-safe: dropping the future closes the connection. A successful push is
    /// logged (`"final metrics pushed"`, with the URL); a failed one is only returned.
    ///
    /// # Errors
    ///
    /// A [`PushError`] naming the URL: the URL is malformed or not `http://`, the job is
    /// empty, the connection failed, the gateway answered with a non-2xx status, or the
    /// push took longer than the timeout.
    pub async fn push(&self, gateway_url: &str, job: &str) -> Result<(), PushError> {
        self.push_with_timeout(gateway_url, job, DEFAULT_PUSH_TIMEOUT)
            .await
    }

    /// Like [`push`](Self::push), bounded by `timeout` (connecting, sending and reading
    /// the answer together).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push); [`PushError::Timeout`] after `timeout`.
    pub async fn push_with_timeout(
        &self,
        gateway_url: &str,
        job: &str,
        timeout: Duration,
    ) -> Result<(), PushError> {
        let target = push::Target::new(gateway_url, job)?;
        push::push(&target, self.render(), timeout).await?;
        tracing::info!(target: "drain_metrics", url = %target.url, "final metrics pushed");
        Ok(())
    }
}

/// Why [`PrometheusMetrics::install`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum InstallError {
    /// A global `metrics` recorder is already installed; a process has only one.
    AlreadyInstalled,
    /// The exporter could not build its recorder.
    Exporter(BuildError),
}

impl From<BuildError> for InstallError {
    fn from(error: BuildError) -> Self {
        match error {
            BuildError::FailedToSetGlobalRecorder(_) => InstallError::AlreadyInstalled,
            other => InstallError::Exporter(other),
        }
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::AlreadyInstalled => f.write_str(
                "cannot install the Prometheus recorder: a global metrics recorder is already installed",
            ),
            InstallError::Exporter(error) => {
                write!(f, "cannot install the Prometheus recorder: {error}")
            }
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InstallError::AlreadyInstalled => None,
            InstallError::Exporter(error) => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn metrics() -> PrometheusMetrics {
        PrometheusMetrics::from_handle(PrometheusBuilder::new().build_recorder().handle())
    }

    #[tokio::test(start_paused = true)]
    async fn upkeep_runs_until_its_token_is_cancelled() {
        let stop = CancellationToken::new();
        let task = tokio::spawn(metrics().upkeep(Duration::from_secs(5), stop.clone()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!task.is_finished(), "still running before the cancel");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("ends at once")
            .expect("upkeep task");
    }

    #[test]
    fn a_zero_upkeep_period_is_raised_instead_of_spinning() {
        // On the paused clock, a task that never waits on the timer keeps time from
        // advancing: the sleep below would never return. Run it on a thread of its own
        // so that a regression fails here instead of hanging the test run.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let stop = CancellationToken::new();
                let task = tokio::spawn(metrics().upkeep(Duration::ZERO, stop.clone()));
                tokio::time::sleep(MIN_UPKEEP_PERIOD * 10).await;
                stop.cancel();
                task.await.expect("upkeep task");
            });
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the upkeep task waits between runs and ends when cancelled");
    }

    #[test]
    fn an_exporter_build_error_is_kept_as_the_source() {
        let error = InstallError::from(BuildError::ZeroBucketDuration);
        assert!(matches!(error, InstallError::Exporter(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("cannot install the Prometheus recorder: ")
        );
        assert!(error.source().is_some());
    }
}
