//! The standard gRPC health service (`grpc.health.v1.Health`, from `tonic-health`)
//! following the shutdown.
//!
//! [`health_service`] gives tonic-health's [`HealthReporter`] (register your services
//! with it as usual) and a [`HealthServer`] that answers like tonic-health's, except
//! that from the **first moment of the shutdown** (the trigger, before the pre-stop
//! delay) every known service, the overall `""` included, is `NOT_SERVING`:
//!
//! - `Check` answers `NOT_SERVING` (an unknown service is still `NOT_FOUND`);
//! - open `Watch` streams receive `NOT_SERVING` at the trigger, and new ones start with
//!   it; a later `set_serving` does not bring a draining service back.
//!
//! Both methods are exempt from the drain by default
//! ([`DEFAULT_EXEMPT_PATHS`](shutdown_core::DEFAULT_EXEMPT_PATHS)): they are answered
//! during the drain and not counted, so an open `Watch` does not hold it open.
//!
//! Load balancers and orchestrators that probe gRPC health (Kubernetes' `grpc` probe,
//! Envoy's health checker, `grpc_health_probe`) take the instance out while it still
//! serves, as `/health/ready` does for the HTTP adapters.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use shutdown_core::Shutdown;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthService, WatchStream};

pub use tonic_health::pb::health_server::HealthServer;
pub use tonic_health::server::HealthReporter;

/// tonic-health's reporter and a health server that turns every service
/// `NOT_SERVING` at the trigger of `shutdown`: see the [module docs](self).
///
/// ```
/// use drain_tonic::health_service;
/// use shutdown_core::Shutdown;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = Shutdown::default();
/// let (reporter, health) = health_service(&shutdown);
/// reporter
///     .set_service_status("helloworld.Greeter", tonic_health::ServingStatus::Serving)
///     .await;
/// // Serve `health` next to your services (`Routes::new(health).add_service(...)`).
/// # let _ = health;
/// # }
/// ```
pub fn health_service(shutdown: &Shutdown) -> (HealthReporter, HealthServer<DrainHealth>) {
    let reporter = HealthReporter::new();
    let service = DrainHealth {
        inner: HealthService::from_health_reporter(reporter.clone()),
        shutdown: shutdown.clone(),
    };
    (reporter, HealthServer::new(service))
}

/// The `grpc.health.v1.Health` implementation of [`health_service`]: tonic-health's,
/// `NOT_SERVING` from the trigger on.
#[derive(Debug)]
pub struct DrainHealth {
    inner: HealthService,
    shutdown: Shutdown,
}

#[tonic::async_trait]
impl Health for DrainHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let mut response = self.inner.check(request).await?;
        if !self.shutdown.is_ready() {
            response.get_mut().status = ServingStatus::NotServing as i32;
        }
        Ok(response)
    }

    type WatchStream = DrainWatch;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let response = self.inner.watch(request).await?;
        let shutdown = self.shutdown.clone();
        Ok(response.map(|inner| DrainWatch {
            inner,
            triggered: Some(Box::pin(async move { shutdown.triggered().await })),
            shutdown: self.shutdown.clone(),
            last: None,
        }))
    }
}

/// The stream of a `Watch`: tonic-health's, with `NOT_SERVING` sent at the trigger and
/// every later status reported as `NOT_SERVING`. Sends a status only when it changes.
pub struct DrainWatch {
    inner: WatchStream,
    /// Resolves at the trigger; `None` once it has.
    triggered: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    shutdown: Shutdown,
    /// The status last sent.
    last: Option<i32>,
}

impl Stream for DrainWatch {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let not_serving = ServingStatus::NotServing as i32;
        if let Some(triggered) = &mut this.triggered {
            if triggered.as_mut().poll(cx).is_ready() {
                this.triggered = None;
                // Before the first status, the first one below is reported instead.
                if this.last.is_some_and(|last| last != not_serving) {
                    this.last = Some(not_serving);
                    return Poll::Ready(Some(Ok(HealthCheckResponse {
                        status: not_serving,
                    })));
                }
            }
        }
        loop {
            let mut response = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(response)) => response,
                other => return Poll::Ready(other),
            };
            if !this.shutdown.is_ready() {
                response.status = not_serving;
            }
            if this.last != Some(response.status) {
                this.last = Some(response.status);
                return Poll::Ready(Some(Ok(response)));
            }
        }
    }
}

impl std::fmt::Debug for DrainWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainWatch")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shutdown_core::ShutdownConfig;
    use tonic_health::ServingStatus as Reported;

    use super::*;

    const SERVING: i32 = ServingStatus::Serving as i32;
    const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

    fn request(service: &str) -> Request<HealthCheckRequest> {
        Request::new(HealthCheckRequest {
            service: service.to_owned(),
        })
    }

    async fn next(watch: &mut DrainWatch) -> i32 {
        let item = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| Pin::new(&mut *watch).poll_next(cx)),
        )
        .await
        .expect("a status in time");
        item.expect("open").expect("a status").status
    }

    fn server() -> (Shutdown, HealthReporter, DrainHealth) {
        // A pre-stop delay that never ends in these tests: "from the trigger", not
        // "from the drain".
        let shutdown =
            Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::from_secs(3600)));
        let reporter = HealthReporter::new();
        let service = DrainHealth {
            inner: HealthService::from_health_reporter(reporter.clone()),
            shutdown: shutdown.clone(),
        };
        (shutdown, reporter, service)
    }

    #[tokio::test]
    async fn check_turns_not_serving_at_the_trigger_for_every_known_service() {
        let (shutdown, reporter, health) = server();
        reporter
            .set_service_status("helloworld.Greeter", Reported::Serving)
            .await;
        for service in ["", "helloworld.Greeter"] {
            let status = health.check(request(service)).await.expect("known");
            assert_eq!(status.get_ref().status, SERVING, "{service:?}");
        }
        shutdown.request_shutdown("test");
        for service in ["", "helloworld.Greeter"] {
            let status = health.check(request(service)).await.expect("known");
            assert_eq!(status.get_ref().status, NOT_SERVING, "{service:?}");
        }
        let unknown = health.check(request("nope")).await.expect_err("unknown");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn an_open_watch_sees_not_serving_at_the_trigger() {
        let (shutdown, reporter, health) = server();
        reporter
            .set_service_status("helloworld.Greeter", Reported::Serving)
            .await;
        let mut overall = health.watch(request("")).await.expect("known").into_inner();
        let mut greeter = health
            .watch(request("helloworld.Greeter"))
            .await
            .expect("known")
            .into_inner();
        assert_eq!(next(&mut overall).await, SERVING);
        assert_eq!(next(&mut greeter).await, SERVING);
        shutdown.request_shutdown("test");
        assert_eq!(next(&mut overall).await, NOT_SERVING);
        assert_eq!(next(&mut greeter).await, NOT_SERVING);

        // A service set to SERVING again while shutting down stays NOT_SERVING, and
        // nothing is sent for it (no change).
        reporter
            .set_service_status("helloworld.Greeter", Reported::Serving)
            .await;
        let nothing = tokio::time::timeout(Duration::from_millis(50), next(&mut greeter)).await;
        assert!(nothing.is_err(), "no change to report");
    }

    #[tokio::test]
    async fn a_watch_opened_after_the_trigger_starts_with_not_serving() {
        let (shutdown, _reporter, health) = server();
        shutdown.request_shutdown("test");
        let mut watch = health.watch(request("")).await.expect("known").into_inner();
        assert_eq!(next(&mut watch).await, NOT_SERVING);
        let again = tokio::time::timeout(Duration::from_millis(50), next(&mut watch)).await;
        assert!(again.is_err(), "the status is sent once");
    }
}
