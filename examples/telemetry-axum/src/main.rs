//! The telemetry demo service on axum, through `drain-axum`: see the README for the
//! contract. `cargo run -p telemetry-axum`, then
//! `curl -i -XPOST localhost:8080/telemetry -d '{"id":"e1","satellite":"s1","value":1}'`.

use std::io::IsTerminal;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use drain_axum::DrainRouterExt;
use drain_metrics::{DrainMetrics, PrometheusMetrics};
use futures_util::StreamExt;
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
    let telemetry = Telemetry::start(&config, &shutdown)
        .await
        .unwrap_or_else(|error| exit(2, error));
    shutdown.spawn(prometheus.upkeep(Duration::from_secs(5), shutdown.token()));

    let app = router(telemetry, prometheus, &shutdown);
    info!(%addr, "listening on {addr}");
    match drain_axum::serve(listener, app, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => exit(1, error),
    }
}

fn router(telemetry: Telemetry, prometheus: PrometheusMetrics, shutdown: &Shutdown) -> Router {
    Router::new()
        .route("/telemetry", post(ingest))
        .route("/telemetry/{id}", get(lookup))
        .route("/slow", get(slow))
        .route("/stream", get(stream))
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(telemetry)
        .merge(drain_axum::metrics_routes(prometheus))
        .with_drain(shutdown)
}

async fn ingest(
    State(telemetry): State<Telemetry>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => respond(telemetry.ingest(&body)),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            respond(Reply::too_large())
        }
        Err(rejection) => respond(Reply::error(
            rejection.status().as_u16(),
            &rejection.body_text(),
        )),
    }
}

async fn lookup(State(telemetry): State<Telemetry>, Path(id): Path<String>) -> Response {
    respond(telemetry.lookup(&id).await)
}

async fn slow(RawQuery(query): RawQuery) -> Response {
    respond(telemetry_core::slow(query.as_deref()).await)
}

async fn stream(RawQuery(query): RawQuery) -> Response {
    match telemetry_core::stream(query.as_deref()) {
        Ok(lines) => (
            [(header::CONTENT_TYPE, telemetry_core::TEXT)],
            Body::from_stream(lines.map(Ok::<_, std::convert::Infallible>)),
        )
            .into_response(),
        Err(reply) => respond(reply),
    }
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, telemetry_core::JSON)],
        reply.body,
    )
        .into_response();
    if let Some(secs) = reply.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn exit(code: i32, error: impl std::fmt::Display) -> ! {
    eprintln!("telemetry-axum: {error}");
    std::process::exit(code)
}
