//! `serve` out of file descriptors: accepting fails with `EMFILE`, the error is logged
//! (axum's accept loop, with its `tracing` feature), the loop retries, and every waiting
//! client is served once descriptors are free.
//! Alone in its test binary: it lowers the process's descriptor limit and installs the
//! global log subscriber.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use shutdown_core::Shutdown;

const CLIENTS: usize = 8;
const WAIT: Duration = Duration::from_secs(20);

/// Log output, shared with the test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_loop_retries_and_serves_everyone() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let shutdown = Shutdown::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");

    // The clients connect first (the kernel queues them), so that their own sockets
    // exist before the limit is lowered.
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    for client in &mut clients {
        client.set_read_timeout(Some(WAIT)).expect("timeout");
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .expect("write");
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // Room for the runtime's own needs and one accepted connection, not for all.
    setrlimit(Resource::RLIMIT_NOFILE, open_descriptors() + 1, hard).expect("setrlimit");

    let app = drain_axum::drained(Router::new().route("/", get(|| async { "ok" })), &shutdown);
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { drain_axum::serve(listener, app, &shutdown).await }
    });
    tokio::time::timeout(WAIT, async {
        while !logs.text().contains("accept error") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("accepting fails with the limit lowered, and says so");
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restore the limit");

    let answers = tokio::task::spawn_blocking(move || {
        clients
            .into_iter()
            .map(|mut client| {
                let mut answer = String::new();
                client.read_to_string(&mut answer).map(|_| answer)
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("client thread");
    for answer in answers {
        let answer = answer.expect("every client gets an answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }

    shutdown.request_shutdown("test");
    let report = support::served(server, WAIT).await;
    assert_eq!(report.exit_code(), 0);
    assert!(
        logs.text().contains("Too many open files") || logs.text().contains("EMFILE"),
        "the error names the cause: {}",
        logs.text()
    );
}
