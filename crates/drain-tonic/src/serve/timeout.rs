//! The RPC deadline of [`serve`](crate::serve): the client's `grpc-timeout` header and
//! the server-wide [`ServeConfig::timeout`](crate::ServeConfig::timeout), whichever
//! ends first, as tonic's `Server` applies them.
//!
//! The deadline bounds the handler's answer (the response headers), not a response
//! stream that has begun. When it passes, the handler's future is dropped (so the RPC
//! leaves the in-flight count at once) and the call fails with
//! [`tonic::TimeoutExpired`], which tonic's `RecoverError` answers with `CANCELLED`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tonic::TimeoutExpired;
use tower_service::Service;

use super::BoxError;

/// The header in which a gRPC client sends the time it gives the RPC.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// At most this many digits before the unit, per the gRPC over HTTP/2 protocol.
const MAX_DIGITS: usize = 8;

/// Fails an RPC with [`TimeoutExpired`] at the earlier of its `grpc-timeout` and the
/// server-wide timeout.
#[derive(Clone, Debug)]
pub(super) struct GrpcTimeout<S> {
    inner: S,
    server_timeout: Option<Duration>,
}

impl<S> GrpcTimeout<S> {
    pub(super) fn new(inner: S, server_timeout: Option<Duration>) -> Self {
        Self {
            inner,
            server_timeout,
        }
    }
}

impl<S, B> Service<Request<B>> for GrpcTimeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = request.headers().get(GRPC_TIMEOUT).and_then(parse);
        let deadline = match (client, self.server_timeout) {
            (Some(client), Some(server)) => Some(client.min(server)),
            (client, server) => client.or(server),
        };
        ResponseFuture {
            inner: Some(self.inner.call(request)),
            deadline: deadline.map(tokio::time::sleep),
        }
    }
}

pin_project! {
    /// The handler's answer, or [`TimeoutExpired`] at the deadline.
    pub(super) struct ResponseFuture<F> {
        // `None` once the deadline has passed: the handler is dropped before the
        // answer leaves, so the RPC is no longer in flight when the client reads it.
        #[pin]
        inner: Option<F>,
        #[pin]
        deadline: Option<Sleep>,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(TimeoutExpired(()).into()));
        };
        if let Poll::Ready(answer) = inner.poll(cx) {
            return Poll::Ready(answer.map_err(Into::into));
        }
        match this.deadline.as_pin_mut().map(|deadline| deadline.poll(cx)) {
            Some(Poll::Ready(())) => {
                this.inner.set(None);
                Poll::Ready(Err(TimeoutExpired(()).into()))
            }
            Some(Poll::Pending) | None => Poll::Pending,
        }
    }
}

/// A `grpc-timeout` value: 1 to 8 ASCII digits and a unit, `H`, `M`, `S`, `m`, `u` or
/// `n`. `None` for anything else, which the server then ignores, as tonic does.
fn parse(value: &HeaderValue) -> Option<Duration> {
    let (unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: no overflow, in `u64` nor in any unit.
    let amount = digits
        .iter()
        .fold(0_u64, |amount, digit| amount * 10 + u64::from(digit - b'0'));
    match unit {
        b'H' => Some(Duration::from_secs(amount * 60 * 60)),
        b'M' => Some(Duration::from_secs(amount * 60)),
        b'S' => Some(Duration::from_secs(amount)),
        b'm' => Some(Duration::from_millis(amount)),
        b'u' => Some(Duration::from_micros(amount)),
        b'n' => Some(Duration::from_nanos(amount)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{pending, ready};
    use std::pin::pin;
    use std::sync::Arc;

    use tower_service::Service as _;

    use super::*;

    fn parsed(value: &str) -> Option<Duration> {
        parse(&HeaderValue::from_str(value).expect("a header value"))
    }

    #[test]
    fn every_unit_of_the_protocol_is_read() {
        assert_eq!(parsed("3H"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(parsed("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parsed("42S"), Some(Duration::from_secs(42)));
        assert_eq!(parsed("13m"), Some(Duration::from_millis(13)));
        assert_eq!(parsed("2u"), Some(Duration::from_micros(2)));
        assert_eq!(parsed("82n"), Some(Duration::from_nanos(82)));
        assert_eq!(parsed("0m"), Some(Duration::ZERO));
        assert_eq!(
            parsed("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parsed("00000001S"), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_malformed_value_is_no_deadline() {
        for value in [
            "",
            "m",
            "1",
            "1x",
            "1h",
            "1s",
            "123456789n",
            "+1m",
            "-1m",
            "1.5S",
            " 1m",
            "1m ",
            "1 m",
            "1mm",
            "0x1m",
            "١m",
        ] {
            let Ok(header) = HeaderValue::from_bytes(value.as_bytes()) else {
                continue;
            };
            assert_eq!(parse(&header), None, "{value:?}");
        }
    }

    fn request(grpc_timeout: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = grpc_timeout {
            request.headers_mut().insert(
                GRPC_TIMEOUT,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        request
    }

    /// How long a call that never answers takes to fail, and whether with
    /// `TimeoutExpired`; `None` if it is still waiting after an hour.
    async fn cut_after(
        server_timeout: Option<Duration>,
        grpc_timeout: Option<&str>,
    ) -> Option<Duration> {
        let mut service = GrpcTimeout::new(
            tower::service_fn(|_: Request<()>| pending::<Result<(), Infallible>>()),
            server_timeout,
        );
        let started = tokio::time::Instant::now();
        let call = service.call(request(grpc_timeout));
        match tokio::time::timeout(Duration::from_secs(3600), call).await {
            Err(_) => None,
            Ok(Ok(())) => panic!("a handler that never answers answered"),
            Ok(Err(error)) => {
                assert!(error.is::<TimeoutExpired>(), "{error}");
                Some(started.elapsed())
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_of_the_header_and_the_server_timeout_applies() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(cut_after(None, None).await, None);
        assert_eq!(
            cut_after(None, Some("250m")).await,
            Some(Duration::from_millis(250))
        );
        assert_eq!(cut_after(second, None).await, Some(Duration::from_secs(1)));
        assert_eq!(
            cut_after(second, Some("250m")).await,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            cut_after(second, Some("5S")).await,
            Some(Duration::from_secs(1))
        );
        assert_eq!(cut_after(None, Some("250x")).await, None);
        assert_eq!(
            cut_after(second, Some("250x")).await,
            Some(Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_handler_is_dropped_when_the_deadline_passes_not_with_the_future() {
        let handler = Arc::new(());
        let mut service = GrpcTimeout::new(
            tower::service_fn(|_: Request<()>| {
                let handler = Arc::clone(&handler);
                async move {
                    pending::<()>().await;
                    drop(handler);
                    Ok::<_, Infallible>(())
                }
            }),
            Some(Duration::from_millis(10)),
        );
        let mut call = pin!(service.call(request(None)));
        assert_eq!(Arc::strong_count(&handler), 2, "the handler runs");
        let error = call.as_mut().await.expect_err("cut at the deadline");
        assert!(error.is::<TimeoutExpired>(), "{error}");
        assert_eq!(Arc::strong_count(&handler), 1, "dropped before the answer");
        let again = call.await.expect_err("polled again, the same answer");
        assert!(again.is::<TimeoutExpired>(), "{again}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_before_the_deadline_passes_through() {
        let mut service = GrpcTimeout::new(
            tower::service_fn(|_: Request<()>| ready(Ok::<_, Infallible>("answer"))),
            Some(Duration::ZERO),
        );
        let answer = service.call(request(Some("0n"))).await.expect("answered");
        assert_eq!(answer, "answer");
    }
}
