//! [`start`]: the startup every demo binary shares, so that each binary only wires its
//! framework.

use std::fmt::Display;
use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use drain_metrics::{DrainMetrics, PrometheusMetrics};
use shutdown_core::Shutdown;

use crate::{Config, Telemetry};

/// A demo service ready to serve: configured, observed, listening, its store open.
#[derive(Debug)]
pub struct Service {
    /// The configuration read from the environment.
    pub config: Config,
    /// The shutdown handle, observed by `DrainMetrics`, with the signal handlers installed.
    pub shutdown: Shutdown,
    /// The Prometheus exporter, for the `/metrics` route.
    pub prometheus: PrometheusMetrics,
    /// The listener bound to `BIND_ADDR`, non-blocking (for `tokio`, actix and poem alike).
    pub listener: TcpListener,
    /// The address it is bound to (the real port when `BIND_ADDR` asks for port 0).
    pub addr: SocketAddr,
    /// The domain: write-behind buffer, store, flusher, cleanup tasks registered.
    pub telemetry: Telemetry,
}

/// Logs to stderr (`RUST_LOG`, default `info`), reads the configuration, installs the
/// Prometheus exporter and the signal handlers, binds `BIND_ADDR` and starts
/// [`Telemetry`]. Any failure is printed as `<name>: <error>` (naming the variable for a
/// bad setting) and exits with code `2`: nothing has been served yet. Call it from
/// within the binary's runtime.
pub async fn start(name: &str) -> Service {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let config = Config::from_env().unwrap_or_else(|error| exit(name, 2, error));
    let prometheus = PrometheusMetrics::install().unwrap_or_else(|error| exit(name, 2, error));
    crate::metrics::describe_metrics();
    let shutdown = Shutdown::new(config.shutdown.clone()).with_observer(DrainMetrics::new());
    if let Err(error) = shutdown_signal::install(&shutdown) {
        exit(name, 2, error);
    }
    let bind = |addr| {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok::<_, std::io::Error>((listener, local))
    };
    let (listener, addr) = bind(config.bind_addr).unwrap_or_else(|error| {
        exit(
            name,
            2,
            format_args!("BIND_ADDR=\"{}\": {error}", config.bind_addr),
        )
    });
    let telemetry = Telemetry::start(&config, &shutdown)
        .await
        .unwrap_or_else(|error| exit(name, 2, error));
    shutdown.spawn(prometheus.upkeep(Duration::from_secs(5), shutdown.token()));
    Service {
        config,
        shutdown,
        prometheus,
        listener,
        addr,
        telemetry,
    }
}

/// Prints `<name>: <error>` on stderr and exits with `code`.
pub fn exit(name: &str, code: i32, error: impl Display) -> ! {
    eprintln!("{name}: {error}");
    std::process::exit(code)
}
