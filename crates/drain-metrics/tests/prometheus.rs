//! The `prometheus` feature: the rendered text after a scripted shutdown, and the final
//! push to a Pushgateway played by a tiny HTTP server on 127.0.0.1.

#![cfg(feature = "prometheus")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drain_metrics::prometheus::{CONTENT_TYPE, PrometheusBuilder};
use drain_metrics::{DrainMetrics, PrometheusMetrics, PushError, describe_metrics, names};
use shutdown_core::ShutdownObserver;
use support::{Checkpoint, paused_runtime, scripted_shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every wait in these tests is bounded by this, so that a bug fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

fn lines(text: &str) -> BTreeSet<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn render_shows_every_metric_with_its_value_during_and_after_the_shutdown() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = PrometheusMetrics::from_handle(recorder.handle());

    metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        paused_runtime().block_on(scripted_shutdown(|point| {
            if let Checkpoint::OneFinished = point {
                let text = prometheus.render();
                let text = lines(&text);
                assert!(text.contains("in_flight_requests 1"), "{text:#?}");
                assert!(text.contains("shutdown_phase 1"), "{text:#?}");
            }
        }));
    });

    let text = prometheus.render();
    let rendered = lines(&text);
    for line in [
        "# TYPE in_flight_requests gauge",
        "in_flight_requests 0",
        "# TYPE requests_rejected counter",
        "requests_rejected 1",
        "# TYPE requests_interrupted counter",
        "requests_interrupted 1",
        "# TYPE shutdown_duration_seconds gauge",
        "shutdown_duration_seconds 11",
        "shutdown_phase 3",
        "cleanup_duration_seconds{task=\"database\",outcome=\"completed\"} 1",
        "cleanup_duration_seconds{task=\"cache\",outcome=\"failed\"} 0",
        "cleanup_tasks{task=\"database\",outcome=\"completed\"} 1",
        "cleanup_tasks{task=\"cache\",outcome=\"failed\"} 1",
    ] {
        assert!(rendered.contains(line), "missing {line:?} in\n{text}");
    }
    for name in names::ALL {
        assert!(
            rendered
                .iter()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name} has no HELP line in\n{text}"
        );
    }
}

/// What the gateway received.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A one-request HTTP server on 127.0.0.1 port 0 playing the Pushgateway: reads one
/// request, answers `status` with `body` unless `status` is `None` (then it holds the
/// connection open without answering), and returns what it received.
async fn gateway(
    answer: Option<(&'static str, &'static str)>,
) -> (String, tokio::task::JoinHandle<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let received = read_request(&mut stream).await;
        match answer {
            Some((status, body)) => {
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.expect("write");
                stream.shutdown().await.expect("close");
            }
            None => tokio::time::sleep(WAIT).await,
        }
        received
    });
    (url, server)
}

async fn read_request(stream: &mut TcpStream) -> Received {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read_buf(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "connection closed before the end of the request head"
        );
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("UTF-8 head");
    let mut head_lines = head.split("\r\n");
    let mut request_line = head_lines.next().expect("request line").split(' ');
    let method = request_line.next().expect("method").to_owned();
    let path = request_line.next().expect("path").to_owned();
    let headers: BTreeMap<String, String> = head_lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .expect("a content-length header")
        .parse()
        .expect("a numeric content-length");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read_buf(&mut body).await.expect("read body");
        assert!(n > 0, "connection closed before the end of the body");
    }
    Received {
        method,
        path,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

/// A Prometheus recorder with a few values, through a `DrainMetrics` on it.
fn recorded() -> PrometheusMetrics {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = PrometheusMetrics::from_handle(recorder.handle());
    let observer = metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        DrainMetrics::new()
    });
    observer.request_started();
    observer.request_rejected();
    prometheus
}

#[tokio::test]
async fn push_puts_the_rendered_text_to_the_job_path_of_the_gateway() {
    let prometheus = recorded();
    let (url, server) = gateway(Some(("200 OK", ""))).await;

    tokio::time::timeout(WAIT, prometheus.push(&url, "drain-test"))
        .await
        .expect("push in time")
        .expect("push accepted");
    let received = tokio::time::timeout(WAIT, server)
        .await
        .expect("server in time")
        .expect("server task");

    assert_eq!(received.method, "PUT");
    assert_eq!(received.path, "/metrics/job/drain-test");
    assert_eq!(received.headers["content-type"], CONTENT_TYPE);
    assert_eq!(
        format!("http://{}", received.headers["host"]),
        url,
        "Host is the gateway's authority"
    );
    let rendered = prometheus.render();
    assert_eq!(lines(&received.body), lines(&rendered));
    assert!(
        received.body.contains("requests_rejected 1"),
        "{}",
        received.body
    );
    assert!(
        received.body.contains("in_flight_requests 1"),
        "{}",
        received.body
    );
}

#[tokio::test]
async fn push_of_a_job_with_a_slash_uses_the_base64_path() {
    let prometheus = recorded();
    let (url, server) = gateway(Some(("202 Accepted", ""))).await;

    tokio::time::timeout(WAIT, prometheus.push(&format!("{url}/"), "team/ingest"))
        .await
        .expect("push in time")
        .expect("push accepted");
    let received = tokio::time::timeout(WAIT, server)
        .await
        .expect("server in time")
        .expect("server task");
    assert_eq!(received.path, "/metrics/job@base64/dGVhbS9pbmdlc3Q=");
}

#[tokio::test]
async fn a_non_2xx_answer_is_a_status_error_with_the_url_and_the_gateway_message() {
    let prometheus = recorded();
    let (url, server) = gateway(Some(("400 Bad Request", "text format parsing error"))).await;

    let error = tokio::time::timeout(WAIT, prometheus.push(&url, "drain-test"))
        .await
        .expect("push in time")
        .expect_err("rejected by the gateway");
    tokio::time::timeout(WAIT, server)
        .await
        .expect("server in time")
        .expect("server task");

    let push_url = format!("{url}/metrics/job/drain-test");
    match &error {
        PushError::Status { url, status, body } => {
            assert_eq!(url, &push_url);
            assert_eq!(*status, 400);
            assert_eq!(body, "text format parsing error");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&push_url), "{message}");
    assert!(message.contains("400"), "{message}");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_naming_the_url() {
    let prometheus = recorded();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);

    let error = tokio::time::timeout(WAIT, prometheus.push(&url, "drain-test"))
        .await
        .expect("push in time")
        .expect_err("nothing listens");
    assert!(matches!(error, PushError::Connect { .. }), "{error:?}");
    let push_url = format!("{url}/metrics/job/drain-test");
    assert_eq!(error.url(), push_url);
    assert!(error.to_string().contains(&push_url), "{error}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the OS error is the source"
    );
}

#[tokio::test]
async fn an_https_gateway_url_is_refused_with_an_error_naming_it() {
    let prometheus = recorded();
    let url = "https://127.0.0.1:9091";
    let error = tokio::time::timeout(WAIT, prometheus.push(url, "drain-test"))
        .await
        .expect("push in time")
        .expect_err("https is not supported");
    assert!(
        matches!(error, PushError::UnsupportedScheme { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(url), "{message}");
    assert!(message.contains("only http://"), "{message}");
}

#[tokio::test]
async fn a_gateway_that_never_answers_is_a_timeout_error_naming_the_url() {
    let prometheus = recorded();
    let (url, server) = gateway(None).await;
    let timeout = Duration::from_millis(200);

    let error = tokio::time::timeout(
        WAIT,
        prometheus.push_with_timeout(&url, "drain-test", timeout),
    )
    .await
    .expect("the push's own timeout fires first")
    .expect_err("no answer");
    server.abort();

    match &error {
        PushError::Timeout {
            url: push_url,
            timeout: t,
        } => {
            assert_eq!(push_url, &format!("{url}/metrics/job/drain-test"));
            assert_eq!(*t, timeout);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(error.to_string().contains(&url), "{error}");
}
