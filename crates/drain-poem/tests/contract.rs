//! The drain contract (`drain-contract`), run against the poem middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use drain_contract::{Adapter, Chunks, Method, Request, Response, Routes, Version};
use drain_poem::OnDrain;
use futures_util::StreamExt;
use poem::FromRequest;
use poem::endpoint::{BoxEndpoint, make};
use poem::http::StatusCode;
use poem::web::sse::Event as SseEvent;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Route, get, post};
use shutdown_core::RequestGate;

struct Poem {
    app: BoxEndpoint<'static, poem::Response>,
}

fn routes(routes: Routes) -> Route {
    let ok = |r: Routes| {
        make(move |_| {
            r.called();
            async { "ok" }
        })
    };
    let r = routes.clone();
    let stream = make(move |_| {
        r.called();
        let body = r.stream_body();
        async move { Body::from_bytes_stream(body) }
    });
    let r = routes.clone();
    let upgrade = make(move |_| {
        r.called();
        async {
            poem::Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .finish()
        }
    });
    let r = routes.clone();
    let upload = make(move |request: poem::Request| {
        r.called();
        async move {
            let mut request = request;
            let body = request.take_body().into_bytes().await?;
            Ok::<_, poem::Error>(format!("received {} bytes", body.len()))
        }
    });
    let r = routes.clone();
    let wait = make(move |_| {
        r.called();
        let r = r.clone();
        async move {
            r.released().await;
            "done"
        }
    });
    let r = routes.clone();
    let fail = make(move |_| {
        r.called();
        async { Err::<(), _>(poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR)) }
    });
    let r = routes.clone();
    let forever = make(move |_| {
        r.called();
        std::future::pending::<poem::Result<()>>()
    });
    let r = routes.clone();
    let signal = make(move |request: poem::Request| {
        r.called();
        async move {
            let OnDrain(drain) = OnDrain::from_request_without_body(&request).await?;
            drain.wait().await;
            Ok::<_, poem::Error>("drain began")
        }
    });
    let r = routes.clone();
    let events = make(move |request: poem::Request| {
        r.called();
        let data = r.events_data();
        async move {
            let OnDrain(drain) = OnDrain::from_request_without_body(&request).await?;
            let events = data.map(SseEvent::message);
            Ok::<_, poem::Error>(drain_poem::sse(events, &drain).into_response())
        }
    });
    Route::new()
        .at("/", get(ok(routes.clone())).head(ok(routes.clone())))
        .at("/stream", get(stream))
        .at("/upgrade", get(upgrade))
        .at("/upload", post(upload))
        .at("/wait", get(wait))
        .at("/fail", get(fail))
        .at("/forever", get(forever))
        .at("/drain-signal", get(signal))
        .at("/events", get(events))
}

impl Adapter for Poem {
    async fn build(gate: RequestGate, routes: Routes) -> Self {
        let shutdown = gate.shutdown().clone();
        let app = self::routes(routes)
            .nest("/health", drain_poem::health_routes(shutdown.clone()))
            .data(shutdown)
            .with(drain_poem::DrainLayer::from_gate(gate));
        Self { app: app.boxed() }
    }

    async fn send(&self, request: Request) -> Response {
        let method = match request.method {
            Method::Get => poem::http::Method::GET,
            Method::Head => poem::http::Method::HEAD,
            Method::Post => poem::http::Method::POST,
        };
        let version = match request.version {
            Version::Http10 => poem::http::Version::HTTP_10,
            Version::Http11 => poem::http::Version::HTTP_11,
            Version::Http2 => poem::http::Version::HTTP_2,
        };
        let body = match request.body {
            Some(upload) => Body::from_bytes_stream(upload),
            None => Body::empty(),
        };
        let poem_request = poem::Request::builder()
            .method(method)
            .uri_str(request.path)
            .version(version)
            .body(body);
        let mut response = match self.app.call(poem_request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ASCII").to_owned()))
            .collect();
        Response {
            status: response.status().as_u16(),
            headers,
            body: Box::pin(PoemBody(response.take_body().into_bytes_stream().boxed())),
        }
    }

    fn block_on(scenario: impl Future<Output = ()>) {
        drain_contract::block_on_tokio(scenario);
    }
}

/// A poem body, chunk by chunk.
struct PoemBody(futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>>);

impl Chunks for PoemBody {
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, String>>> {
        self.0
            .poll_next_unpin(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map_err(|error| error.to_string())))
    }
}

drain_contract::contract_tests!(Poem);
