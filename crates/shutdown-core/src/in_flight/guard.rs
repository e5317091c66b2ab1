//! [`RequestGuard`]: what a request holds while it is in flight.

use std::fmt;

use super::owner::RequestHold;

/// Proof that a request is in flight, from [`Shutdown::try_enter`](crate::Shutdown::try_enter).
///
/// The request counts as in flight until the guard is dropped, and is released exactly
/// once: when the handler returns, panics (the guard is dropped while unwinding), or is
/// cancelled because the client went away (its future, and the guard in it, is
/// dropped). Keep the guard inside the response body when the body streams, so that the
/// drain waits for the last byte.
///
/// The guard is `'static`, `Send` and `Sync`, and may outlive every
/// [`Shutdown`](crate::Shutdown) handle. It holds the request tracker through the count
/// of requests itself, so it costs no reference count of its own: one compare-exchange
/// when taken, one when dropped. Its drop never unwinds.
#[must_use = "the request counts as in flight only while the guard is alive"]
pub struct RequestGuard {
    hold: RequestHold,
}

impl RequestGuard {
    #[inline]
    pub(super) fn new(hold: RequestHold) -> Self {
        Self { hold }
    }

    /// `true` once the shutdown has been triggered (readiness has turned false): for
    /// example to ask an HTTP/1.1 client, when the response is ready, to reconnect
    /// elsewhere.
    #[inline]
    pub fn is_shutting_down(&self) -> bool {
        self.hold.tracker().is_shutting_down()
    }
}

impl fmt::Debug for RequestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestGuard").finish_non_exhaustive()
    }
}
