//! The drain contract (`drain-contract`), run against an axum `Router` behind
//! `drain_axum::drained`.

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::{get, post};
use bytes::Bytes;
use drain_axum::Drained;
use drain_contract::http1;
use drain_contract::{Adapter, Request, Response, Routes};
use std::convert::Infallible;

use axum::response::sse::Event;
use drain_axum::OnDrain;
use futures_util::StreamExt;
use shutdown_core::{RequestGate, Shutdown};
use tower::ServiceExt;

struct Axum {
    app: Drained,
}

fn router(routes: Routes) -> Router {
    let r = routes.clone();
    let ok = get(move || {
        r.called();
        async { "ok" }
    });
    let r = routes.clone();
    let stream = get(move || {
        r.called();
        let body = r.stream_body();
        async move { Body::from_stream(body) }
    });
    let r = routes.clone();
    let upgrade = get(move || {
        r.called();
        async {
            (
                StatusCode::SWITCHING_PROTOCOLS,
                [("connection", "upgrade"), ("upgrade", "websocket")],
            )
        }
    });
    let r = routes.clone();
    let upload = post(move |body: Bytes| {
        r.called();
        async move { format!("received {} bytes", body.len()) }
    });
    let r = routes.clone();
    let wait = get(move || {
        r.called();
        let r = r.clone();
        async move {
            r.released().await;
            "done"
        }
    });
    let r = routes.clone();
    let fail = get(move || {
        r.called();
        async { Err::<(), _>((StatusCode::INTERNAL_SERVER_ERROR, "the handler failed")) }
    });
    let r = routes;
    let forever = get(move || {
        r.called();
        std::future::pending::<AxumResponse>()
    });
    Router::new()
        .route("/", ok)
        .route("/stream", stream)
        .route("/upgrade", upgrade)
        .route("/upload", upload)
        .route("/wait", wait)
        .route("/fail", fail)
        .route("/forever", forever)
}

/// The routes that take the adapter's drain signal, on a router whose state is the
/// `Shutdown`.
fn long_lived(routes: Routes, shutdown: Shutdown) -> Router {
    let r = routes.clone();
    let signal = get(move |OnDrain(drain): OnDrain| {
        r.called();
        async move {
            drain.wait().await;
            "drain began"
        }
    });
    let r = routes;
    let events = get(move |OnDrain(drain): OnDrain| {
        r.called();
        let data = r.events_data();
        async move {
            let events = data.map(|text| Ok::<_, Infallible>(Event::default().data(text)));
            drain_axum::sse(events, &drain)
        }
    });
    Router::new()
        .route("/drain-signal", signal)
        .route("/events", events)
        .with_state(shutdown)
}

impl Adapter for Axum {
    async fn build(gate: RequestGate, routes: Routes) -> Self {
        let shutdown = gate.shutdown().clone();
        let router = router(routes.clone()).merge(long_lived(routes, shutdown));
        Self {
            app: Drained::new(router, drain_axum::DrainLayer::from_gate(gate)),
        }
    }

    async fn send(&self, request: Request) -> Response {
        let request = http1::to_http(request).map(Body::new);
        let response = match self.app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let response: AxumResponse = response.into_response();
        http1::from_http(response)
    }

    fn block_on(scenario: impl Future<Output = ()>) {
        drain_contract::block_on_tokio(scenario);
    }
}

drain_contract::contract_tests!(Axum);
