//! [`start`]: the startup every demo binary shares, so that each binary only wires its
//! framework.

use std::fmt::Display;
use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use drain_metrics::{DrainMetrics, PrometheusMetrics};
use shutdown_core::Shutdown;
use shutdown_handoff::{Handoff, HandoffError};
use tracing::warn;

use crate::{Config, Telemetry};

/// The name of the demo's listening socket: what a systemd socket unit sets as
/// `FileDescriptorName=`, and what a successor finds the socket under.
pub const SOCKET_NAME: &str = "http";

/// A demo service ready to serve: configured, observed, listening, its store open.
#[derive(Debug)]
pub struct Service {
    /// The configuration read from the environment.
    pub config: Config,
    /// The shutdown handle, observed by `DrainMetrics`, with the signal handlers installed.
    pub shutdown: Shutdown,
    /// The Prometheus exporter, for the `/metrics` route.
    pub prometheus: PrometheusMetrics,
    /// The listening socket, non-blocking (for `tokio`, actix and poem alike): passed by
    /// systemd (`LISTEN_FDS`) or by the process this one succeeds, else bound to
    /// `BIND_ADDR`.
    pub listener: TcpListener,
    /// The address it is bound to (the real port when `BIND_ADDR` asks for port 0).
    pub addr: SocketAddr,
    /// The domain: write-behind buffer, store, flusher, cleanup tasks registered.
    pub telemetry: Telemetry,
    /// The in-place restart on `SIGHUP`, installed: call [`ready`] right before serving.
    pub handoff: Handoff,
}

/// Logs to stderr (`RUST_LOG`, default `info`), reads the configuration, takes the
/// listening socket passed to the process (systemd socket activation, or an in-place
/// restart's predecessor), installs the Prometheus exporter, the signal handlers
/// (`SIGTERM`, `SIGINT`) and the in-place restart (`SIGHUP`), binds `BIND_ADDR` when no
/// socket was passed, and starts [`Telemetry`]. Any failure is printed as
/// `<name>: <error>` (naming the variable for a bad setting) and exits with code `2`:
/// nothing has been served yet. Call it from within the binary's runtime, then
/// [`ready`] once the server is built.
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
    // Before anything else: the passed sockets are descriptors 3.. of this process.
    let handoff = Handoff::from_env().unwrap_or_else(|error| exit(name, 2, error));
    let prometheus = PrometheusMetrics::install().unwrap_or_else(|error| exit(name, 2, error));
    crate::metrics::describe_metrics();
    let shutdown = Shutdown::new(config.shutdown.clone()).with_observer(DrainMetrics::new());
    if let Err(error) = shutdown_signal::install(&shutdown) {
        exit(name, 2, error);
    }
    match handoff.install(&shutdown) {
        Ok(()) => {}
        Err(error) if error.is_unavailable() => warn!(error = %error, "SIGHUP is not handled"),
        Err(error) => exit(name, 2, error),
    }
    let listener = handoff
        .tcp_listener(SOCKET_NAME, config.bind_addr)
        .unwrap_or_else(|error| match error {
            HandoffError::Bind { addr, source } => {
                exit(name, 2, format_args!("BIND_ADDR=\"{addr}\": {source}"))
            }
            error => exit(name, 2, error),
        });
    let addr = listener.local_addr().unwrap_or_else(|error| {
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
        handoff,
    }
}

/// Says the service serves ([`Handoff::ready`]): writes `PID_FILE` when set, and tells
/// the process this one succeeds (which then stops accepting and finishes what it
/// has) or systemd. Call it once the server is built, right before serving: new
/// connections wait in the listening socket's queue until the server accepts them.
/// On a failure, prints `<name>: <error>` and exits with code `2` (nothing has been
/// served; a predecessor keeps serving).
pub fn ready(name: &str, handoff: &Handoff) {
    if let Err(error) = handoff.ready() {
        exit(name, 2, error);
    }
}

/// Prints `<name>: <error>` on stderr and exits with `code`.
pub fn exit(name: &str, code: i32, error: impl Display) -> ! {
    eprintln!("{name}: {error}");
    std::process::exit(code)
}
