//! The telemetry demo service on axum, through `drain-axum`: see the README for the
//! contract. `cargo run -p telemetry-axum`, then
//! `curl -i -XPOST localhost:8080/telemetry -d '{"id":"e1","satellite":"s1","value":1}'`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::Message;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use drain_axum::OnDrain;
use drain_axum::ws::WebSocketUpgrade;
use drain_metrics::PrometheusMetrics;
use futures_util::StreamExt;
use shutdown_core::Shutdown;
use std::convert::Infallible;
use telemetry_core::service::exit;
use telemetry_core::{Reply, Telemetry};
use tracing::info;

/// Bodies up to this size are read whole, so that a body over the 64 KiB limit gets
/// its `413` on a connection that is closed cleanly (not reset over unread input).
const READ_LIMIT: usize = 1024 * 1024;

const NAME: &str = "telemetry-axum";

#[tokio::main]
async fn main() {
    let telemetry_core::service::Service {
        shutdown,
        prometheus,
        listener,
        addr,
        telemetry,
        handoff,
        ..
    } = telemetry_core::service::start(NAME).await;
    let listener =
        tokio::net::TcpListener::from_std(listener).unwrap_or_else(|error| exit(NAME, 2, error));
    // Stops accepting the moment a successor takes over (in-place restart on SIGHUP).
    let listener = drain_axum::HandoffListener::new(listener, &shutdown);

    let app = router(telemetry, prometheus, &shutdown);
    info!(%addr, "listening on {addr}");
    telemetry_core::service::ready(NAME, &handoff);
    match drain_axum::serve(listener, app, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => exit(NAME, 1, error),
    }
}

fn router(
    telemetry: Telemetry,
    prometheus: PrometheusMetrics,
    shutdown: &Shutdown,
) -> drain_axum::Drained {
    let app = Router::new()
        .route("/telemetry", post(ingest))
        .route("/telemetry/{id}", get(lookup))
        .route("/slow", get(slow))
        .route("/stream", get(stream))
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(telemetry)
        .merge(
            Router::new()
                .route("/events", get(events))
                .route("/ws", get(ws))
                .with_state(shutdown.clone()),
        )
        .merge(drain_axum::metrics_routes(prometheus));
    drain_axum::drained(app, shutdown)
}

async fn ingest(
    State(telemetry): State<Telemetry>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => respond(telemetry.ingest(&body).await),
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

async fn events(OnDrain(drain): OnDrain, RawQuery(query): RawQuery) -> Response {
    match telemetry_core::ticks(query.as_deref()) {
        Ok(ticks) => {
            let events = ticks.map(|n| {
                Ok::<_, Infallible>(
                    Event::default()
                        .event(telemetry_core::TICK_EVENT)
                        .data(n.to_string()),
                )
            });
            drain_axum::sse(events, &drain).into_response()
        }
        Err(reply) => respond(reply),
    }
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(text) = message {
                if socket.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        }
    })
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
