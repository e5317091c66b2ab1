//! The telemetry demo service on poem, through `drain-poem`: the same contract as
//! `telemetry-axum` (see its README and this crate's). `cargo run -p telemetry-poem`.

use std::io::IsTerminal;
use std::time::Duration;

use drain_metrics::{DrainMetrics, PrometheusMetrics};
use drain_poem::Drain;
use futures_util::StreamExt;
use poem::error::ReadBodyError;
use poem::http::StatusCode;
use poem::http::header::{CONTENT_TYPE, RETRY_AFTER};
use poem::listener::TcpAcceptor;
use poem::web::{Data, Path};
use poem::{Body, EndpointExt, Request, Response, Route, get, handler, post};
use shutdown_core::Shutdown;
use telemetry_core::{Config, Reply, Telemetry};
use tracing::info;

/// Bodies up to this size are read whole, so that a body over the 64 KiB limit gets
/// its `413` on a connection that is closed cleanly (not reset over unread input).
const READ_LIMIT: usize = 1024 * 1024;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let config = Config::from_env().unwrap_or_else(|error| exit(2, error));
    let prometheus = PrometheusMetrics::install().unwrap_or_else(|error| exit(2, error));
    telemetry_core::metrics::describe_metrics();
    let shutdown = Shutdown::new(config.shutdown.clone()).with_observer(DrainMetrics::new());
    if let Err(error) = shutdown_signal::install(&shutdown) {
        exit(2, error);
    }
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .unwrap_or_else(|error| {
            exit(
                2,
                format_args!("BIND_ADDR=\"{}\": {error}", config.bind_addr),
            )
        });
    let addr = listener.local_addr().unwrap_or_else(|error| exit(2, error));
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap_or_else(|error| exit(2, error));
    let telemetry = Telemetry::start(&config, &shutdown)
        .await
        .unwrap_or_else(|error| exit(2, error));
    shutdown.spawn(prometheus.upkeep(Duration::from_secs(5), shutdown.token()));

    let app = Route::new()
        .at("/telemetry", post(ingest))
        .at("/telemetry/:id", get(lookup))
        .at("/slow", get(slow))
        .at("/stream", get(stream))
        .nest("/health", drain_poem::health_routes(shutdown.clone()))
        .at("/metrics", drain_poem::Metrics::new(prometheus))
        .data(telemetry)
        .with(Drain::new(shutdown.clone()));

    info!(%addr, "listening on {addr}");
    match drain_poem::serve(acceptor, app, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => exit(1, error),
    }
}

#[handler]
async fn ingest(Data(telemetry): Data<&Telemetry>, body: Body) -> Response {
    match body.into_bytes_limit(READ_LIMIT).await {
        Ok(body) => respond(telemetry.ingest(&body)),
        Err(ReadBodyError::PayloadTooLarge) => respond(Reply::too_large()),
        Err(error) => respond(Reply::error(400, &error.to_string())),
    }
}

#[handler]
async fn lookup(Data(telemetry): Data<&Telemetry>, Path(id): Path<String>) -> Response {
    respond(telemetry.lookup(&id).await)
}

#[handler]
async fn slow(request: &Request) -> Response {
    respond(telemetry_core::slow(request.uri().query()).await)
}

#[handler]
fn stream(request: &Request) -> Response {
    match telemetry_core::stream(request.uri().query()) {
        Ok(lines) => Response::builder()
            .content_type(telemetry_core::TEXT)
            .body(Body::from_bytes_stream(lines.map(Ok::<_, std::io::Error>))),
        Err(reply) => respond(reply),
    }
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, telemetry_core::JSON);
    if let Some(secs) = reply.retry_after_secs {
        response = response.header(RETRY_AFTER, secs);
    }
    response.body(reply.body)
}

fn exit(code: i32, error: impl std::fmt::Display) -> ! {
    eprintln!("telemetry-poem: {error}");
    std::process::exit(code)
}
