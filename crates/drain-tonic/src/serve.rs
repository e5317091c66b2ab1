//! [`serve`]: a gRPC server that follows the shutdown sequence, with the drain's
//! deadline and a bounded stop.
//!
//! tonic's `Server::serve_with_shutdown(addr, signal)` cannot do what a drain needs:
//! when `signal` resolves it stops accepting **and** asks every connection to close
//! (`GOAWAY`) at once, then waits for every connection **with no deadline**, so an
//! RPC arriving during the drain is refused at the TCP level, and one open stream (or
//! a client that stops reading) keeps the process alive for ever. [`serve`] runs its
//! own accept loop on hyper instead:
//!
//! | moment | connections | listener |
//! |---|---|---|
//! | trigger, pre-stop delay | served as usual | open |
//! | drain begins | each gets a graceful `GOAWAY` (hyper's `graceful_shutdown`): its open RPCs finish, new RPCs go to a new connection | open: a late connection is served (its RPCs get `UNAVAILABLE`) and sent `GOAWAY` after its first RPC |
//! | handoff (`Trigger::Handoff`, `shutdown-handoff`) | `GOAWAY` at once; RPCs on open connections are served through the handoff grace, never rejected | closed at once: the successor accepts |
//! | drain ended (all done, or the deadline) | given [`server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout) to close, then dropped | closed |
//!
//! Within a connection, RPCs are served as tonic's `Server` serves them, with the
//! settings of [`ServeConfig`] (tonic's builder names and defaults) and
//! [`serve_with`]: the `grpc-timeout` deadline answered `CANCELLED`, the errors tonic
//! knows answered as statuses, the concurrency limit per connection and load shedding,
//! the HTTP/2 and TCP options, the connections' age limit, and TLS (feature `tls`:
//! `ServeConfig::tls`, tonic's `Server::tls_config`). Not supported: HTTP/1.1
//! (gRPC-web).

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use shutdown_core::{AcceptUntilHandoff, CancellationToken, ServeError, Shutdown, ShutdownReport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Sleep, sleep};
use tonic::transport::server::TcpConnectInfo;
use tower_service::Service;
use tracing::{debug, info, warn};

mod config;
mod timeout;
#[cfg(feature = "tls")]
mod tls;

use config::ConnectionAge;
pub use config::ServeConfig;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long the accept loop pauses after an error that is not about one connection
/// (out of file descriptors), before it accepts again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` (your services behind [`DrainLayer`](crate::DrainLayer)) over HTTP/2 on
/// `listener` until the shutdown, then runs the rest of the sequence and returns its
/// report.
///
/// It is [`Shutdown::run_server`] around an accept loop on hyper:
///
/// 1. serves, with the listener open, until [`Shutdown::drain`] has ended. When the
///    drain begins (after the pre-stop delay) every connection is sent a graceful
///    `GOAWAY`: its open RPCs and streams go on, and the client opens its next RPCs on
///    a new connection, elsewhere once the load balancer has taken this instance out.
///    Connections accepted during the drain are served (their RPCs get `UNAVAILABLE`
///    from the layer) and sent `GOAWAY` once their first RPC has arrived;
/// 2. then closes the listener and gives the connections
///    [`ShutdownConfig::server_stop_timeout`](shutdown_core::ShutdownConfig::server_stop_timeout)
///    (default 1 s) to close; what is left (a stream past the drain deadline, a client
///    that stopped reading) is dropped. So `serve` returns by the deadline plus that
///    bound, whatever a client does;
/// 3. runs [`Shutdown::run`]: background tasks, cleanup (after the server has stopped),
///    and returns the report.
///
/// At a handoff (`Trigger::Handoff`, an in-place restart with `shutdown-handoff`) the
/// listener stops accepting at once (the successor accepts on the same socket) and
/// every connection gets its `GOAWAY` at once; RPCs still arriving on them are served,
/// not rejected, through the handoff grace.
///
/// Each RPC is served as tonic's `Server` serves it with its defaults
/// ([`ServeConfig::default()`]; [`serve_with`] takes other settings):
///
/// - its `grpc-timeout` header is a deadline: a handler that has not answered by then
///   is dropped (the RPC leaves the in-flight count) and the RPC answered `CANCELLED`
///   ("Timeout expired"). A malformed header is ignored;
/// - an error of `app` that tonic knows (a [`tonic::Status`], `TimeoutExpired`, load
///   shedding) is answered as that status; any other error resets the RPC's stream;
/// - it carries tonic's [`TcpConnectInfo`] (so `Request::remote_addr` works), and
///   accepted sockets have `TCP_NODELAY`.
///
/// It speaks HTTP/2 over TCP (over TLS with [`serve_with`] and `ServeConfig::tls`,
/// feature `tls`), not HTTP/1.1.
///
/// Apply [`DrainLayer`](crate::DrainLayer) to `app` yourself: this function does not
/// add it. Install the signal handlers (`shutdown-signal`) before calling it.
///
/// ```no_run
/// use drain_tonic::{DrainLayer, health_service};
/// use shutdown_core::{Shutdown, ShutdownConfig};
/// use tower_layer::Layer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let shutdown = Shutdown::new(ShutdownConfig::from_env()?);
/// shutdown_signal::install(&shutdown)?;
/// let (_reporter, health) = health_service(&shutdown);
/// let routes = tonic::service::Routes::new(health); // .add_service(GreeterServer::new(..))
/// let app = DrainLayer::new(shutdown.clone()).layer(routes);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
/// let report = drain_tonic::serve(listener, app, &shutdown).await?;
/// std::process::exit(report.exit_code());
/// # }
/// ```
///
/// # Errors
///
/// [`ServeError`] if the accept loop fails for good (never with a `TcpListener`, whose
/// errors are retried). The shutdown is then triggered and run, and the error carries
/// the report.
///
/// # Cancel safety
///
/// Dropping the future closes the listener and drops every connection, without running
/// the shutdown sequence.
pub async fn serve<S, B>(
    listener: TcpListener,
    app: S,
    shutdown: &Shutdown,
) -> Result<ShutdownReport, ServeError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_with(listener, app, shutdown, ServeConfig::default()).await
}

/// [`serve`] with tonic's `Server` settings: a server-wide RPC timeout, a concurrency
/// limit per connection, HTTP/2 limits and keep-alive, TCP options. See
/// [`ServeConfig`].
///
/// The settings change how each connection and RPC is served, not the shutdown
/// sequence: the drain, its `GOAWAY`s and the stop bound are those of [`serve`].
///
/// With TLS (feature `tls`, `ServeConfig::tls`), each connection's handshake runs in
/// the connection's own task, bounded by `ServeConfig::tls_handshake_timeout`: a client
/// that is slow to complete it, or sends nothing, holds up neither the accept loop nor
/// other clients, and a failed handshake drops its connection only. A connection whose
/// handshake ends once the drain has begun is served as one accepted during the drain
/// (its first RPC is answered `UNAVAILABLE`, then `GOAWAY`); one still in its handshake
/// when the server stops is closed. Each request carries tonic's `TlsConnectInfo` and
/// `TcpConnectInfo` (`Request::peer_certs`, `Request::remote_addr`).
///
/// ```no_run
/// use std::time::Duration;
///
/// use drain_tonic::{DrainLayer, ServeConfig, health_service};
/// use shutdown_core::{Shutdown, ShutdownConfig};
/// use tower_layer::Layer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let shutdown = Shutdown::new(ShutdownConfig::from_env()?);
/// shutdown_signal::install(&shutdown)?;
/// let (_reporter, health) = health_service(&shutdown);
/// let routes = tonic::service::Routes::new(health);
/// let app = DrainLayer::new(shutdown.clone()).layer(routes);
/// let config = ServeConfig::new()
///     .timeout(Duration::from_secs(10))
///     .http2_keepalive_interval(Some(Duration::from_secs(30)));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
/// let report = drain_tonic::serve_with(listener, app, &shutdown, config).await?;
/// std::process::exit(report.exit_code());
/// # }
/// ```
///
/// # Errors
///
/// As [`serve`].
///
/// # Cancel safety
///
/// As [`serve`].
pub async fn serve_with<S, B>(
    listener: TcpListener,
    app: S,
    shutdown: &Shutdown,
    config: ServeConfig,
) -> Result<ShutdownReport, ServeError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (stop, stopped) = oneshot::channel::<()>();
    info!("serving gRPC; the listener stays open until the drain has ended");
    let builder = Connections {
        http2: config.http2(),
        age: config.connection_age(),
    };
    #[cfg(feature = "tls")]
    let tls = config.handshake();
    let goaway = CancellationToken::new();
    let told = goaway.clone();
    // Cancelled when the server stops: every connection is then sent its `GOAWAY`.
    let closing = CancellationToken::new();
    let stopping = closing.clone();
    let connection = move |stream: TcpStream, late: bool| {
        config.set_socket_options(&stream);
        let app = config.layer(app.clone());
        let (builder, goaway, closing) = (builder.clone(), goaway.clone(), closing.clone());
        #[cfg(feature = "tls")]
        let tls = tls.clone();
        async move {
            #[cfg(feature = "tls")]
            if let Some(tls) = tls {
                let stream = tokio::select! {
                    stream = tls.accept(stream) => stream,
                    // No RPC can be open yet: closed as hyper closes an idle connection.
                    () = closing.cancelled() => None,
                };
                let Some(stream) = stream else { return };
                // Its client could not send an RPC before: late, as if accepted now.
                let late = late || goaway.is_cancelled();
                let info = tls::TlsInfo::new(&stream);
                return serve_connection(&builder, stream, app, info, late, goaway, closing).await;
            }
            let info = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: stream.peer_addr().ok(),
            };
            serve_connection(&builder, stream, app, info, late, goaway, closing).await;
        }
    };
    let server = accept_loop(
        listener,
        connection,
        told,
        stopping,
        shutdown.clone(),
        stopped,
    );
    shutdown
        .run_server(server, move || {
            let _ = stop.send(());
        })
        .await
}

/// How every connection is served: hyper's HTTP/2 settings, and its age limits.
#[derive(Clone)]
struct Connections {
    http2: http2::Builder<TokioExecutor>,
    age: ConnectionAge,
}

/// Serves one connection, sent a graceful `GOAWAY` once `goaway` (or `closing`) is
/// cancelled; or, for a connection accepted during the drain (`late`), once its first
/// RPC has reached the server: that RPC is answered `UNAVAILABLE`, and the client opens
/// its next ones on a new connection. (A `GOAWAY` before the first RPC would reach a
/// client that has not sent it yet as a closed connection, without the answer.)
///
/// Apart from the shutdown, a connection older than `max_connection_age` is sent its
/// `GOAWAY` too, and closed `max_connection_age_grace` later if it is still open.
async fn serve_connection<I, S, B, C>(
    connections: &Connections,
    io: I,
    app: S,
    info: C,
    late: bool,
    goaway: CancellationToken,
    closing: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: ConnectInfo,
{
    let goaway = if late {
        CancellationToken::new()
    } else {
        goaway
    };
    let service = TowerToHyperService::new(WithConnectInfo {
        inner: app,
        info,
        first_call: late.then(|| goaway.clone()),
    });
    let mut conn = pin!(
        connections
            .http2
            .serve_connection(TokioIo::new(io), service)
    );
    let ConnectionAge { max, grace } = connections.age;
    // The next age limit: `max`, then `grace` after it.
    let mut age_limit = max.map(|max| Box::pin(sleep(max)));
    let mut aged = false;
    let mut told = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            () = goaway.cancelled(), if !told => {}
            () = closing.cancelled(), if !told => {}
            () = until(&mut age_limit), if age_limit.is_some() => {
                if aged {
                    debug!("connection closed: max_connection_age_grace is over");
                    return;
                }
                aged = true;
                age_limit = grace.map(|grace| Box::pin(sleep(grace)));
                if told {
                    continue;
                }
            }
        }
        conn.as_mut().graceful_shutdown();
        told = true;
    };
    if let Err(error) = ended {
        debug!(error = %error, "connection ended with an error");
    }
}

/// When `timer`, if any, fires.
async fn until(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(timer) => timer.await,
        None => std::future::pending().await,
    }
}

/// Accepts until `stopped`, serving each connection with `connection` (as a task of a
/// set dropped at the stop bound; `true` for a connection accepted once `goaway` has
/// been cancelled); cancels `goaway` when the drain begins or at a handoff, and
/// `closing` when it stops accepting.
async fn accept_loop<C, F>(
    listener: TcpListener,
    connection: C,
    goaway: CancellationToken,
    closing: CancellationToken,
    shutdown: Shutdown,
    stopped: oneshot::Receiver<()>,
) -> io::Result<()>
where
    C: Fn(TcpStream, bool) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let mut listener = AcceptUntilHandoff::new(listener, &shutdown);
    // The drain's start, or a handoff (the successor serves new connections).
    let mut leave = pin!(async {
        tokio::select! {
            () = shutdown.draining() => "drain begun",
            () = shutdown.handed_over() => "handed over",
        }
    });
    let mut told = false;
    let mut stopped = pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            why = &mut leave, if !told => {
                told = true;
                goaway.cancel();
                info!(connections = connections.len(), moment = why, "GOAWAY sent to every connection");
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(|listener| listener.accept()) => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, told));
                }
                Err(error) if is_connection_error(&error) => {
                    debug!(error = %error, "a connection failed before it was accepted");
                }
                Err(error) => {
                    warn!(error = %error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    closing.cancel();
    let stop_timeout = shutdown.config().server_stop_timeout();
    let closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(stop_timeout, closed).await.is_err() {
        warn!(
            connections = connections.len(),
            "connections still open at the stop timeout are dropped"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// What a connection adds to each of its requests.
trait ConnectInfo: Clone + Send + Sync + 'static {
    fn insert_into(&self, extensions: &mut http::Extensions);
}

impl ConnectInfo for TcpConnectInfo {
    fn insert_into(&self, extensions: &mut http::Extensions) {
        extensions.insert(self.clone());
    }
}

/// Adds the connection's info (tonic's [`TcpConnectInfo`], or its `TlsConnectInfo`) to
/// each request, as tonic's server does; tells a late connection's task that its first
/// RPC has arrived.
#[derive(Clone)]
struct WithConnectInfo<S, C> {
    inner: S,
    info: C,
    /// For a connection accepted during the drain: cancelled by its first RPC.
    first_call: Option<CancellationToken>,
}

impl<S, C, B> Service<Request<B>> for WithConnectInfo<S, C>
where
    S: Service<Request<B>>,
    C: ConnectInfo,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.info.insert_into(request.extensions_mut());
        if let Some(first_call) = &self.first_call {
            first_call.cancel();
        }
        self.inner.call(request)
    }
}

/// Errors of one connection, which the next `accept` does not repeat.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
