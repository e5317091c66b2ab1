//! The drain contract (`drain-contract`), run against `DrainLayer` around a plain tower
//! service.

use drain_contract::http1::{self, Body};
use drain_contract::{Adapter, Request, Response, Routes};
use drain_tower::{DrainLayer, Liveness, Readiness};
use shutdown_core::{RequestGate, Shutdown};
use tower::Layer;

type App = drain_tower::Drain<http1::Plain>;

struct Tower {
    app: App,
}

/// The adapter's health routes.
fn health(path: &str, shutdown: &Shutdown) -> Option<http::Response<Body>> {
    match path {
        "/health/ready" => Some(
            Readiness::new(shutdown.clone())
                .response()
                .map(http1::boxed),
        ),
        "/health/live" => Some(Liveness::new().response().map(http1::boxed)),
        _ => None,
    }
}

impl Adapter for Tower {
    async fn build(gate: RequestGate, routes: Routes) -> Self {
        let inner = http1::service(routes, gate.shutdown().clone(), health);
        Self {
            app: DrainLayer::from_gate(gate).layer(inner),
        }
    }

    async fn send(&self, request: Request) -> Response {
        http1::send(&self.app, request).await
    }

    fn block_on(scenario: impl Future<Output = ()>) {
        drain_contract::block_on_tokio(scenario);
    }
}

drain_contract::contract_tests!(Tower);
