//! [`WebSocket`]: a WebSocket session that counts as in flight until it is closed, and
//! that the drain closes: Close `1001` (Going Away), a bounded wait for the peer's
//! Close, then the end of the session.
//!
//! The rule is written once, here, over a [`Connection`]: each adapter implements it
//! for its framework's socket (axum's `extract::ws`, poem's `web::websocket`,
//! `actix-ws`) and hands handlers a `WebSocket<its connection>`.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::drain_signal::DrainSignal;
use crate::gate::{Protocol, Rejection};
use crate::{RequestGuard, Shutdown};

/// The close code the drain sends: `1001` Going Away ("a server going down").
pub const GOING_AWAY: u16 = 1001;

/// The reason the drain's Close frame carries.
pub const GOING_AWAY_REASON: &str = "server shutting down";

/// How long, by default, a session closed by the drain waits for the peer's Close
/// before it ends anyway (see [`WebSocket::with_close_timeout`]).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A framework's WebSocket, as [`WebSocket`] drives it: implemented by each adapter
/// (and by a custom one) for its socket type.
///
/// The futures need not be `Send`; a `WebSocket<C>` future is `Send` when `C`'s are.
/// They must be cancel-safe (dropped before they complete, they lose nothing), as
/// `Stream::next` on a socket is.
pub trait Connection {
    /// A message (a frame of any kind).
    type Message;
    /// What receiving fails with.
    type Error;
    /// What sending fails with.
    type SendError;

    /// The next message, or `None` once the connection is closed.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Self::Message, Self::Error>>>;

    /// Sends a message.
    fn send(&mut self, message: Self::Message)
    -> impl Future<Output = Result<(), Self::SendError>>;

    /// Sends a Close frame with [`GOING_AWAY`] and [`GOING_AWAY_REASON`].
    fn send_going_away(&mut self) -> impl Future<Output = Result<(), Self::SendError>>;

    /// `true` for a Close frame.
    fn is_close(message: &Self::Message) -> bool;
}

/// A WebSocket session under the drain.
///
/// - **Counted in flight** from the handshake until it is dropped: it holds the guard
///   its adapter took while the upgrade request was still admitted (the guard of the
///   `101` response itself is released as soon as its empty body has been sent). Drop
///   it (return from the session's task) to let the drain finish.
/// - **Closed by the drain**: once the drain has begun, [`recv`](Self::recv) (or
///   [`send`](Self::send)) sends a Close frame `1001` Going Away, waits up to
///   [`DEFAULT_CLOSE_TIMEOUT`] (see [`with_close_timeout`](Self::with_close_timeout))
///   for the peer's Close, throwing away what else arrives, and then returns `None`:
///   the session is over and the socket closes when it is dropped. It is counted once
///   in [`DrainSummary::streams_closed_by_drain`](crate::DrainSummary::streams_closed_by_drain).
///   A session that neither receives nor sends is not closed by the drain: select on
///   [`drain_signal`](Self::drain_signal) there.
/// - Before the drain it behaves as the framework's socket: a Close from the peer is
///   returned as a message (the framework answers it), then `None`.
///
/// It dereferences to the adapter's connection, and through it to the framework's
/// socket, for what else the framework offers.
pub struct WebSocket<C> {
    // Declared before the guard: the socket closes before the session leaves the count.
    connection: C,
    signal: DrainSignal,
    close_timeout: Duration,
    closed: bool,
    guard: Option<RequestGuard>,
}

impl<C: Connection> WebSocket<C> {
    /// A session on `connection`, closed when `signal` fires, counted in flight with
    /// `guard` until it is dropped (`None` where the framework's response body already
    /// holds the request's guard for the whole session, as actix-web's does).
    pub fn new(connection: C, signal: DrainSignal, guard: Option<RequestGuard>) -> Self {
        Self {
            connection,
            signal,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            closed: false,
            guard,
        }
    }

    /// Sets how long a session closed by the drain waits for the peer's Close.
    #[must_use]
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The next message; `None` once the session is over: the peer closed it, or the
    /// drain did (Close `1001`, then the peer's Close or the close timeout).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<C::Message, C::Error>> {
        if self.closed {
            return None;
        }
        if !self.signal.is_draining() {
            let drain = self.signal.wait();
            tokio::select! {
                biased;
                () = drain => {}
                message = self.connection.recv() => {
                    self.closed = message.is_none();
                    return message;
                }
            }
        }
        self.close_going_away().await;
        None
    }

    /// Sends `message`. Once the drain has begun, the session is closed first (as in
    /// [`recv`](Self::recv)), and the framework then refuses the message.
    pub async fn send(&mut self, message: C::Message) -> Result<(), C::SendError> {
        if !self.closed && self.signal.is_draining() {
            self.close_going_away().await;
        }
        self.connection.send(message).await
    }

    /// The signal that closes this session: for a session that waits on something else
    /// than its socket.
    pub fn drain_signal(&self) -> &DrainSignal {
        &self.signal
    }

    /// `true` while the session counts as in flight on a guard of its own.
    pub fn holds_guard(&self) -> bool {
        self.guard.is_some()
    }

    async fn close_going_away(&mut self) {
        self.closed = true;
        if self.connection.send_going_away().await.is_err() {
            // The peer is gone already: nothing to close, nothing closed cooperatively.
            return;
        }
        self.signal.stream_closed();
        let connection = &mut self.connection;
        let _ = tokio::time::timeout(self.close_timeout, async {
            while let Some(Ok(message)) = connection.recv().await {
                if C::is_close(&message) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A WebSocket handshake the drain has admitted ([`Shutdown::admit_websocket`]): the
/// framework's upgrade `U`, and what its session needs (its guard, the drain signal).
/// Each adapter's upgrade extractor wraps one.
pub struct Handshake<U> {
    upgrade: U,
    session: Pending,
}

impl<U> Handshake<U> {
    /// Changes the framework's upgrade (protocols, sizes).
    #[must_use]
    pub fn map(self, configure: impl FnOnce(U) -> U) -> Self {
        Self {
            upgrade: configure(self.upgrade),
            session: self.session,
        }
    }

    /// The framework's upgrade, to answer `101` with, and the session to start on its
    /// socket.
    pub fn into_parts(self) -> (U, Pending) {
        (self.upgrade, self.session)
    }
}

impl<U> fmt::Debug for Handshake<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake").finish_non_exhaustive()
    }
}

/// The session of an admitted handshake, before its socket exists: it holds the guard
/// (the session is in flight from the handshake on), and dropping it (an upgrade that
/// failed) releases it.
pub struct Pending {
    guard: RequestGuard,
    signal: DrainSignal,
}

impl Pending {
    /// The session on the upgraded `connection`.
    pub fn start<C: Connection>(self, connection: C) -> WebSocket<C> {
        WebSocket::new(connection, self.signal, Some(self.guard))
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl Shutdown {
    /// Admits a WebSocket handshake whose session outlives its `101` response: takes the
    /// session's guard ([`admit_upgrade`](Self::admit_upgrade)) while the upgrade
    /// request is still admitted, and keeps it with `upgrade`, the framework's own
    /// upgrade. `Err` (the drain's `503`) when the drain has begun since the request was
    /// admitted.
    pub fn admit_websocket<U>(
        &self,
        upgrade: U,
        protocol: Protocol,
    ) -> Result<Handshake<U>, Rejection<'_>> {
        let guard = self.admit_upgrade(protocol)?;
        Ok(Handshake {
            upgrade,
            session: Pending {
                guard,
                signal: self.drain_signal(),
            },
        })
    }
}

impl<C> Deref for WebSocket<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.connection
    }
}

impl<C> DerefMut for WebSocket<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.connection
    }
}

impl<C> fmt::Debug for WebSocket<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("closed", &self.closed)
            .field("close_timeout", &self.close_timeout)
            .field("holds_guard", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::mpsc;

    use super::*;
    use crate::Shutdown;

    #[derive(Debug, Clone, PartialEq)]
    enum Frame {
        Text(&'static str),
        Close(u16),
    }

    /// One end of an in-memory socket; the test holds the peer's channels.
    struct Memory {
        incoming: mpsc::UnboundedReceiver<Frame>,
        sent: Arc<Mutex<Vec<Frame>>>,
    }

    impl Connection for Memory {
        type Message = Frame;
        type Error = ();
        type SendError = &'static str;

        async fn recv(&mut self) -> Option<Result<Frame, ()>> {
            self.incoming.recv().await.map(Ok)
        }

        async fn send(&mut self, message: Frame) -> Result<(), &'static str> {
            let mut sent = self.sent.lock().expect("lock");
            if sent.iter().any(|f| matches!(f, Frame::Close(_))) {
                return Err("send after close");
            }
            sent.push(message);
            Ok(())
        }

        async fn send_going_away(&mut self) -> Result<(), &'static str> {
            self.send(Frame::Close(GOING_AWAY)).await
        }

        fn is_close(message: &Frame) -> bool {
            matches!(message, Frame::Close(_))
        }
    }

    fn session(
        shutdown: &Shutdown,
    ) -> (
        WebSocket<Memory>,
        mpsc::UnboundedSender<Frame>,
        Arc<Mutex<Vec<Frame>>>,
    ) {
        let (tx, incoming) = mpsc::unbounded_channel();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let socket = WebSocket::new(
            Memory {
                incoming,
                sent: Arc::clone(&sent),
            },
            shutdown.drain_signal(),
            shutdown.try_enter(),
        );
        (socket, tx, sent)
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_sends_going_away_and_waits_for_the_peers_close() {
        let shutdown = Shutdown::default();
        let (mut socket, peer, sent) = session(&shutdown);
        peer.send(Frame::Text("hello")).expect("open");
        assert_eq!(socket.recv().await, Some(Ok(Frame::Text("hello"))));
        assert_eq!(shutdown.in_flight(), 1, "the session is in flight");

        let session = tokio::spawn(async move {
            let mut echoed = 0;
            while let Some(Ok(message)) = socket.recv().await {
                echoed += 1;
                let _ = socket.send(message).await;
            }
            (echoed, socket)
        });
        shutdown.request_shutdown("test");
        let drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*sent.lock().expect("lock"), [Frame::Close(GOING_AWAY)]);
        assert!(!session.is_finished(), "waits for the peer's Close");
        peer.send(Frame::Text("late")).expect("open");
        peer.send(Frame::Close(GOING_AWAY)).expect("open");
        let (echoed, socket) = session.await.expect("session");
        assert_eq!(echoed, 0, "nothing is delivered once the close has begun");
        assert_eq!(shutdown.in_flight(), 1, "until the session is dropped");
        drop(socket);
        let summary = drain.await.expect("drain");
        assert_eq!(summary.streams_closed_by_drain, 1);
        assert_eq!((summary.drained(), summary.interrupted), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_given_up_after_the_close_timeout() {
        let shutdown = Shutdown::default();
        let (socket, _peer, sent) = session(&shutdown);
        let mut socket = socket.with_close_timeout(Duration::from_millis(300));
        shutdown.request_shutdown("test");
        let drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain().await }
        });
        let started = tokio::time::Instant::now();
        assert!(socket.recv().await.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(*sent.lock().expect("lock"), [Frame::Close(GOING_AWAY)]);
        assert!(socket.recv().await.is_none(), "stays closed");
        drop(socket);
        assert_eq!(drain.await.expect("drain").interrupted, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sending_once_the_drain_has_begun_closes_the_session_first() {
        let shutdown = Shutdown::default();
        let (mut socket, peer, sent) = session(&shutdown);
        shutdown.request_shutdown("test");
        let _drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain().await }
        });
        tokio::task::yield_now().await;
        peer.send(Frame::Close(GOING_AWAY)).expect("open");
        assert_eq!(
            socket.send(Frame::Text("push")).await,
            Err("send after close")
        );
        assert_eq!(*sent.lock().expect("lock"), [Frame::Close(GOING_AWAY)]);
    }

    #[tokio::test]
    async fn a_close_from_the_peer_is_returned_before_the_drain() {
        let shutdown = Shutdown::default();
        let (mut socket, peer, _sent) = session(&shutdown);
        peer.send(Frame::Close(1000)).expect("open");
        drop(peer);
        assert_eq!(socket.recv().await, Some(Ok(Frame::Close(1000))));
        assert_eq!(socket.recv().await, None);
        assert!(socket.holds_guard());
        drop(socket);
        assert_eq!(shutdown.in_flight(), 0);
    }
}
