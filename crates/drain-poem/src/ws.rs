//! WebSocket sessions under the drain: [`WebSocketUpgrade`] counts the session in flight
//! from the handshake until it is closed, and the drain closes it with `1001` Going
//! Away (see [`shutdown_core::websocket::WebSocket`]).
//!
//! Without it, a poem WebSocket leaves the drain's accounting at the `101`: the session
//! runs on a task of its own, and the drain middleware's guard is released with the
//! empty body of the `101`, so a drain ends, and the process exits, under an open
//! session.
//!
//! ```
//! use drain_poem::ws::WebSocketUpgrade;
//! use poem::web::websocket::Message;
//! use poem::{EndpointExt, IntoResponse, Route, get, handler};
//! use shutdown_core::Shutdown;
//!
//! #[handler]
//! fn echo(upgrade: WebSocketUpgrade) -> impl IntoResponse {
//!     upgrade.on_upgrade(|mut socket| async move {
//!         // `recv` returns `None` once the drain has closed the session.
//!         while let Some(Ok(message)) = socket.recv().await {
//!             if let Message::Text(text) = message {
//!                 if socket.send(Message::Text(text)).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         }
//!     })
//! }
//!
//! let shutdown = Shutdown::default();
//! let app = Route::new().at("/ws", get(echo)).data(shutdown);
//! ```

use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use drain_tower::mapping;
use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{self, CloseCode, Message, WebSocketStream};
use poem::{Body, FromRequest, IntoResponse, Request, RequestBody};
use shutdown_core::websocket::{Connection, GOING_AWAY, GOING_AWAY_REASON, Handshake};

use crate::drain::plain_response;
use crate::long_lived::shutdown_of;

/// A WebSocket session under the drain: poem's stream, counted in flight until it is
/// dropped and closed by the drain. `recv` and `send` are the session's (they close it
/// once the drain has begun); the rest of poem's stream is reached through `Deref`.
pub type WebSocket = shutdown_core::websocket::WebSocket<Socket>;

/// poem's [`WebSocketStream`], as the drain drives it. Dereferences to it.
pub struct Socket(WebSocketStream);

impl Socket {
    /// Unwraps poem's stream.
    pub fn into_inner(self) -> WebSocketStream {
        self.0
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").finish_non_exhaustive()
    }
}

impl Deref for Socket {
    type Target = WebSocketStream;

    fn deref(&self) -> &WebSocketStream {
        &self.0
    }
}

impl DerefMut for Socket {
    fn deref_mut(&mut self) -> &mut WebSocketStream {
        &mut self.0
    }
}

impl Connection for Socket {
    type Message = Message;
    type Error = io::Error;
    type SendError = io::Error;

    fn recv(&mut self) -> impl Future<Output = Option<io::Result<Message>>> {
        self.0.next()
    }

    fn send(&mut self, message: Message) -> impl Future<Output = io::Result<()>> {
        self.0.send(message)
    }

    fn send_going_away(&mut self) -> impl Future<Output = io::Result<()>> {
        self.0.send(Message::close_with(
            CloseCode::from(GOING_AWAY),
            GOING_AWAY_REASON,
        ))
    }

    fn is_close(message: &Message) -> bool {
        message.is_close()
    }
}

/// Extracts a WebSocket upgrade whose session counts as in flight: poem's
/// [`websocket::WebSocket`], plus a guard taken from the [`Shutdown`](shutdown_core::Shutdown)
/// in the request's data while the upgrade request is still admitted.
///
/// When the drain has begun since the request was admitted, extraction fails with the
/// drain's `503` (`Retry-After`, `Connection: close`), not a `101`.
pub struct WebSocketUpgrade(Handshake<websocket::WebSocket>);

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WebSocketUpgrade").field(&self.0).finish()
    }
}

impl WebSocketUpgrade {
    /// Answers `101` and runs `callback` with the session once the connection is
    /// upgraded. The session counts as in flight until `callback`'s future ends (and
    /// drops it); an upgrade that fails releases it at once.
    #[must_use]
    pub fn on_upgrade<C, Fut>(self, callback: C) -> impl IntoResponse
    where
        C: FnOnce(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (upgrade, session) = self.0.into_parts();
        upgrade.on_upgrade(move |stream| callback(session.start(Socket(stream))))
    }

    /// Configures poem's upgrade (protocols, `WebSocketConfig`).
    #[must_use]
    pub fn map(self, configure: impl FnOnce(websocket::WebSocket) -> websocket::WebSocket) -> Self {
        Self(self.0.map(configure))
    }
}

impl<'a> FromRequest<'a> for WebSocketUpgrade {
    async fn from_request(request: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let upgrade = websocket::WebSocket::from_request(request, body).await?;
        let shutdown = shutdown_of(request)?;
        match shutdown.admit_websocket(upgrade, mapping::protocol(request.version())) {
            Ok(handshake) => Ok(Self(handshake)),
            Err(rejection) => {
                let plain = rejection.response();
                let body = Body::from_bytes(Bytes::from_static(plain.body().as_bytes()));
                Err(poem::Error::from_response(plain_response(&plain, body)))
            }
        }
    }
}
