//! What is poem's own, beside the contract suite (`tests/contract.rs`).

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, Request, Route, get, handler};
use shutdown_core::Shutdown;

use super::DrainLayer;

#[handler]
fn fail() -> poem::Result<()> {
    Err(poem::Error::from_status(StatusCode::IM_A_TEAPOT))
}

/// Outer `catch_error`s and `Tracing` see the application's errors as they were.
#[tokio::test]
async fn errors_pass_through_unchanged_and_release_their_guard() {
    let shutdown = Shutdown::default();
    let endpoint = Route::new()
        .at("/fail", get(fail))
        .with(DrainLayer::new(shutdown.clone()));

    let error = endpoint
        .call(Request::builder().uri_str("/fail").finish())
        .await
        .expect_err("the handler's error");
    assert_eq!(error.status(), StatusCode::IM_A_TEAPOT);
    let error = endpoint
        .call(Request::builder().uri_str("/nowhere").finish())
        .await
        .expect_err("poem's own error");
    assert!(error.is::<poem::error::NotFoundError>());
    assert_eq!(shutdown.in_flight(), 0);
}
