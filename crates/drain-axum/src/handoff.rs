//! [`HandoffListener`]: a listener that stops accepting the moment a successor takes
//! over.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;

use axum::serve::Listener;
use shutdown_core::Shutdown;
use tracing::info;

/// Wraps a listener for an in-place restart (`shutdown-handoff`): at a handoff
/// ([`Shutdown::handed_over`]) it stops accepting at once and closes this process's
/// copy of the socket, so that the successor, which shares the socket, accepts every
/// new connection; the connections already open are served through the handoff grace
/// and closed by the server's stop. For any other trigger it changes nothing (the
/// listener stays open through the drain).
///
/// [`serve`](crate::serve) it like the listener it wraps. A `make_service` with
/// `ConnectInfo` needs `C: Connected<IncomingStream<'_, HandoffListener<L>>>`: axum's
/// `SocketAddr` implementation covers a bare `TcpListener` only, so read the peer
/// address another way (`ListenerExt::tap_io` on the inner listener) where it matters.
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
    inner: Option<L>,
    handed_over: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<L> HandoffListener<L> {
    /// `listener`, closed at a handoff of `shutdown`.
    pub fn new(listener: L, shutdown: &Shutdown) -> Self {
        let shutdown = shutdown.clone();
        Self {
            inner: Some(listener),
            handed_over: Box::pin(async move { shutdown.handed_over().await }),
        }
    }
}

impl<L: Listener> Listener for HandoffListener<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        if let Some(inner) = self.inner.as_mut() {
            tokio::select! {
                biased;
                () = &mut self.handed_over => {}
                accepted = inner.accept() => return accepted,
            }
            self.inner = None;
            info!("handed over: no longer accepting (the successor does)");
        }
        std::future::pending().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.inner {
            Some(inner) => inner.local_addr(),
            None => Err(io::Error::other("handed over: the listener is closed")),
        }
    }
}

impl<L> fmt::Debug for HandoffListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffListener")
            .field("accepting", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}
