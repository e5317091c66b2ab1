//! The drain contract (`drain-contract`), run against an axum `Router` behind
//! `drain_axum::drained`.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::{get, post};
use bytes::Bytes;
use drain_axum::Drained;
use drain_contract::{Adapter, Chunks, Method, Request, Response, Routes, Version};
use http_body::Body as _;
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
        let method = match request.method {
            Method::Get => axum::http::Method::GET,
            Method::Head => axum::http::Method::HEAD,
            Method::Post => axum::http::Method::POST,
        };
        let version = match request.version {
            Version::Http10 => axum::http::Version::HTTP_10,
            Version::Http11 => axum::http::Version::HTTP_11,
            Version::Http2 => axum::http::Version::HTTP_2,
        };
        let body = match request.body {
            Some(upload) => Body::from_stream(upload),
            None => Body::empty(),
        };
        let axum_request = axum::http::Request::builder()
            .method(method)
            .uri(request.path)
            .version(version)
            .body(body)
            .expect("a valid request");
        let response = match self.app.clone().oneshot(axum_request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let response: AxumResponse = response.into_response();
        let (parts, body) = response.into_parts();
        Response {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ASCII").to_owned()))
                .collect(),
            body: Box::pin(AxumBody(body)),
        }
    }

    fn block_on(scenario: impl Future<Output = ()>) {
        drain_contract::block_on_tokio(scenario);
    }
}

/// axum's body, chunk by chunk.
struct AxumBody(Body);

impl Chunks for AxumBody {
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, String>>> {
        loop {
            return match std::task::ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                None => Poll::Ready(None),
                Some(Err(error)) => Poll::Ready(Some(Err(error.to_string()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
            };
        }
    }
}

drain_contract::contract_tests!(Axum);
