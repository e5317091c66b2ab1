//! `serve_with` over TLS (feature `tls`) on 127.0.0.1 (port 0), with tonic's `Channel`
//! over TLS (ring) as the client and certificates made by rcgen at test time: RPCs,
//! their connect info, the drain, and clients that do not complete a handshake. Every
//! wait is bounded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use drain_tonic::mapping::REJECTION_MESSAGE;
use drain_tonic::{DrainLayer, ServeConfig};
use http::uri::PathAndQuery;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use shutdown_core::{Shutdown, ShutdownConfig, ShutdownReport};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::client::Grpc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::Layer;

const BOUND: Duration = Duration::from_secs(10);

/// A handler that answers once released.
const SLOW: &str = "/test.Test/Slow";
/// A handler that answers at once.
const FAST: &str = "/test.Test/Fast";

/// What a handler saw of its RPC's connection.
#[derive(Debug)]
struct Seen {
    remote_addr: Option<SocketAddr>,
    peer_certs: Option<Vec<CertificateDer<'static>>>,
}

/// A certificate and its key.
struct Pair {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Pair {
    /// A self-signed certificate for `localhost`.
    fn localhost() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        Self {
            cert: certified.cert,
            key: certified.signing_key,
        }
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(self.cert.pem(), self.key.serialize_pem())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls' server config with `server`'s certificate, no ALPN protocol set (`tls`
/// offers `h2`), and client certificates required to be issued by `client_ca`, if
/// given.
fn server_config(
    server: &Pair,
    client_ca: Option<&CertificateDer<'static>>,
) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).expect("a root");
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(vec![server.cert.der().clone()], server.key_der())
        .expect("a server config")
}

struct Server {
    shutdown: Shutdown,
    addr: SocketAddr,
    /// The server's certificate, which the clients trust.
    cert: Pair,
    /// What each RPC that reaches its handler saw, as it does.
    seen: mpsc::UnboundedReceiver<Seen>,
    /// `true` releases every `SLOW` RPC, those to come included.
    release: watch::Sender<bool>,
    served: JoinHandle<ShutdownReport>,
}

impl Server {
    /// `serve_with(ServeConfig::new().tls(..))` of a gRPC unary handler behind
    /// `DrainLayer`, with a new certificate for `localhost`, client certificates issued
    /// by `client_ca` required if given, and `handshake_timeout` if given.
    async fn start(
        client_ca: Option<&CertificateDer<'static>>,
        handshake_timeout: Option<Duration>,
    ) -> Self {
        let cert = Pair::localhost();
        let mut config = ServeConfig::new().tls(server_config(&cert, client_ca));
        if let Some(handshake_timeout) = handshake_timeout {
            config = config.tls_handshake_timeout(handshake_timeout);
        }
        let shutdown = Shutdown::new(ShutdownConfig::new());
        let (sender, seen) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let app = tower::service_fn(move |request: http::Request<Incoming>| {
            let slow = request.uri().path() == SLOW;
            let (sender, released) = (sender.clone(), released.clone());
            let handler = tower::service_fn(move |request: tonic::Request<()>| {
                let _ = sender.send(Seen {
                    remote_addr: request.remote_addr(),
                    peer_certs: request.peer_certs().map(|certs| certs.to_vec()),
                });
                let mut released = released.clone();
                async move {
                    if slow {
                        let _ = released.wait_for(|released| *released).await;
                    }
                    Ok::<_, Status>(tonic::Response::new(()))
                }
            });
            async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
                Ok::<_, Infallible>(grpc.unary(handler, request).await)
            }
        });
        let app = DrainLayer::new(shutdown.clone()).layer(app);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let served = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                drain_tonic::serve_with(listener, app, &shutdown, config)
                    .await
                    .expect("served")
            }
        });
        Self {
            shutdown,
            addr,
            cert,
            seen,
            release,
            served,
        }
    }

    /// What the next RPC to reach its handler saw.
    async fn seen(&mut self) -> Seen {
        timeout(BOUND, self.seen.recv())
            .await
            .expect("an RPC reached its handler in time")
            .expect("the server is up")
    }

    /// Waits until `n` RPCs are in flight.
    async fn in_flight(&self, n: usize) {
        timeout(BOUND, async {
            while self.shutdown.in_flight() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the RPCs reached the server");
    }

    /// tonic's client TLS config: trusts the server's certificate, expects `localhost`.
    fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.cert.cert.pem()))
            .domain_name("localhost")
    }

    /// Starts a `SLOW` RPC on `channel`; returns once it is in flight.
    async fn slow_rpc(&mut self, channel: Channel) -> JoinHandle<Result<(), Status>> {
        let slow = tokio::spawn(call(channel, SLOW));
        self.seen().await;
        self.in_flight(1).await;
        slow
    }

    /// Requests the shutdown; returns once the drain has begun.
    async fn begin_drain(&self) {
        self.shutdown.request_shutdown("test");
        timeout(BOUND, self.shutdown.draining())
            .await
            .expect("drain begun");
    }

    /// Releases `slow`, which must complete, and returns the report.
    async fn finish(self, slow: JoinHandle<Result<(), Status>>) -> ShutdownReport {
        self.release.send_replace(true);
        timeout(BOUND, slow)
            .await
            .expect("in time")
            .expect("task")
            .expect("the RPC open at the drain completes");
        self.report().await
    }

    /// Shuts down and returns the report.
    async fn stop(self) -> ShutdownReport {
        self.shutdown.request_shutdown("test");
        self.report().await
    }

    /// The report, once the shutdown has been requested.
    async fn report(self) -> ShutdownReport {
        timeout(BOUND, self.served)
            .await
            .expect("serve returns")
            .expect("task")
    }
}

/// A `Channel` over TLS, connected.
async fn connect(
    addr: SocketAddr,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("a URI")
        .tls_config(tls)?;
    timeout(BOUND, endpoint.connect())
        .await
        .expect("connected in time")
}

/// A unary call of `path` with an empty message.
async fn call(channel: Channel, path: &'static str) -> Result<(), Status> {
    let mut client = Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let answer = client.unary(
        tonic::Request::new(()),
        PathAndQuery::from_static(path),
        ProstCodec::<(), ()>::default(),
    );
    timeout(BOUND, answer)
        .await
        .expect("answered in time")
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_rpc_is_served_with_its_remote_addr_and_the_drain_finishes_the_open_one() {
    let mut server = Server::start(None, None).await;

    let channel = connect(server.addr, server.client_tls())
        .await
        .expect("a TLS connection, h2 over ALPN");
    call(channel.clone(), FAST).await.expect("served over TLS");
    let seen = server.seen().await;
    let remote = seen.remote_addr.expect("Request::remote_addr");
    assert_eq!(remote.ip(), server.addr.ip());
    assert_ne!(remote.port(), server.addr.port(), "the client's address");
    assert_eq!(seen.peer_certs, None, "no client certificate was asked for");

    let slow = server.slow_rpc(channel).await;
    server.begin_drain().await;

    // A TLS connection accepted during the drain: its RPC reaches the layer, which
    // answers it UNAVAILABLE.
    let late = connect(server.addr, server.client_tls())
        .await
        .expect("accepted during the drain");
    let status = call(late, FAST).await.expect_err("rejected");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), REJECTION_MESSAGE, "the layer's answer");
    assert!(server.seen.is_empty(), "it did not reach the handler");

    let report = server.finish(slow).await;
    assert_eq!(report.drain.drained(), 1);
    assert_eq!(report.drain.interrupted, 0);
    assert_eq!(report.drain.rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_handshake_ends_during_the_drain_gets_the_answer_to_its_first_rpc() {
    let mut server = Server::start(None, None).await;

    // tonic's TLS over a TCP connection made before the drain, whose handshake begins
    // once the drain has. The connector counts the connections it makes.
    let (connected, tcp) = oneshot::channel();
    let (go, went) = watch::channel(false);
    let connections = Arc::new(AtomicUsize::new(0));
    let connector = {
        let addr = server.addr;
        let connected = Arc::new(Mutex::new(Some(connected)));
        let connections = Arc::clone(&connections);
        tower::service_fn(move |_: http::Uri| {
            let (connected, mut went) = (Arc::clone(&connected), went.clone());
            connections.fetch_add(1, Ordering::SeqCst);
            async move {
                let stream = TcpStream::connect(addr).await?;
                if let Some(connected) = connected.lock().expect("lock").take() {
                    let _ = connected.send(());
                }
                let _ = went.wait_for(|went| *went).await;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        })
    };
    let endpoint = Endpoint::from_shared(format!("https://{}", server.addr))
        .expect("a URI")
        .tls_config(server.client_tls())
        .expect("TLS");
    let channel = tokio::spawn(async move { endpoint.connect_with_connector(connector).await });
    timeout(BOUND, tcp)
        .await
        .expect("in time")
        .expect("TCP connected");
    // A connection made after it is served: the accept loop, which takes them in
    // order, has accepted it before the drain. Its RPC keeps the drain open.
    let other = connect(server.addr, server.client_tls())
        .await
        .expect("a TLS connection");
    let slow = server.slow_rpc(other).await;

    server.begin_drain().await;
    go.send_replace(true);
    let channel = timeout(BOUND, channel)
        .await
        .expect("in time")
        .expect("task")
        .expect("the handshake completes during the drain");
    let status = call(channel, FAST).await.expect_err("rejected");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        REJECTION_MESSAGE,
        "the layer's answer, not a GOAWAY before the RPC"
    );
    assert_eq!(server.shutdown.rejected(), 1);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "on the connection made before the drain, not a new one"
    );
    assert_eq!(server.finish(slow).await.drain.drained(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_its_client_hello_holds_up_no_one_and_is_dropped_at_the_handshake_timeout()
 {
    let handshake_timeout = Duration::from_secs(2);
    let mut server = Server::start(None, Some(handshake_timeout)).await;

    let connected = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    // Another client is served while the silent one's handshake is pending.
    let channel = connect(server.addr, server.client_tls())
        .await
        .expect("a TLS connection");
    call(channel, FAST).await.expect("served");
    server.seen().await;
    let mut byte = [0_u8; 1];
    assert!(
        matches!(silent.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "the silent connection is still open, in its handshake, after {:?}",
        connected.elapsed()
    );

    let read = timeout(BOUND, silent.read(&mut byte))
        .await
        .expect("the silent connection is closed in time");
    let dropped = connected.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without a byte: {read:?}"
    );
    assert!(
        dropped >= handshake_timeout,
        "not before the handshake timeout: {dropped:?}"
    );
    assert_eq!(server.stop().await.drain.interrupted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_http2_client_fails_its_rpc_and_the_server_goes_on_serving() {
    let mut server = Server::start(None, None).await;

    let plaintext = timeout(BOUND, async {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        let request = http::Request::post(format!("http://localhost{FAST}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Empty::<Bytes>::new())
            .expect("a request");
        sender.send_request(request).await
    })
    .await
    .expect("the plaintext client gets its answer in time");
    assert!(plaintext.is_err(), "no HTTP/2 without TLS: {plaintext:?}");
    assert!(server.seen.is_empty(), "it did not reach the handler");

    let channel = connect(server.addr, server.client_tls())
        .await
        .expect("a TLS connection");
    call(channel, FAST).await.expect("served after it");
    server.seen().await;
    assert_eq!(server.stop().await.drain.interrupted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_reaches_the_handler_as_peer_certs() {
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA");
    let client_key = KeyPair::generate().expect("a key");
    let client_cert = CertificateParams::new(vec!["client".to_owned()])
        .expect("parameters")
        .signed_by(&client_key, &ca)
        .expect("a client certificate");
    let client = Pair {
        cert: client_cert,
        key: client_key,
    };
    let mut server = Server::start(Some(ca.der()), None).await;

    let channel = connect(server.addr, server.client_tls().identity(client.identity()))
        .await
        .expect("a mutual TLS connection");
    call(channel, FAST).await.expect("served");
    let seen = server.seen().await;
    assert_eq!(
        seen.peer_certs,
        Some(vec![client.cert.der().clone()]),
        "Request::peer_certs"
    );
    assert!(seen.remote_addr.is_some(), "Request::remote_addr");
    server.stop().await;
}
