//! The HTTP the xtasks speak to 127.0.0.1: a `GET` on a new connection, and the
//! response to a request on a keep-alive connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One `GET` on a new connection (`Connection: close`), read to its end, each socket
/// operation bounded by `timeout`: the status code and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: loopback\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no complete response head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "GET {path}: no status line in {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    Ok((status, body.to_owned()))
}

/// Reads one response with a `Content-Length` body: its status, and whether the
/// server closes the connection after it.
pub fn read_response(reader: &mut BufReader<TcpStream>) -> Result<(u16, bool), String> {
    let mut line = String::new();
    let mut status = None;
    let mut length = 0usize;
    let mut closing = false;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the response: {e}"))?;
        if read == 0 {
            return Err("the connection closed before a whole response".into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if status.is_none() {
            status = trimmed
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok());
        } else if let Some((name, value)) = trimmed.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| "a bad content-length".to_owned())?;
            } else if name.eq_ignore_ascii_case("connection") {
                closing = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok((status.ok_or("no status line")?, closing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-connection server on 127.0.0.1 that reads the request head and answers
    /// `answer`; its address.
    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = stream.write_all(answer.as_bytes());
        });
        addr
    }

    #[test]
    fn status_and_body_are_read_to_the_end() {
        let addr = serve_once("HTTP/1.1 503 Service Unavailable\r\nretry-after: 10\r\n\r\nlater\n");
        assert_eq!(
            get(addr, "/", Duration::from_secs(5)),
            Ok((503, "later\n".to_owned()))
        );
    }

    #[test]
    fn keep_alive_responses_are_read_one_at_a_time() {
        let addr = serve_once(
            "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 503 Service Unavailable\r\nConnection: close\r\ncontent-length: 5\r\n\r\nlater",
        );
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .expect("request");
        let mut reader = BufReader::new(stream);
        assert_eq!(read_response(&mut reader), Ok((202, false)));
        assert_eq!(read_response(&mut reader), Ok((503, true)));
        let error = read_response(&mut reader).expect_err("nothing more");
        assert!(error.contains("closed"), "{error}");
    }

    #[test]
    fn a_connection_closed_without_an_answer_is_an_error() {
        let addr = serve_once("");
        let error = get(addr, "/x", Duration::from_secs(5)).expect_err("no response");
        assert!(error.contains("GET /x"), "{error}");
    }
}
