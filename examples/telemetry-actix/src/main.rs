//! The telemetry demo service on actix-web, through `drain-actix`: the same contract
//! as `telemetry-axum` (see its README and this crate's). `cargo run -p telemetry-actix`.
//!
//! actix-web specifics: one application per worker thread (the [`Telemetry`] handle
//! is shared: it is an `Arc`), and a client that disconnects does not cancel its
//! handler: a `/slow` request whose client left is still drained (or interrupted at
//! the deadline).

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{App, HttpRequest, HttpResponse};
use drain_actix::{DrainLayer, OnDrain};
use futures_util::StreamExt;
use telemetry_core::service::exit;
use telemetry_core::{Reply, Telemetry};
use tracing::info;

/// Bodies up to this size are read whole, so that a body over the 64 KiB limit gets
/// its `413` on a connection that is closed cleanly (not reset over unread input).
const READ_LIMIT: usize = 1024 * 1024;

const NAME: &str = "telemetry-actix";

#[actix_web::main]
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

    // Made once, cloned into each worker's application.
    let drain = DrainLayer::new(shutdown.clone());
    let health = shutdown.clone();
    let factory = move || {
        App::new()
            .wrap(drain.clone())
            .app_data(web::Data::new(telemetry.clone()))
            .app_data(health.clone())
            .configure(drain_actix::health_routes(health.clone()))
            .configure(drain_actix::metrics_routes(prometheus.clone()))
            .route("/telemetry", web::post().to(ingest))
            .route("/telemetry/{id}", web::get().to(lookup))
            .route("/slow", web::get().to(slow))
            .route("/stream", web::get().to(stream))
            .route("/events", web::get().to(events))
            .route("/ws", web::get().to(ws))
    };

    info!(%addr, "listening on {addr}");
    telemetry_core::service::ready(NAME, &handoff);
    match drain_actix::serve(listener, factory, &shutdown).await {
        Ok(report) => std::process::exit(report.exit_code()),
        Err(error) => exit(NAME, 1, error),
    }
}

async fn ingest(telemetry: web::Data<Telemetry>, mut payload: web::Payload) -> HttpResponse {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() > READ_LIMIT => {
                return respond(Reply::too_large());
            }
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(error) => return respond(Reply::error(400, &error.to_string())),
        }
    }
    respond(telemetry.ingest(&body).await)
}

async fn lookup(telemetry: web::Data<Telemetry>, id: web::Path<String>) -> HttpResponse {
    respond(telemetry.lookup(&id).await)
}

async fn slow(request: HttpRequest) -> HttpResponse {
    respond(telemetry_core::slow(Some(request.query_string())).await)
}

async fn stream(request: HttpRequest) -> HttpResponse {
    match telemetry_core::stream(Some(request.query_string())) {
        Ok(lines) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, telemetry_core::TEXT))
            .streaming(lines.map(|line| Ok::<_, std::convert::Infallible>(Bytes::from(line)))),
        Err(reply) => respond(reply),
    }
}

async fn events(OnDrain(drain): OnDrain, request: HttpRequest) -> HttpResponse {
    match telemetry_core::ticks(Some(request.query_string())) {
        Ok(ticks) => {
            let events = ticks.map(|n| {
                let event = format!("event: {}\ndata: {n}\n\n", telemetry_core::TICK_EVENT);
                Ok::<_, std::convert::Infallible>(Bytes::from(event))
            });
            drain_actix::sse(events, &drain)
        }
        Err(reply) => respond(reply),
    }
}

async fn ws(request: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut socket) = drain_actix::ws::handle(&request, body)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(message)) = socket.recv().await {
            let sent = match message {
                actix_ws::Message::Text(text) => socket.session().text(text).await,
                actix_ws::Message::Ping(bytes) => socket.session().pong(&bytes).await,
                actix_ws::Message::Close(reason) => {
                    let _ = socket.send(actix_ws::Message::Close(reason)).await;
                    break;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
    });
    Ok(response)
}

fn respond(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.insert_header((CONTENT_TYPE, telemetry_core::JSON));
    if let Some(secs) = reply.retry_after_secs {
        response.insert_header((RETRY_AFTER, secs));
    }
    response.body(reply.body)
}
