//! [`HandoffAcceptor`]: an acceptor that stops accepting the moment a successor takes
//! over.

use std::fmt;
use std::io;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use shutdown_core::{AcceptUntilHandoff, Shutdown};

/// Wraps an acceptor for an in-place restart (`shutdown-handoff`): at a handoff
/// ([`Shutdown::handed_over`]) it stops accepting at once, so that the successor, which
/// shares the socket, accepts every new connection; the connections already open are served through the handoff grace
/// and closed by the server's stop. For any other trigger it changes nothing.
///
/// [`serve`](crate::serve) wraps its acceptor in one; wrap yours when you build the
/// [`Server`](poem::Server) for [`serve_server`](crate::serve_server).
pub struct HandoffAcceptor<A> {
    inner: AcceptUntilHandoff<A>,
    local_addr: Vec<LocalAddr>,
}

impl<A: Acceptor> HandoffAcceptor<A> {
    /// `acceptor`, closed at a handoff of `shutdown`.
    pub fn new(acceptor: A, shutdown: &Shutdown) -> Self {
        Self {
            local_addr: acceptor.local_addr(),
            inner: AcceptUntilHandoff::new(acceptor, shutdown),
        }
    }
}

impl<A: Acceptor> Acceptor for HandoffAcceptor<A> {
    type Io = A::Io;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local_addr.clone()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        self.inner.accept(A::accept).await
    }
}

impl<A> fmt::Debug for HandoffAcceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffAcceptor")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
