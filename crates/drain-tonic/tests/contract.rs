//! The drain contract (`drain-contract`), run against drain-tonic's `DrainLayer` around
//! a plain tower service, where it applies; and its gRPC counterparts where it does not.
//!
//! The scenarios that involve no rejection run as they are: admitted requests are
//! counted until their body has ended (streams included), released however they end,
//! and get `Connection: close` on HTTP/1.x (gRPC-web) from the trigger on. The five
//! that assert the HTTP `503` (its status, `Retry-After` and text body) do not apply:
//! gRPC maps a rejection to a trailers-only `UNAVAILABLE`. The tests after
//! `contract_tests!` check the same rules in that form, the reading of a rejected
//! HTTP/1.x body before the answer ends included.

use std::sync::atomic::Ordering;
use std::time::Duration;

use drain_contract::http1;
use drain_contract::{Adapter, Request, Response, Routes, Upload, Version};
use drain_tonic::DrainLayer;
use shutdown_core::{RequestGate, Shutdown, ShutdownConfig};
use tower::Layer;

type App = drain_tonic::Drain<http1::Plain>;

struct Tonic {
    app: App,
}

impl Adapter for Tonic {
    async fn build(gate: RequestGate, routes: Routes) -> Self {
        let inner = http1::service(routes, gate.shutdown().clone(), http1::plain_health);
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

drain_contract::contract_tests!(@each Tonic;
    before_the_trigger_requests_are_served_and_keep_their_connection,
    during_the_pre_stop_delay_requests_are_served_with_connection_close,
    a_streaming_body_holds_its_request_in_flight_until_its_last_chunk,
    a_response_ready_after_the_trigger_carries_connection_close,
    an_admitted_upload_reaches_its_handler_whole,
    a_request_is_released_however_it_ends,
);

// ----- the rejection scenarios, in gRPC terms ------------------------------------------

/// An adapter on a new shutdown whose drain has begun, configured like the contract's.
async fn draining(configure: impl FnOnce(RequestGate) -> RequestGate) -> (Shutdown, Routes, Tonic) {
    let shutdown = Shutdown::new(
        ShutdownConfig::new()
            .with_retry_after(Duration::from_secs(drain_contract::RETRY_AFTER_SECS)),
    );
    let routes = Routes::default();
    let app = Tonic::build(
        configure(RequestGate::new(shutdown.clone())),
        routes.clone(),
    )
    .await;
    shutdown.request_shutdown("contract");
    shutdown.drain().await;
    (shutdown, routes, app)
}

/// Asserts the trailers-only `UNAVAILABLE` of a rejection.
async fn assert_unavailable(response: Response, what: &str) {
    assert_eq!(response.status, 200, "{what}: gRPC errors travel with 200");
    assert_eq!(response.header("grpc-status"), Some("14"), "{what}");
    assert_eq!(
        response.header("content-type"),
        Some("application/grpc"),
        "{what}"
    );
    let pushback = (drain_contract::RETRY_AFTER_SECS * 1000).to_string();
    assert_eq!(
        response.header("grpc-retry-pushback-ms"),
        Some(pushback.as_str()),
        "{what}"
    );
    assert!(response.header("grpc-message").is_some(), "{what}");
    assert_eq!(
        response.text().await,
        "",
        "{what}: trailers-only, no message"
    );
}

#[test]
fn during_the_drain_new_rpcs_get_unavailable_and_exempt_paths_are_served() {
    Tonic::block_on(async {
        for version in Version::ALL {
            let (shutdown, routes, app) = draining(|gate| gate).await;
            let rpc = Request::get("/helloworld.Greeter/SayHello").over(version);
            assert_unavailable(app.send(rpc).await, "an RPC").await;
            assert_eq!(routes.calls(), 0, "a rejected RPC reaches no handler");
            let response = app.send(Request::get("/").over(version)).await;
            assert_eq!(response.closes(), version.is_http1(), "over {version:?}");
            assert_unavailable(response, "GET /").await;

            for path in [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
            ] {
                let response = app.send(Request::get(path).over(version)).await;
                assert_eq!(response.header("grpc-status"), None, "{path} is exempt");
            }
            let live = app.send(Request::get("/health/live").over(version)).await;
            assert_eq!(live.status, 200);
            assert_eq!(
                routes.calls(),
                2,
                "the health methods reached their handler"
            );
            assert_eq!(shutdown.rejected(), 2);
            assert_eq!(shutdown.in_flight(), 0);
        }
    });
}

/// Over HTTP/1.x (gRPC-web) the connection closes after the answer: a rejected RPC's
/// body is read and thrown away first (up to the gate's discard limit), after the
/// head and before the answer ends, as for the HTTP `503`. Over HTTP/2 only the
/// stream is reset: nothing is read.
#[test]
fn a_rejected_rpc_body_is_read_before_the_answer_ends_over_http1_only() {
    const CHUNKS: usize = 64;
    Tonic::block_on(async {
        for version in [Version::Http11, Version::Http2] {
            let (_shutdown, routes, app) = draining(|gate| gate).await;
            let (upload, read) = Upload::new(CHUNKS);
            let response = app.send(Request::upload(upload).over(version)).await;
            assert_eq!(read.load(Ordering::SeqCst), 0, "the head goes out first");
            assert_unavailable(response, "an upload").await;
            let expected = if version.is_http1() {
                (CHUNKS * Upload::CHUNK) as u64
            } else {
                0
            };
            assert_eq!(read.load(Ordering::SeqCst), expected, "over {version:?}");
            assert_eq!(routes.calls(), 0);
        }

        const LIMIT: u64 = 16 * Upload::CHUNK as u64;
        let (_shutdown, _routes, app) = draining(|gate| gate.with_discard_limit(LIMIT)).await;
        let (upload, read) = Upload::new(CHUNKS);
        assert_unavailable(app.send(Request::upload(upload)).await, "an upload").await;
        let read = read.load(Ordering::SeqCst);
        assert!(
            (LIMIT..LIMIT + 2 * Upload::CHUNK as u64).contains(&read),
            "read {read} bytes with a limit of {LIMIT}"
        );
    });
}

#[test]
fn exempt_paths_follow_the_gate_in_grpc_terms() {
    Tonic::block_on(async {
        let (_shutdown, _routes, app) = draining(|gate| gate.with_exempt_paths(["/"])).await;
        let response = app.send(Request::get("/")).await;
        assert_eq!(response.text().await, "ok", "exempt by the list");
        let live = app.send(Request::get("/health/live")).await;
        assert_unavailable(live, "no longer exempt").await;

        let (shutdown, _routes, app) =
            draining(|gate| gate.with_exempt(|path| path.starts_with("/up"))).await;
        let (upload, _) = Upload::new(1);
        let response = app.send(Request::upload(upload)).await;
        assert_eq!(response.status, 200, "exempt by the predicate");
        assert_eq!(response.header("grpc-status"), None);
        assert_eq!(shutdown.rejected(), 0);
    });
}

#[test]
fn during_a_handoff_rpcs_on_open_connections_are_served_not_rejected() {
    Tonic::block_on(async {
        let shutdown = Shutdown::new(ShutdownConfig::new().with_handoff_grace(Duration::ZERO));
        let routes = Routes::default();
        let app = Tonic::build(RequestGate::new(shutdown.clone()), routes.clone()).await;
        shutdown.trigger(shutdown_core::Trigger::Handoff { successor: 1 });
        shutdown.drain().await;
        for version in Version::ALL {
            let response = app.send(Request::get("/").over(version)).await;
            assert_eq!(response.header("grpc-status"), None, "over {version:?}");
            assert_eq!(response.closes(), version.is_http1(), "over {version:?}");
            assert_eq!(response.text().await, "ok");
        }
        assert_eq!(routes.calls(), 3, "every RPC reached its handler");
        assert_eq!(shutdown.rejected(), 0);
    });
}
