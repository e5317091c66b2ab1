//! TLS for [`serve_with`](crate::serve_with) (feature `tls`): the handshake in each
//! connection's task, bounded, and the connect info tonic's TLS server gives.

use std::sync::Arc;
use std::time::Duration;

use http::Extensions;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::debug;

use super::ConnectInfo;

/// The ALPN protocol of HTTP/2, which gRPC clients require.
const ALPN_H2: &[u8] = b"h2";

/// How long a client may take to complete its TLS handshake, unless
/// [`ServeConfig::tls_handshake_timeout`](crate::ServeConfig::tls_handshake_timeout)
/// says otherwise.
pub(super) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `config`, offering `h2` over ALPN if it offers no protocol.
pub(super) fn with_h2(mut config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if config.alpn_protocols.is_empty() {
        Arc::make_mut(&mut config).alpn_protocols = vec![ALPN_H2.to_vec()];
    }
    config
}

/// Whether `config` offers `h2` over ALPN: a client that requires it (every gRPC client)
/// cannot connect otherwise.
pub(super) fn offers_h2(config: &ServerConfig) -> bool {
    config
        .alpn_protocols
        .iter()
        .any(|protocol| protocol == ALPN_H2)
}

/// The server side of the handshake, bounded by a timeout.
#[derive(Clone)]
pub(super) struct Handshake {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl Handshake {
    pub(super) fn new(config: Arc<ServerConfig>, timeout: Duration) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            timeout,
        }
    }

    /// The TLS stream over `stream`; `None`, logged, if the handshake fails or does not
    /// end within the timeout.
    pub(super) async fn accept(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let peer = stream.peer_addr().ok();
        match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                debug!(error = %error, ?peer, "TLS handshake failed; connection dropped");
                None
            }
            Err(_) => {
                debug!(
                    timeout_ms = self.timeout.as_millis(),
                    ?peer,
                    "TLS handshake timed out; connection dropped"
                );
                None
            }
        }
    }
}

/// tonic's connect info of a TLS connection.
type TlsConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

/// What each request of a TLS connection carries: tonic's `TlsConnectInfo`, as tonic's
/// TLS server gives it (for `Request::peer_certs`), and the `TcpConnectInfo` within it
/// (so that `Request::remote_addr` works without tonic's own TLS features, which make
/// it read `TlsConnectInfo`).
#[derive(Clone)]
pub(super) struct TlsInfo {
    tcp: TcpConnectInfo,
    tls: TlsConnectInfo,
}

impl TlsInfo {
    pub(super) fn new(stream: &TlsStream<TcpStream>) -> Self {
        let tls = stream.connect_info();
        Self {
            tcp: tls.get_ref().clone(),
            tls,
        }
    }
}

impl ConnectInfo for TlsInfo {
    fn insert_into(&self, extensions: &mut Extensions) {
        extensions.insert(self.tcp.clone());
        extensions.insert(self.tls.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::server::ResolvesServerCertUsingSni;

    use super::{offers_h2, with_h2};

    fn server_config(alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ResolvesServerCertUsingSni::new()));
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    #[test]
    fn a_config_without_alpn_protocols_offers_h2() {
        let config = with_h2(server_config(&[]));
        assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
        assert!(offers_h2(&config));
    }

    #[test]
    fn a_config_with_alpn_protocols_is_kept_as_it_is() {
        let config = with_h2(server_config(&[b"h2", b"http/1.1"]));
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(offers_h2(&config));
        let config = with_h2(server_config(&[b"http/1.1"]));
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(!offers_h2(&config), "logged when serving begins");
    }
}
