//! WebSocket sessions under the drain: [`WebSocketUpgrade`] counts the session in flight
//! from the handshake until it is closed, and the drain closes it with `1001` Going
//! Away (see [`shutdown_core::websocket::WebSocket`]).
//!
//! Without it, an axum WebSocket leaves the drain's accounting at the `101`: hyper
//! hands the connection over and the drain layer's guard is released with the empty
//! body of the `101`, so a drain ends, and the process exits, under an open session,
//! which is cut with no Close frame.
//!
//! ```
//! use axum::extract::ws::Message;
//! use axum::response::Response;
//! use axum::{Router, routing::get};
//! use drain_axum::ws::WebSocketUpgrade;
//! use shutdown_core::Shutdown;
//!
//! async fn echo(upgrade: WebSocketUpgrade) -> Response {
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
//! let app: Router = Router::new().route("/ws", get(echo)).with_state(shutdown);
//! ```

use std::future::Future;
use std::ops::{Deref, DerefMut};

use axum::body::Body;
use axum::extract::ws::{self, CloseFrame, Message, Utf8Bytes};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use drain_tower::mapping;
use shutdown_core::Shutdown;
use shutdown_core::websocket::{Connection, GOING_AWAY, GOING_AWAY_REASON, Handshake};

/// A WebSocket session under the drain: axum's socket, counted in flight until it is
/// dropped and closed by the drain. `recv` and `send` are the session's (they close it
/// once the drain has begun); the rest of axum's socket is reached through `Deref`.
pub type WebSocket = shutdown_core::websocket::WebSocket<Socket>;

/// axum's [`ws::WebSocket`], as the drain drives it. Dereferences to it.
#[derive(Debug)]
pub struct Socket(ws::WebSocket);

impl Socket {
    /// Unwraps axum's socket.
    pub fn into_inner(self) -> ws::WebSocket {
        self.0
    }
}

impl Deref for Socket {
    type Target = ws::WebSocket;

    fn deref(&self) -> &ws::WebSocket {
        &self.0
    }
}

impl DerefMut for Socket {
    fn deref_mut(&mut self) -> &mut ws::WebSocket {
        &mut self.0
    }
}

impl Connection for Socket {
    type Message = Message;
    type Error = axum::Error;
    type SendError = axum::Error;

    fn recv(&mut self) -> impl Future<Output = Option<Result<Message, axum::Error>>> {
        self.0.recv()
    }

    fn send(&mut self, message: Message) -> impl Future<Output = Result<(), axum::Error>> {
        self.0.send(message)
    }

    fn send_going_away(&mut self) -> impl Future<Output = Result<(), axum::Error>> {
        self.0.send(Message::Close(Some(CloseFrame {
            code: GOING_AWAY,
            reason: Utf8Bytes::from_static(GOING_AWAY_REASON),
        })))
    }

    fn is_close(message: &Message) -> bool {
        matches!(message, Message::Close(_))
    }
}

/// Extracts a WebSocket upgrade whose session counts as in flight: axum's
/// [`ws::WebSocketUpgrade`], plus a guard taken from the [`Shutdown`] of the router's
/// state (`Shutdown: FromRef<S>`) while the upgrade request is still admitted.
///
/// When the drain has begun since the request was admitted, extraction fails with the
/// drain's `503` (`Retry-After`, `Connection: close`), not a `101`. A request that is
/// not a WebSocket upgrade fails with axum's rejection.
#[derive(Debug)]
pub struct WebSocketUpgrade(Handshake<ws::WebSocketUpgrade>);

impl WebSocketUpgrade {
    /// Answers `101` and runs `callback` with the session once the connection is
    /// upgraded. The session counts as in flight until `callback`'s future ends (and
    /// drops it); an upgrade that fails releases it at once.
    #[must_use = "to set up the WebSocket connection, this response must be returned"]
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (upgrade, session) = self.0.into_parts();
        upgrade.on_upgrade(move |socket| callback(session.start(Socket(socket))))
    }

    /// Configures axum's upgrade (protocols, buffer and message sizes).
    #[must_use]
    pub fn map(self, configure: impl FnOnce(ws::WebSocketUpgrade) -> ws::WebSocketUpgrade) -> Self {
        Self(self.0.map(configure))
    }
}

impl<S> FromRequestParts<S> for WebSocketUpgrade
where
    Shutdown: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let upgrade = ws::WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let shutdown = Shutdown::from_ref(state);
        match shutdown.admit_websocket(upgrade, mapping::protocol(parts.version)) {
            Ok(handshake) => Ok(Self(handshake)),
            Err(rejection) => {
                let plain = rejection.response();
                Err(mapping::response(&plain, Body::from(plain.body())))
            }
        }
    }
}
