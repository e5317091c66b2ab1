//! [`ServeConfig`]: tonic's `Server` settings for [`serve_with`](crate::serve_with).

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;
#[cfg(feature = "tls")]
use tokio_rustls::rustls::ServerConfig;
use tonic::service::{RecoverError, RecoverErrorLayer};
use tower::ServiceBuilder;
use tower::limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
use tower::load_shed::{LoadShed, LoadShedLayer};
use tower::util::Either;
use tracing::warn;

use super::timeout::GrpcTimeout;
#[cfg(feature = "tls")]
use super::tls;

/// How long a keep-alive `PING` may go unanswered before the connection is closed,
/// unless [`ServeConfig::http2_keepalive_timeout`] says otherwise: tonic's default.
const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The settings of [`serve_with`](crate::serve_with): those of tonic's `Server`
/// builder, with the same names, arguments and defaults, so that a `Server::builder()`
/// chain carries over.
///
/// [`ServeConfig::default()`] is what [`serve`](crate::serve) uses, and what
/// `Server::builder()` starts from: no server-wide timeout (the client's
/// `grpc-timeout` still applies), no limit on streams or RPCs, hyper's HTTP/2 windows
/// and frame sizes, no keep-alive `PING`s, `TCP_NODELAY` on, no TCP keep-alive, no TLS.
///
/// With the `tls` feature, `tls` (a rustls `ServerConfig`, as tonic's
/// `Server::tls_config`) serves over TLS, and `tls_handshake_timeout` bounds each
/// client's handshake (10 s by default).
///
/// ```no_run
/// use std::time::Duration;
///
/// use drain_tonic::{DrainLayer, ServeConfig};
/// use shutdown_core::{Shutdown, ShutdownConfig};
/// use tower_layer::Layer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let shutdown = Shutdown::new(ShutdownConfig::from_env()?);
/// # let routes = tonic::service::Routes::default();
/// let app = DrainLayer::new(shutdown.clone()).layer(routes);
/// let config = ServeConfig::new()
///     .timeout(Duration::from_secs(30))
///     .concurrency_limit_per_connection(256)
///     .max_concurrent_streams(1024)
///     .http2_keepalive_interval(Some(Duration::from_secs(60)))
///     .http2_keepalive_timeout(Some(Duration::from_secs(10)))
///     .tcp_keepalive(Some(Duration::from_secs(300)));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:50051").await?;
/// let report = drain_tonic::serve_with(listener, app, &shutdown, config).await?;
/// std::process::exit(report.exit_code());
/// # }
/// ```
///
/// Not supported: HTTP/1.1 (`accept_http1`, gRPC-web) and the other settings not
/// listed here.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    timeout: Option<Duration>,
    concurrency_limit: Option<usize>,
    load_shed: bool,
    initial_stream_window_size: Option<u32>,
    initial_connection_window_size: Option<u32>,
    max_concurrent_streams: Option<u32>,
    http2_keepalive_interval: Option<Duration>,
    http2_keepalive_timeout: Duration,
    http2_adaptive_window: Option<bool>,
    http2_max_header_list_size: Option<u32>,
    max_frame_size: Option<u32>,
    tcp_nodelay: bool,
    tcp_keepalive: Option<Duration>,
    max_connection_age: Option<Duration>,
    max_connection_age_grace: Option<Duration>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<ServerConfig>>,
    #[cfg(feature = "tls")]
    tls_handshake_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            timeout: None,
            concurrency_limit: None,
            load_shed: false,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            max_concurrent_streams: None,
            http2_keepalive_interval: None,
            http2_keepalive_timeout: DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
            http2_adaptive_window: None,
            http2_max_header_list_size: None,
            max_frame_size: None,
            tcp_nodelay: true,
            tcp_keepalive: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_handshake_timeout: tls::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl ServeConfig {
    /// The defaults: see [`ServeConfig`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for every RPC's answer, as tonic's `Server::timeout`.
    ///
    /// An RPC whose handler has not answered (sent its response headers) by the
    /// earlier of this timeout and the client's `grpc-timeout` header is answered
    /// `CANCELLED` ("Timeout expired"), as tonic answers it; its handler is dropped
    /// first, so it no longer counts in flight. A response stream that has begun is not
    /// bounded by it. The `grpc-timeout` header applies without this setting too.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = drain_tonic::ServeConfig::new().timeout(Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self
        }
    }

    /// At most `limit` RPCs of one connection reach the service at once; the others
    /// wait for a slot (or, with [`load_shed`](Self::load_shed), are answered
    /// `RESOURCE_EXHAUSTED`). tower's `ConcurrencyLimit`, one per connection, as
    /// tonic's `Server::concurrency_limit_per_connection`.
    ///
    /// An RPC waiting for a slot is not yet in flight, and its
    /// [`timeout`](Self::timeout) starts once it has one, as with tonic.
    ///
    /// ```
    /// let config = drain_tonic::ServeConfig::new().concurrency_limit_per_connection(32);
    /// ```
    #[must_use]
    pub fn concurrency_limit_per_connection(self, limit: usize) -> Self {
        Self {
            concurrency_limit: Some(limit),
            ..self
        }
    }

    /// Whether an RPC that finds the service not ready (its connection's
    /// [concurrency limit](Self::concurrency_limit_per_connection) reached) is answered
    /// `RESOURCE_EXHAUSTED` at once rather than waiting, as tonic's
    /// `Server::load_shed`. Off by default.
    ///
    /// ```
    /// let config = drain_tonic::ServeConfig::new()
    ///     .concurrency_limit_per_connection(32)
    ///     .load_shed(true);
    /// ```
    #[must_use]
    pub fn load_shed(self, load_shed: bool) -> Self {
        Self { load_shed, ..self }
    }

    /// `SETTINGS_INITIAL_WINDOW_SIZE`: the HTTP/2 flow-control window of each stream;
    /// `None` for hyper's default. As tonic's `Server::initial_stream_window_size`.
    #[must_use]
    pub fn initial_stream_window_size(self, size: impl Into<Option<u32>>) -> Self {
        Self {
            initial_stream_window_size: size.into(),
            ..self
        }
    }

    /// The HTTP/2 flow-control window of each connection; `None` for hyper's default.
    /// As tonic's `Server::initial_connection_window_size`.
    #[must_use]
    pub fn initial_connection_window_size(self, size: impl Into<Option<u32>>) -> Self {
        Self {
            initial_connection_window_size: size.into(),
            ..self
        }
    }

    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: how many RPCs a client may have open at once
    /// on one connection; `None` (the default) for no limit. A client keeps the RPCs
    /// beyond it until one of its open ones ends. As tonic's
    /// `Server::max_concurrent_streams`.
    ///
    /// ```
    /// let config = drain_tonic::ServeConfig::new().max_concurrent_streams(100);
    /// ```
    #[must_use]
    pub fn max_concurrent_streams(self, max: impl Into<Option<u32>>) -> Self {
        Self {
            max_concurrent_streams: max.into(),
            ..self
        }
    }

    /// How often the server sends an HTTP/2 `PING` on each connection to check that the
    /// client is still there; `None` (the default) for none. As tonic's
    /// `Server::http2_keepalive_interval`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = drain_tonic::ServeConfig::new()
    ///     .http2_keepalive_interval(Some(Duration::from_secs(60)));
    /// ```
    #[must_use]
    pub fn http2_keepalive_interval(self, interval: Option<Duration>) -> Self {
        Self {
            http2_keepalive_interval: interval,
            ..self
        }
    }

    /// How long a keep-alive `PING` may go unanswered before the connection is closed
    /// (default 20 s); `None` leaves the current value, as tonic's
    /// `Server::http2_keepalive_timeout`. Without
    /// [`http2_keepalive_interval`](Self::http2_keepalive_interval) it does nothing.
    #[must_use]
    pub fn http2_keepalive_timeout(self, timeout: Option<Duration>) -> Self {
        Self {
            http2_keepalive_timeout: timeout.unwrap_or(self.http2_keepalive_timeout),
            ..self
        }
    }

    /// Whether HTTP/2 flow control adapts its windows to the connection (BDP
    /// estimates); it then overrides the initial window sizes. Off by default. As
    /// tonic's `Server::http2_adaptive_window`.
    #[must_use]
    pub fn http2_adaptive_window(self, enabled: Option<bool>) -> Self {
        Self {
            http2_adaptive_window: enabled,
            ..self
        }
    }

    /// The largest header list (request headers and metadata) the server accepts;
    /// `None` for hyper's default (16 KiB). As tonic's
    /// `Server::http2_max_header_list_size`.
    #[must_use]
    pub fn http2_max_header_list_size(self, max: impl Into<Option<u32>>) -> Self {
        Self {
            http2_max_header_list_size: max.into(),
            ..self
        }
    }

    /// `SETTINGS_MAX_FRAME_SIZE`: the largest HTTP/2 frame the server accepts; `None`
    /// for hyper's default (16 KiB). As tonic's `Server::max_frame_size`.
    #[must_use]
    pub fn max_frame_size(self, size: impl Into<Option<u32>>) -> Self {
        Self {
            max_frame_size: size.into(),
            ..self
        }
    }

    /// How long a connection may live: once it is this old it is sent a graceful
    /// `GOAWAY`, as at the drain (its open RPCs finish, and the client opens its next
    /// ones on a new connection, which spreads them again over the instances behind a
    /// load balancer). No limit by default. As tonic's `Server::max_connection_age`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = drain_tonic::ServeConfig::new()
    ///     .max_connection_age(Duration::from_secs(300))
    ///     .max_connection_age_grace(Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn max_connection_age(self, age: Duration) -> Self {
        Self {
            max_connection_age: Some(age),
            ..self
        }
    }

    /// How long a connection sent its `GOAWAY` at
    /// [`max_connection_age`](Self::max_connection_age) may stay open for its RPCs to
    /// finish; then it is closed, and the RPCs still open on it fail. No limit by
    /// default (the connection closes when its last RPC ends); without
    /// `max_connection_age` it does nothing. As tonic's
    /// `Server::max_connection_age_grace`.
    #[must_use]
    pub fn max_connection_age_grace(self, grace: Duration) -> Self {
        Self {
            max_connection_age_grace: Some(grace),
            ..self
        }
    }

    /// `TCP_NODELAY` on accepted connections: on by default, as with tonic's
    /// `Server::tcp_nodelay`.
    #[must_use]
    pub fn tcp_nodelay(self, enabled: bool) -> Self {
        Self {
            tcp_nodelay: enabled,
            ..self
        }
    }

    /// TCP keep-alive on accepted connections: how long a connection stays idle before
    /// the system sends keep-alive probes; `None` (the default) for none. The probes'
    /// interval and count are the system's. As tonic's `Server::tcp_keepalive`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = drain_tonic::ServeConfig::new().tcp_keepalive(Some(Duration::from_secs(300)));
    /// ```
    #[must_use]
    pub fn tcp_keepalive(self, idle: Option<Duration>) -> Self {
        Self {
            tcp_keepalive: idle,
            ..self
        }
    }

    /// Serves over TLS with rustls' `config`: each accepted connection's TLS handshake
    /// runs in its own task (a slow client never holds up the others or the accept
    /// loop), bounded by [`tls_handshake_timeout`](Self::tls_handshake_timeout); a
    /// connection whose handshake fails or times out is logged (at `debug`) and dropped.
    /// The server speaks HTTP/2 only: if `config` offers no ALPN protocol, it is set to
    /// offer `h2` (gRPC clients require it); a list without `h2` is kept, and logged at
    /// `warn` when serving begins. As tonic's `Server::tls_config`.
    ///
    /// Each request carries tonic's `TlsConnectInfo<TcpConnectInfo>`, as with tonic's
    /// TLS server, so `Request::peer_certs` (defined with tonic's `tls-ring` or
    /// `tls-aws-lc` feature) gives the client's certificates, and tonic's
    /// `TcpConnectInfo` too, so `Request::remote_addr` works with or without those
    /// features.
    ///
    /// The crypto provider, the certificates and client authentication are the
    /// `ServerConfig`'s (rustls 0.23): this crate enables no provider of its own.
    ///
    /// ```no_run
    /// use drain_tonic::ServeConfig;
    /// use rustls::ServerConfig;
    /// use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let certs = CertificateDer::pem_file_iter("server.pem")?.collect::<Result<_, _>>()?;
    /// let key = PrivateKeyDer::from_pem_file("server.key")?;
    /// let tls = ServerConfig::builder()
    ///     .with_no_client_auth()
    ///     .with_single_cert(certs, key)?;
    /// let config = ServeConfig::new().tls(tls);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn tls(self, config: impl Into<Arc<ServerConfig>>) -> Self {
        Self {
            tls: Some(tls::with_h2(config.into())),
            ..self
        }
    }

    /// How long a client may take to complete its TLS handshake (from its connection's
    /// acceptance) before its connection is dropped: 10 s by default. It bounds what a
    /// client that connects and sends nothing holds (a task and a socket). Without
    /// [`tls`](Self::tls) it does nothing.
    ///
    /// tonic's `ServerTlsConfig::timeout` sets the same bound, with none by default.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn tls_handshake_timeout(self, timeout: Duration) -> Self {
        Self {
            tls_handshake_timeout: timeout,
            ..self
        }
    }

    /// The TLS handshake of each connection, with [`tls`](Self::tls).
    #[cfg(feature = "tls")]
    pub(super) fn handshake(&self) -> Option<tls::Handshake> {
        let config = self.tls.clone()?;
        if !tls::offers_h2(&config) {
            warn!(
                alpn = ?config.alpn_protocols,
                "the TLS config's ALPN protocols lack h2: gRPC clients cannot connect"
            );
        }
        Some(tls::Handshake::new(config, self.tls_handshake_timeout))
    }

    /// hyper's HTTP/2 connection builder with these settings.
    pub(super) fn http2(&self) -> http2::Builder<TokioExecutor> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(self.initial_stream_window_size)
            .initial_connection_window_size(self.initial_connection_window_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .keep_alive_interval(self.http2_keepalive_interval)
            .keep_alive_timeout(self.http2_keepalive_timeout)
            .adaptive_window(self.http2_adaptive_window.unwrap_or_default())
            .max_frame_size(self.max_frame_size);
        if let Some(max) = self.http2_max_header_list_size {
            builder.max_header_list_size(max);
        }
        builder
    }

    /// The age limits of each connection.
    pub(super) fn connection_age(&self) -> ConnectionAge {
        ConnectionAge {
            max: self.max_connection_age,
            grace: self.max_connection_age_grace,
        }
    }

    /// Sets the TCP options of an accepted connection; a failure is logged, and the
    /// connection served anyway, as tonic's server does.
    pub(super) fn set_socket_options(&self, stream: &TcpStream) {
        if let Err(error) = stream.set_nodelay(self.tcp_nodelay) {
            warn!(error = %error, "could not set TCP_NODELAY");
        }
        if let Some(idle) = self.tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(idle);
            if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
                warn!(error = %error, "could not set TCP keep-alive");
            }
        }
    }

    /// `app` under one connection's RPC layers, in tonic's order: errors that tonic
    /// knows (its `Status`, `TimeoutExpired`, load shedding) answered as a status, then
    /// load shedding, the concurrency limit, the deadline.
    pub(super) fn layer<S>(&self, app: S) -> PerConnection<S> {
        ServiceBuilder::new()
            .layer(RecoverErrorLayer::new())
            .option_layer(self.load_shed.then(LoadShedLayer::new))
            .option_layer(self.concurrency_limit.map(ConcurrencyLimitLayer::new))
            .layer_fn(|app| GrpcTimeout::new(app, self.timeout))
            .service(app)
    }
}

/// What [`ServeConfig::layer`] makes of the application.
pub(super) type PerConnection<S> = RecoverError<Either<LoadShed<Limited<S>>, Limited<S>>>;

type Limited<S> = Either<ConcurrencyLimit<GrpcTimeout<S>>, GrpcTimeout<S>>;

/// [`ServeConfig::max_connection_age`] and [`ServeConfig::max_connection_age_grace`].
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnectionAge {
    pub(super) max: Option<Duration>,
    pub(super) grace: Option<Duration>,
}
