//! The final push: one plain-HTTP `PUT` of the rendered text to a Pushgateway.

use std::error::Error as StdError;
use std::fmt;
use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long [`PrometheusMetrics::push`](super::PrometheusMetrics::push) waits, in all,
/// to connect, send and read the answer.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error answer's body a [`PushError::Status`] keeps.
const MAX_ERROR_BODY: usize = 512;

/// Why a push to the Pushgateway failed. Every variant names the URL.
#[derive(Debug)]
#[non_exhaustive]
pub enum PushError {
    /// The gateway URL could not be used.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The gateway URL is not `http://` (for example `https://`): only plain HTTP is
    /// supported.
    UnsupportedScheme {
        /// The URL as given.
        url: String,
    },
    /// The job name is empty.
    EmptyJob {
        /// The gateway URL as given.
        url: String,
    },
    /// The TCP connection to the gateway failed (refused, unreachable, unknown host).
    Connect {
        /// The push URL.
        url: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed after connecting (the connection was closed or the
    /// answer was malformed).
    Http {
        /// The push URL.
        url: String,
        /// The HTTP client's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The gateway answered with a status other than 2xx.
    Status {
        /// The push URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body, as text.
        body: String,
    },
    /// The push did not complete within its timeout.
    Timeout {
        /// The push URL.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
    },
}

impl PushError {
    /// The URL the error is about: the push URL (`.../metrics/job/<job>`) once the
    /// gateway URL was understood, otherwise the gateway URL as given.
    pub fn url(&self) -> &str {
        match self {
            PushError::InvalidUrl { url, .. }
            | PushError::UnsupportedScheme { url }
            | PushError::EmptyJob { url }
            | PushError::Connect { url, .. }
            | PushError::Http { url, .. }
            | PushError::Status { url, .. }
            | PushError::Timeout { url, .. } => url,
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::InvalidUrl { url, reason } => {
                write!(f, "Pushgateway URL {url:?} is invalid: {reason}")
            }
            PushError::UnsupportedScheme { url } => write!(
                f,
                "Pushgateway URL {url:?}: only http:// URLs are supported (no TLS); \
                 push to a proxy or sidecar over plain HTTP"
            ),
            PushError::EmptyJob { url } => {
                write!(f, "push to {url:?}: the job name must not be empty")
            }
            PushError::Connect { url, source } => {
                write!(f, "push to {url}: cannot connect: {source}")
            }
            PushError::Http { url, source } => write!(f, "push to {url} failed: {source}"),
            PushError::Status { url, status, body } => {
                write!(f, "push to {url} was answered {status}")?;
                if body.is_empty() {
                    Ok(())
                } else {
                    write!(f, ": {body}")
                }
            }
            PushError::Timeout { url, timeout } => {
                write!(f, "push to {url} did not complete within {timeout:?}")
            }
        }
    }
}

impl StdError for PushError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PushError::Connect { source, .. } => Some(source),
            PushError::Http { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// Where a push goes, worked out from the gateway URL and the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The full push URL, for errors.
    pub(crate) url: String,
    /// `host:port` to connect to.
    pub(crate) address: String,
    /// The `Host` header: the URL's authority.
    pub(crate) host: String,
    /// The request target: `<prefix>/metrics/job/<job>`.
    pub(crate) path: String,
}

impl Target {
    pub(crate) fn new(gateway_url: &str, job: &str) -> Result<Self, PushError> {
        let invalid = |reason: String| PushError::InvalidUrl {
            url: gateway_url.to_owned(),
            reason,
        };
        let uri: Uri = gateway_url
            .parse()
            .map_err(|error: http::uri::InvalidUri| invalid(error.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => {
                return Err(PushError::UnsupportedScheme {
                    url: gateway_url.to_owned(),
                });
            }
            None => return Err(invalid("expected http://host:port".to_owned())),
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid("expected http://host:port".to_owned()));
        };
        if authority.as_str().contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported".to_owned(),
            ));
        }
        if uri.query().is_some() {
            return Err(invalid("a query is not supported".to_owned()));
        }
        if job.is_empty() {
            return Err(PushError::EmptyJob {
                url: gateway_url.to_owned(),
            });
        }
        let port = match authority.port_u16() {
            Some(port) => port,
            None if authority.as_str() == authority.host() => 80,
            None => {
                return Err(invalid(
                    "the port is not a number from 0 to 65535".to_owned(),
                ));
            }
        };
        let prefix = uri.path().trim_end_matches('/');
        let path = format!("{prefix}/metrics/{}", job_segment(job));
        Ok(Self {
            url: format!("http://{authority}{path}"),
            address: format!("{}:{port}", authority.host()),
            host: authority.as_str().to_owned(),
            path,
        })
    }
}

/// `job/<job>`, or `job@base64/<base64url>` when the name holds anything but URL
/// unreserved characters (the only way to send a `/`, per the Pushgateway's docs).
fn job_segment(job: &str) -> String {
    let plain = job
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if plain && job != "." && job != ".." {
        format!("job/{job}")
    } else {
        format!("job@base64/{}", base64url(job.as_bytes()))
    }
}

/// RFC 4648 §5 base64 (URL- and filename-safe alphabet), padded.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) async fn push(
    target: &Target,
    body: String,
    timeout: Duration,
) -> Result<(), PushError> {
    match tokio::time::timeout(timeout, exchange(target, body)).await {
        Ok(result) => result,
        Err(_) => Err(PushError::Timeout {
            url: target.url.clone(),
            timeout,
        }),
    }
}

async fn exchange(target: &Target, body: String) -> Result<(), PushError> {
    let http_error = |source: Box<dyn StdError + Send + Sync>| PushError::Http {
        url: target.url.clone(),
        source,
    };
    let stream = TcpStream::connect(&target.address)
        .await
        .map_err(|source| PushError::Connect {
            url: target.url.clone(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_error(e.into()))?;
    let request = Request::put(target.path.as_str())
        .header(HOST, target.host.as_str())
        .header(CONTENT_TYPE, super::CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| http_error(e.into()))?;

    let mut answer = pin!(async move {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    });
    // The connection is driven here, beside the exchange, instead of on a spawned task:
    // nothing outlives the push. Once it ends it is dropped, which fails an exchange
    // still waiting for an answer.
    let mut connection = pin!(Some(connection));
    let mut connection_error = None;
    let outcome = poll_fn(|cx| {
        if let Some(conn) = connection.as_mut().as_pin_mut() {
            if let Poll::Ready(result) = conn.poll(cx) {
                connection_error = result.err();
                connection.set(None);
            }
        }
        answer.as_mut().poll(cx)
    })
    .await;
    let (status, body) = match (outcome, connection_error) {
        (Ok(answer), _) => answer,
        (Err(_), Some(error)) | (Err(error), None) => return Err(http_error(error.into())),
    };

    if status.is_success() {
        Ok(())
    } else {
        let end = body.len().min(MAX_ERROR_BODY);
        Err(PushError::Status {
            url: target.url.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..end]).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_goes_to_metrics_job_under_the_gateway_url() {
        let target = Target::new("http://127.0.0.1:9091", "ingest").expect("valid");
        assert_eq!(target.address, "127.0.0.1:9091");
        assert_eq!(target.host, "127.0.0.1:9091");
        assert_eq!(target.path, "/metrics/job/ingest");
        assert_eq!(target.url, "http://127.0.0.1:9091/metrics/job/ingest");
    }

    #[test]
    fn a_path_prefix_is_kept_and_the_port_defaults_to_80() {
        let target = Target::new("http://gateway.local/prefix/", "ingest").expect("valid");
        assert_eq!(target.address, "gateway.local:80");
        assert_eq!(target.host, "gateway.local");
        assert_eq!(target.path, "/prefix/metrics/job/ingest");
    }

    #[test]
    fn an_ipv6_gateway_is_connected_to_with_brackets() {
        let target = Target::new("http://[::1]:9091", "ingest").expect("valid");
        assert_eq!(target.address, "[::1]:9091");
        assert_eq!(target.host, "[::1]:9091");
    }

    #[test]
    fn a_job_with_a_slash_or_space_is_sent_base64_encoded() {
        let target = Target::new("http://gw:9091", "team/ingest job").expect("valid");
        assert_eq!(target.path, "/metrics/job@base64/dGVhbS9pbmdlc3Qgam9i");
        assert_eq!(job_segment(".."), "job@base64/Li4=");
    }

    #[test]
    fn base64url_matches_rfc_4648_test_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=", "URL-safe alphabet");
    }

    #[test]
    fn an_https_url_is_a_clear_error_that_names_it() {
        let error = Target::new("https://gw:9091", "ingest").expect_err("https");
        assert!(
            matches!(error, PushError::UnsupportedScheme { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("\"https://gw:9091\""), "{message}");
        assert!(message.contains("only http://"), "{message}");
    }

    #[test]
    fn malformed_gateway_urls_are_errors_that_name_them() {
        for url in [
            "gw:9091",
            "/metrics",
            "http://user:secret@gw:9091",
            "http://gw:9091?x=1",
            "http://gw:bad",
            "http://gw:99999",
            "http://gw:",
        ] {
            let error = Target::new(url, "ingest").expect_err(url);
            assert!(
                matches!(
                    error,
                    PushError::InvalidUrl { .. } | PushError::UnsupportedScheme { .. }
                ),
                "{url}: {error:?}"
            );
            assert_eq!(error.url(), url);
            assert!(error.to_string().contains(url), "{error}");
        }
    }

    #[test]
    fn an_empty_job_is_an_error() {
        let error = Target::new("http://gw:9091", "").expect_err("empty job");
        assert!(matches!(error, PushError::EmptyJob { .. }), "{error:?}");
    }
}
