//! Blocking clients of long-lived responses for end-to-end tests and the benchmark: an
//! SSE client reading the raw HTTP/1.1 stream (events, then the chunked terminator),
//! and a WebSocket client (`tungstenite`). Every read and write is bounded by
//! [`crate::http::IO_TIMEOUT`].

use std::io;
use std::net::{SocketAddr, TcpStream};

use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use crate::http::{Conn, Head, IO_TIMEOUT};

/// One Server-Sent Event, as read from the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (empty for a plain message).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

/// How an SSE stream ended.
#[derive(Debug)]
pub enum SseEnd {
    /// The chunked terminator arrived: a complete response.
    Complete,
    /// The connection closed, failed or was reset before the terminator.
    Cut(io::Error),
}

/// An SSE stream on its own HTTP/1.1 connection.
#[derive(Debug)]
pub struct SseClient {
    conn: Conn,
    head: Head,
    pending: String,
}

impl SseClient {
    /// `GET path` and reads the response head.
    ///
    /// # Errors
    ///
    /// A connection or read error.
    pub fn open(addr: SocketAddr, path: &str) -> io::Result<Self> {
        let mut conn = Conn::open(addr)?;
        conn.send("GET", path, b"")?;
        let head = conn.read_head()?;
        Ok(Self {
            conn,
            head,
            pending: String::new(),
        })
    }

    /// The response head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The next event, or how the stream ended (`Err`). Comments (keep-alives) are
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`SseEnd`]: the terminator, or a cut.
    pub fn next_event(&mut self) -> Result<SseEvent, SseEnd> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Ok(event);
                }
                continue;
            }
            match self.conn.read_chunk() {
                Ok(Some(chunk)) => self.pending.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return Err(SseEnd::Complete),
                Err(error) => return Err(SseEnd::Cut(error)),
            }
        }
    }
}

/// An event from one block of `field: value` lines; `None` for a block of comments.
fn parse_event(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut any = false;
    let mut data = Vec::new();
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "data" => data.push(value.to_owned()),
            "retry" => event.retry = value.parse().ok(),
            _ => continue,
        }
        any = true;
    }
    event.data = data.join("\n");
    any.then_some(event)
}

/// A WebSocket client on its own connection.
#[derive(Debug)]
pub struct WsClient {
    socket: WebSocket<TcpStream>,
}

/// How a WebSocket session ended, seen from the client.
#[derive(Debug)]
pub enum WsEnd {
    /// The server sent a Close frame (`None` without a code), the client answered, and
    /// the connection closed cleanly.
    Closed(Option<(u16, String)>),
    /// The server sent a Close frame, but the connection then failed (reset).
    ClosedThenCut(Option<(u16, String)>, tungstenite::Error),
    /// The connection ended without a Close frame, or failed.
    Cut(tungstenite::Error),
}

impl WsClient {
    /// Opens `ws://addr/path`.
    ///
    /// # Errors
    ///
    /// The handshake's error: `tungstenite::Error::Http(response)` for an answer other
    /// than `101`.
    pub fn open(
        addr: SocketAddr,
        path: &str,
    ) -> Result<(Self, tungstenite::handshake::client::Response), tungstenite::Error> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{addr}{path}");
        match tungstenite::client(url.as_str(), stream) {
            Ok((socket, response)) => Ok((Self { socket }, response)),
            Err(tungstenite::HandshakeError::Failure(error)) => Err(error),
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                Err(tungstenite::Error::Io(io::ErrorKind::WouldBlock.into()))
            }
        }
    }

    /// Sends `text` and reads the next message, which should be its echo.
    ///
    /// # Errors
    ///
    /// A send or read error.
    pub fn echo(&mut self, text: &str) -> Result<Message, tungstenite::Error> {
        self.socket.send(Message::text(text))?;
        self.socket.read()
    }

    /// Reads (throwing messages away) until the session ends, and says how.
    pub fn wait_end(mut self) -> WsEnd {
        let frame = loop {
            match self.socket.read() {
                Ok(Message::Close(frame)) => break frame.map(close_parts),
                Ok(_) => continue,
                Err(error) => return WsEnd::Cut(error),
            }
        };
        // tungstenite has queued its reply: send it, then read until the server closes.
        loop {
            match self.socket.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => return WsEnd::Closed(frame),
                Err(error) => return WsEnd::ClosedThenCut(frame, error),
            }
        }
    }
}

fn close_parts(frame: CloseFrame) -> (u16, String) {
    (u16::from(frame.code), frame.reason.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_field_by_field_and_comments_skipped() {
        assert_eq!(parse_event(":\n\n"), None);
        assert_eq!(
            parse_event("event: shutdown\nretry: 3000\ndata: shutting down\n\n"),
            Some(SseEvent {
                event: "shutdown".into(),
                data: "shutting down".into(),
                retry: Some(3000),
            })
        );
        assert_eq!(
            parse_event("data: a\ndata: b\n\n").map(|e| e.data),
            Some("a\nb".into())
        );
    }
}
