//! gRPC-web over HTTP/1.1 (tonic's `Server` with `accept_http1`, `DrainLayer` around its
//! routes) during the drain, on 127.0.0.1: the connection closes after a rejected RPC's
//! answer, so the layer reads the RPC's body first, as it does for the HTTP `503`.
//! Every wait is bounded.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use drain_tonic::DrainLayer;
use shutdown_core::{RequestGate, Shutdown, ShutdownConfig};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

const BOUND: Duration = Duration::from_secs(10);
/// More than the sockets' buffers on both sides hold: the client can send it all only
/// if the server reads it.
const BODY: usize = 8 * 1024 * 1024;

/// Sends a gRPC-web RPC with a `BODY`-byte body over HTTP/1.1, then reads the answer to
/// the end. `Err` when the connection fails first (reset while the body was sent, say).
fn post_grpc_web(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(BOUND))?;
    stream.set_write_timeout(Some(BOUND))?;
    write!(
        stream,
        "POST /helloworld.Greeter/SayHello HTTP/1.1\r\nhost: test\r\n\
         content-type: application/grpc-web\r\ncontent-length: {BODY}\r\n\r\n"
    )?;
    let chunk = [0_u8; 64 * 1024];
    for _ in 0..BODY / chunk.len() {
        stream.write_all(&chunk)?;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_rpc_rejected_while_its_body_arrives_gets_its_whole_answer() {
    let shutdown = Shutdown::new(ShutdownConfig::new().with_pre_stop_delay(Duration::ZERO));
    let gate = RequestGate::new(shutdown.clone()).with_discard_limit(2 * BODY as u64);
    let (_reporter, health) = drain_tonic::health_service(&shutdown);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(
        Server::builder()
            .accept_http1(true)
            .layer(DrainLayer::from_gate(gate))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    shutdown.request_shutdown("test");
    // Nothing in flight: the drain begins and ends at once, and RPCs are rejected from
    // then on.
    tokio::time::timeout(BOUND, shutdown.drain())
        .await
        .expect("the drain ends");

    let answer = tokio::task::spawn_blocking(move || post_grpc_web(addr))
        .await
        .expect("the client thread")
        .expect("the whole body is sent and the answer read: the server read the body");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("grpc-status: 14\r\n"),
        "UNAVAILABLE: {answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert_eq!(shutdown.rejected(), 1);
    server.abort();
}
