//! [`HandoffAcceptor`]: an acceptor that stops accepting the moment a successor takes
//! over.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use shutdown_core::Shutdown;
use tracing::info;

/// Wraps an acceptor for an in-place restart (`shutdown-handoff`): at a handoff
/// ([`Shutdown::handed_over`]) it stops accepting at once and closes this process's
/// copy of the socket, so that the successor, which shares the socket, accepts every
/// new connection; the connections already open are served through the handoff grace
/// and closed by the server's stop. For any other trigger it changes nothing.
///
/// [`serve`](crate::serve) wraps its acceptor in one; wrap yours when you build the
/// [`Server`](poem::Server) for [`serve_server`](crate::serve_server).
pub struct HandoffAcceptor<A> {
    inner: Option<A>,
    local_addr: Vec<LocalAddr>,
    handed_over: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<A: Acceptor> HandoffAcceptor<A> {
    /// `acceptor`, closed at a handoff of `shutdown`.
    pub fn new(acceptor: A, shutdown: &Shutdown) -> Self {
        let shutdown = shutdown.clone();
        Self {
            local_addr: acceptor.local_addr(),
            inner: Some(acceptor),
            handed_over: Box::pin(async move { shutdown.handed_over().await }),
        }
    }
}

impl<A: Acceptor> Acceptor for HandoffAcceptor<A> {
    type Io = A::Io;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local_addr.clone()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
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
}

impl<A> fmt::Debug for HandoffAcceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffAcceptor")
            .field("accepting", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}
