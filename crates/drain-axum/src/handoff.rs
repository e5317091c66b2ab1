//! [`HandoffListener`]: a listener that stops accepting the moment a successor takes
//! over.

use std::fmt;
use std::io;

use axum::serve::Listener;
use shutdown_core::{AcceptUntilHandoff, Shutdown};

/// Wraps a listener for an in-place restart (`shutdown-handoff`): at a handoff
/// ([`Shutdown::handed_over`]) it stops accepting at once, so that the successor, which
/// shares the socket, accepts every new connection; the connections already open are served through the handoff grace
/// and closed by the server's stop. For any other trigger it changes nothing (the
/// listener stays open through the drain).
///
/// [`serve`](crate::serve) it like the listener it wraps. For handlers that read
/// `ConnectInfo<SocketAddr>`, add axum's `ListenerExt::tap_io` with a closure that does
/// nothing: axum gives `ConnectInfo` the peer address of any tapped listener, while its
/// implementation for an untapped one covers a bare `TcpListener` only (and the orphan
/// rule keeps this crate from adding one):
///
/// ```no_run
/// # use std::net::SocketAddr;
/// # use axum::extract::ConnectInfo;
/// # use axum::routing::get;
/// use axum::serve::ListenerExt;
///
/// # async fn run(shutdown: shutdown_core::Shutdown) -> Result<(), Box<dyn std::error::Error>> {
/// let app = axum::Router::new().route(
///     "/peer",
///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
/// );
/// let app = drain_axum::drained(app, &shutdown).into_make_service_with_connect_info::<SocketAddr>();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let listener = drain_axum::HandoffListener::new(listener, &shutdown).tap_io(|_| ());
/// let report = drain_axum::serve(listener, app, &shutdown).await?;
/// # Ok(()) }
/// ```
///
/// Without `ConnectInfo`:
///
/// ```no_run
/// # async fn run(shutdown: shutdown_core::Shutdown) -> Result<(), Box<dyn std::error::Error>> {
/// let app = drain_axum::drained(axum::Router::new(), &shutdown);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let listener = drain_axum::HandoffListener::new(listener, &shutdown);
/// let report = drain_axum::serve(listener, app, &shutdown).await?;
/// # Ok(()) }
/// ```
pub struct HandoffListener<L> {
    inner: AcceptUntilHandoff<L>,
}

impl<L> HandoffListener<L> {
    /// `listener`, closed at a handoff of `shutdown`.
    pub fn new(listener: L, shutdown: &Shutdown) -> Self {
        Self {
            inner: AcceptUntilHandoff::new(listener, shutdown),
        }
    }
}

impl<L: Listener> Listener for HandoffListener<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.inner.accept(L::accept).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.get_ref().local_addr()
    }
}

impl<L> fmt::Debug for HandoffListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffListener")
            .field("inner", &self.inner)
            .finish()
    }
}
