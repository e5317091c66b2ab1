//! The telemetry demo service on poem, through `drain-poem`: the same contract as
//! `telemetry-axum` (see its README and this crate's). `cargo run -p telemetry-poem`.

use drain_poem::ws::WebSocketUpgrade;
use drain_poem::{DrainLayer, OnDrain};
use futures_util::StreamExt;
use poem::error::ReadBodyError;
use poem::http::StatusCode;
use poem::http::header::{CONTENT_TYPE, RETRY_AFTER};
use poem::listener::TcpAcceptor;
use poem::web::sse::Event as SseEvent;
use poem::web::websocket::Message;
use poem::web::{Data, Path};
use poem::{Body, EndpointExt, IntoResponse, Request, Response, Route, get, handler, post};
use telemetry_core::service::exit;
use telemetry_core::{Reply, Telemetry};
use tracing::info;

/// Bodies up to this size are read whole, so that a body over the 64 KiB limit gets
/// its `413` on a connection that is closed cleanly (not reset over unread input).
const READ_LIMIT: usize = 1024 * 1024;

const NAME: &str = "telemetry-poem";

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
    let acceptor = TcpAcceptor::from_std(listener).unwrap_or_else(|error| exit(NAME, 2, error));

    let app = Route::new()
        .at("/telemetry", post(ingest))
        .at("/telemetry/:id", get(lookup))
        .at("/slow", get(slow))
        .at("/stream", get(stream))
        .at("/events", get(events))
        .at("/ws", get(ws))
        .nest("/health", drain_poem::health_routes(shutdown.clone()))
        .at("/metrics", drain_poem::Metrics::new(prometheus))
        .data(telemetry)
        .data(shutdown.clone())
        .with(DrainLayer::new(shutdown.clone()));

    info!(%addr, "listening on {addr}");
    telemetry_core::service::ready(NAME, &handoff);
    match drain_poem::serve(acceptor, app, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => exit(NAME, 1, error),
    }
}

#[handler]
async fn ingest(Data(telemetry): Data<&Telemetry>, body: Body) -> Response {
    match body.into_bytes_limit(READ_LIMIT).await {
        Ok(body) => respond(telemetry.ingest(&body).await),
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

#[handler]
fn events(OnDrain(drain): OnDrain, request: &Request) -> Response {
    match telemetry_core::ticks(request.uri().query()) {
        Ok(ticks) => {
            let events = ticks
                .map(|n| SseEvent::message(n.to_string()).event_type(telemetry_core::TICK_EVENT));
            drain_poem::sse(events, &drain).into_response()
        }
        Err(reply) => respond(reply),
    }
}

#[handler]
fn ws(upgrade: WebSocketUpgrade) -> impl IntoResponse {
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
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, telemetry_core::JSON);
    if let Some(secs) = reply.retry_after_secs {
        response = response.header(RETRY_AFTER, secs);
    }
    response.body(reply.body)
}
