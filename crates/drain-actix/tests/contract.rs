//! The drain contract (`drain-contract`), run against the actix-web middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::BoxedPayloadStream;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceResponse};
use actix_web::error::{ErrorInternalServerError, PayloadError};
use actix_web::http::ConnectionType;
use actix_web::{App, HttpResponse, test, web};
use bytes::Bytes;
use drain_contract::{Adapter, Chunks, Method, Request, Response, Routes, Version};
use futures_util::StreamExt;
use std::convert::Infallible;

use drain_actix::OnDrain;
use shutdown_core::RequestGate;

type AppService = Box<
    dyn Service<
            actix_http::Request,
            Response = ServiceResponse<BoxBody>,
            Error = actix_web::Error,
            Future = Pin<
                Box<dyn Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>>,
            >,
        >,
>;

struct Actix {
    app: AppService,
}

/// Boxes a service's future and body, so that the harness names one type.
struct Boxed<S>(S);

impl<S, B> Service<actix_http::Request> for Boxed<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, request: actix_http::Request) -> Self::Future {
        let call = self.0.call(request);
        Box::pin(async move { Ok(call.await?.map_into_boxed_body()) })
    }
}

fn routes(config: &mut web::ServiceConfig, routes: Routes) {
    let r = routes.clone();
    config.route(
        "/",
        web::route().to(move || {
            r.called();
            async { "ok" }
        }),
    );
    let r = routes.clone();
    config.route(
        "/stream",
        web::get().to(move || {
            r.called();
            let body = r.stream_body();
            async move { HttpResponse::Ok().streaming(body) }
        }),
    );
    let r = routes.clone();
    config.route(
        "/upgrade",
        web::get().to(move || {
            r.called();
            async {
                HttpResponse::SwitchingProtocols()
                    .upgrade("websocket")
                    .finish()
            }
        }),
    );
    let r = routes.clone();
    config.route(
        "/upload",
        web::post().to(move |body: web::Bytes| {
            r.called();
            async move { format!("received {} bytes", body.len()) }
        }),
    );
    let r = routes.clone();
    config.route(
        "/wait",
        web::get().to(move || {
            r.called();
            let r = r.clone();
            async move {
                r.released().await;
                "done"
            }
        }),
    );
    let r = routes.clone();
    config.route(
        "/fail",
        web::get().to(move || {
            r.called();
            async { Err::<HttpResponse, _>(ErrorInternalServerError("the handler failed")) }
        }),
    );
    let r = routes.clone();
    config.route(
        "/forever",
        web::get().to(move || {
            r.called();
            std::future::pending::<HttpResponse>()
        }),
    );
    let r = routes.clone();
    config.route(
        "/drain-signal",
        web::get().to(move |OnDrain(drain): OnDrain| {
            r.called();
            async move {
                drain.wait().await;
                "drain began"
            }
        }),
    );
    let r = routes;
    config.route(
        "/events",
        web::get().to(move |OnDrain(drain): OnDrain| {
            r.called();
            let data = r.events_data();
            async move {
                let events =
                    data.map(|text| Ok::<_, Infallible>(Bytes::from(format!("data: {text}\n\n"))));
                drain_actix::sse(events, &drain)
            }
        }),
    );
}

impl Adapter for Actix {
    async fn build(gate: RequestGate, routes: Routes) -> Self {
        let shutdown = gate.shutdown().clone();
        let app = test::init_service(
            App::new()
                .wrap(drain_actix::DrainLayer::from_gate(gate))
                .app_data(shutdown.clone())
                .configure(drain_actix::health_routes(shutdown))
                .configure(|config| self::routes(config, routes)),
        )
        .await;
        Self {
            app: Box::new(Boxed(app)),
        }
    }

    async fn send(&self, request: Request) -> Response {
        let method = match request.method {
            Method::Get => actix_web::http::Method::GET,
            Method::Head => actix_web::http::Method::HEAD,
            Method::Post => actix_web::http::Method::POST,
        };
        let version = match request.version {
            Version::Http10 => actix_web::http::Version::HTTP_10,
            Version::Http11 => actix_web::http::Version::HTTP_11,
            Version::Http2 => actix_web::http::Version::HTTP_2,
        };
        let http_request = test::TestRequest::default()
            .method(method)
            .uri(request.path)
            .version(version)
            .to_request();
        let mut http_request = http_request;
        if let Some(upload) = request.body {
            let stream: BoxedPayloadStream =
                Box::pin(upload.map(|chunk| chunk.map_err(PayloadError::Io)));
            (http_request, _) = http_request.replace_payload(Payload::from(stream));
        }
        let response = match self.app.call(http_request).await {
            Ok(response) => response.into_parts().1,
            Err(error) => error.error_response(),
        };
        let (response, body) = response.into_parts();
        let head = response.head();
        let mut headers: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ASCII").to_owned()))
            .collect();
        // actix writes `Connection` from the head's connection type, not from the map.
        let written = match head.connection_type() {
            ConnectionType::Close => Some("close"),
            ConnectionType::Upgrade => Some("upgrade"),
            ConnectionType::KeepAlive => None,
        };
        if let Some(written) = written {
            if !headers.iter().any(|(n, _)| n == "connection") {
                headers.push(("connection".to_owned(), written.to_owned()));
            }
        }
        Response {
            status: head.status.as_u16(),
            headers,
            body: Box::pin(ActixBody(body)),
        }
    }

    fn block_on(scenario: impl Future<Output = ()>) {
        actix_web::rt::System::new().block_on(scenario);
    }
}

/// An actix body, chunk by chunk.
struct ActixBody(BoxBody);

impl Chunks for ActixBody {
    fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, String>>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map_err(|error| error.to_string())))
    }
}

drain_contract::contract_tests!(Actix);
