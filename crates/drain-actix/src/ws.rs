//! WebSocket sessions under the drain, on [`actix-ws`](actix_ws): [`handle`] answers the
//! handshake and gives a session that the drain closes with `1001` Going Away (see
//! [`shutdown_core::websocket::WebSocket`]).
//!
//! In actix-web a WebSocket's frames are the body of its `101` response, so the drain
//! middleware's guard, kept in that body, already counts the session in flight until
//! it ends: the session holds no guard of its own. What the drain adds is the close:
//! without it an open session holds the drain until its deadline and is then cut.
//!
//! ```
//! use actix_web::{App, HttpRequest, HttpResponse, web};
//! use shutdown_core::Shutdown;
//!
//! async fn echo(request: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
//!     let (response, mut socket) = drain_actix::ws::handle(&request, body)?;
//!     actix_web::rt::spawn(async move {
//!         // `recv` returns `None` once the drain has closed the session.
//!         while let Some(Ok(message)) = socket.recv().await {
//!             if let drain_actix::ws::Message::Text(text) = message {
//!                 if socket.session().text(text).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//!
//! let shutdown = Shutdown::default();
//! let app = App::new().app_data(shutdown).route("/ws", web::get().to(echo));
//! ```

use std::future::Future;

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
/// actix-ws's types, as the sessions of this module use them.
pub use actix_ws::{
    CloseCode, CloseReason, Closed, Message, MessageStream, ProtocolError, Session,
};
use shutdown_core::websocket::{Connection, GOING_AWAY_REASON};

use crate::long_lived::shutdown_of;
use crate::mapping;

/// A WebSocket session under the drain: actix-ws's session and message stream, closed
/// by the drain. `recv` and `send` are the session's (they close it once the drain has
/// begun); [`Socket::session`] sends the rest as actix-ws does.
pub type WebSocket = shutdown_core::websocket::WebSocket<Socket>;

/// actix-ws's [`Session`] and [`MessageStream`], as the drain drives them.
pub struct Socket {
    session: Session,
    stream: MessageStream,
}

impl Socket {
    /// The session, to send text, binary, pings and pongs.
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The session and the stream.
    pub fn into_inner(self) -> (Session, MessageStream) {
        (self.session, self.stream)
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").finish_non_exhaustive()
    }
}

impl Connection for Socket {
    type Message = Message;
    type Error = ProtocolError;
    type SendError = Closed;

    fn recv(&mut self) -> impl Future<Output = Option<Result<Message, ProtocolError>>> {
        self.stream.recv()
    }

    async fn send(&mut self, message: Message) -> Result<(), Closed> {
        match message {
            Message::Text(text) => self.session.text(text).await,
            Message::Binary(bytes) => self.session.binary(bytes).await,
            Message::Ping(bytes) => self.session.ping(&bytes).await,
            Message::Pong(bytes) => self.session.pong(&bytes).await,
            Message::Continuation(item) => self.session.continuation(item).await,
            Message::Close(reason) => self.session.clone().close(reason).await,
            Message::Nop => Ok(()),
        }
    }

    fn send_going_away(&mut self) -> impl Future<Output = Result<(), Closed>> {
        self.session.clone().close(Some(CloseReason {
            code: CloseCode::Away,
            description: Some(GOING_AWAY_REASON.to_owned()),
        }))
    }

    fn is_close(message: &Message) -> bool {
        matches!(message, Message::Close(_))
    }
}

/// Answers a WebSocket handshake with actix-ws ([`actix_ws::handle`]) and returns the
/// `101` response and the session, which the drain closes with `1001` Going Away.
/// Spawn the session's task (`actix_web::rt::spawn`) and return the response.
///
/// The [`Shutdown`](shutdown_core::Shutdown) comes from the application's data
/// (`App::app_data(shutdown.clone())`). When the drain has begun since the request was
/// admitted, the handshake is answered with the drain's `503` (`Retry-After`,
/// `Connection: close`) rather than a `101`.
///
/// # Errors
///
/// actix-ws's handshake error (not a WebSocket request); the `503` of the drain; a
/// `500` when the application's data has no `Shutdown`.
pub fn handle(
    request: &HttpRequest,
    body: Payload,
) -> Result<(HttpResponse, WebSocket), actix_web::Error> {
    let shutdown = shutdown_of(request)?;
    // The response body counts the session; this only asks the policy.
    if let Err(rejection) = shutdown.admit_upgrade(mapping::protocol(request.version())) {
        let plain = rejection.response();
        let response = mapping::response(&plain, plain.body()).map_into_boxed_body();
        return Err(actix_web::error::InternalError::from_response(plain.body(), response).into());
    }
    let signal = shutdown.drain_signal();
    let (response, session, stream) = actix_ws::handle(request, body)?;
    let socket = WebSocket::new(Socket { session, stream }, signal, None);
    Ok((response, socket))
}
