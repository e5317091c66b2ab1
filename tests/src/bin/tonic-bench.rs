//! `cargo xtask bench`'s gRPC figures (release build), printed as markdown on stdout:
//!
//! - per-RPC cost: unary `SayHello` RPCs from tonic's client (32 at a time over two
//!   connections) against the same `Greeter` served four ways: tonic's `Server`
//!   (`serve_with_incoming`), tonic's `Server` with `serve_with_incoming_shutdown`
//!   (its graceful shutdown, armed), tonic's `Server` with drain-tonic's `DrainLayer`,
//!   and `drain_tonic::serve` with `DrainLayer`. The server runs on one tokio worker
//!   and the client on another; modes alternate in rotating order over [`ROUNDS`]
//!   rounds and the median throughput of each is reported, with ratios.
//! - time to exit with an open server stream: tonic's `serve_with_incoming_shutdown`
//!   (bounded at [`EXIT_BOUND`]: it never returns while the stream is open), and
//!   `drain_tonic::serve` with a stream that ends at the drain, and with a client that
//!   never reads (the drain deadline, 1 s, then the stop bound, 1 s).
//!
//! Everything runs on 127.0.0.1, is bounded in time, and stops by itself. Nothing is
//! asserted: the figures are reported.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use drain_tonic::DrainLayer;
use hello_tonic::MyGreeter;
use hello_tonic::pb::HelloRequest;
use hello_tonic::pb::greeter_client::GreeterClient;
use shutdown_core::{Shutdown, ShutdownConfig};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tower_layer::Layer;

/// Rounds of the rotation: each mode runs once per round.
const ROUNDS: usize = 5;
const WARM_UP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
const CONCURRENCY: usize = 32;
const CONNECTIONS: usize = 2;
/// How long the exit of a server is waited for.
const EXIT_BOUND: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tonic,
    TonicShutdown,
    TonicDrainLayer,
    DrainTonic,
}

const MODES: [Mode; 4] = [
    Mode::Tonic,
    Mode::TonicShutdown,
    Mode::TonicDrainLayer,
    Mode::DrainTonic,
];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Tonic => "tonic `Server::serve_with_incoming`",
            Mode::TonicShutdown => "tonic `Server::serve_with_incoming_shutdown`",
            Mode::TonicDrainLayer => "tonic `Server` + `DrainLayer`",
            Mode::DrainTonic => "`drain_tonic::serve` + `DrainLayer`",
        }
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|error| fail(&format!("runtime: {error}")))
}

fn fail(message: &str) -> ! {
    eprintln!("tonic-bench: {message}");
    std::process::exit(1);
}

/// Starts the greeter served the `mode` way; returns its address.
async fn start(mode: Mode, shutdown: Shutdown) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| fail(&format!("bind: {error}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| fail(&format!("local address: {error}")));
    let greeter = MyGreeter::new(shutdown.clone()).into_server();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    match mode {
        Mode::Tonic => {
            tokio::spawn(
                Server::builder()
                    .add_service(greeter)
                    .serve_with_incoming(incoming),
            );
        }
        Mode::TonicShutdown => {
            tokio::spawn(
                Server::builder()
                    .add_service(greeter)
                    .serve_with_incoming_shutdown(incoming, std::future::pending()),
            );
        }
        Mode::TonicDrainLayer => {
            tokio::spawn(
                Server::builder()
                    .layer(DrainLayer::new(shutdown))
                    .add_service(greeter)
                    .serve_with_incoming(incoming),
            );
        }
        Mode::DrainTonic => unreachable!("started by start_drain_tonic"),
    }
    addr
}

/// `drain_tonic::serve` on a new listener; returns its address and the serve future's
/// handle.
async fn start_drain_tonic(
    shutdown: Shutdown,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<Result<shutdown_core::ShutdownReport, shutdown_core::ServeError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| fail(&format!("bind: {error}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| fail(&format!("local address: {error}")));
    let routes = Routes::new(MyGreeter::new(shutdown.clone()).into_server()).prepare();
    let app = DrainLayer::new(shutdown.clone()).layer(routes);
    let served = tokio::spawn(async move { drain_tonic::serve(listener, app, &shutdown).await });
    (addr, served)
}

async fn channel(endpoint: Endpoint) -> Channel {
    endpoint
        .connect_timeout(EXIT_BOUND)
        .connect()
        .await
        .unwrap_or_else(|error| fail(&format!("connect: {error}")))
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|error| fail(&format!("endpoint: {error}")))
}

/// Unary RPCs completed in `duration` by [`CONCURRENCY`] callers.
async fn load(addr: SocketAddr, duration: Duration) -> u64 {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(channel(endpoint(addr)).await);
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + duration;
    let mut callers = Vec::new();
    for i in 0..CONCURRENCY {
        let mut client = GreeterClient::new(channels[i % CONNECTIONS].clone());
        let done = Arc::clone(&done);
        callers.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let request = HelloRequest {
                    name: "bench".to_owned(),
                };
                match tokio::time::timeout(EXIT_BOUND, client.say_hello(request)).await {
                    Ok(Ok(_)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => fail(&format!("RPC failed: {other:?}")),
                }
            }
        }));
    }
    for caller in callers {
        let _ = caller.await;
    }
    done.load(Ordering::Relaxed)
}

/// RPCs per second of `mode`, one run.
fn throughput(mode: Mode) -> f64 {
    let server = runtime(1);
    let client = runtime(1);
    let shutdown = Shutdown::new(ShutdownConfig::new());
    let addr = server.block_on(async {
        if mode == Mode::DrainTonic {
            start_drain_tonic(shutdown.clone()).await.0
        } else {
            start(mode, shutdown.clone()).await
        }
    });
    client.block_on(load(addr, WARM_UP));
    let started = Instant::now();
    let done = client.block_on(load(addr, MEASURE));
    let rate = done as f64 / started.elapsed().as_secs_f64();
    client.shutdown_timeout(Duration::from_secs(1));
    server.shutdown_timeout(Duration::from_secs(1));
    rate
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Opens a `SayHelloStream` and reads it on a task until it ends; returns once the
/// first reply has arrived.
async fn open_stream(addr: SocketAddr) {
    let mut client = GreeterClient::new(channel(endpoint(addr)).await);
    let mut stream = client
        .say_hello_stream(HelloRequest {
            name: "open".to_owned(),
        })
        .await
        .unwrap_or_else(|status| fail(&format!("stream: {status:?}")))
        .into_inner();
    let _ = stream.message().await;
    tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
}

/// How long `serve` takes to return after `stop`, or `None` past [`EXIT_BOUND`].
async fn exit_time(served: impl Future<Output = ()>, stop: impl FnOnce()) -> Option<Duration> {
    let started = Instant::now();
    stop();
    tokio::time::timeout(EXIT_BOUND, served)
        .await
        .ok()
        .map(|()| started.elapsed())
}

fn shown(time: Option<Duration>) -> String {
    match time {
        Some(time) => format!("{:.1} ms", time.as_secs_f64() * 1e3),
        None => format!("did not exit within {} s (never)", EXIT_BOUND.as_secs()),
    }
}

fn exit_times() -> [(String, String); 3] {
    let rt = runtime(2);
    rt.block_on(async {
        // tonic's graceful shutdown, with a stream open.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| fail(&format!("bind: {error}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| fail(&format!("local address: {error}")));
        let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
        let greeter = MyGreeter::new(Shutdown::default()).into_server();
        let tonic = tokio::spawn(
            Server::builder()
                .add_service(greeter)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = signalled.await;
                }),
        );
        open_stream(addr).await;
        let tonic_time = exit_time(
            async {
                let _ = tonic.await;
            },
            move || {
                let _ = signal.send(());
            },
        )
        .await;

        // drain-tonic, a stream that ends at the drain.
        let config = ShutdownConfig::new().with_drain_timeout(Duration::from_secs(1));
        let shutdown = Shutdown::new(config.clone());
        let (addr, served) = start_drain_tonic(shutdown.clone()).await;
        open_stream(addr).await;
        let ends = exit_time(
            async {
                let _ = served.await;
            },
            || {
                shutdown.request_shutdown("bench");
            },
        )
        .await;

        // drain-tonic, a client that never reads its stream (small window, big replies).
        let shutdown = Shutdown::new(config);
        let (addr, served) = start_drain_tonic(shutdown.clone()).await;
        let channel = channel(
            endpoint(addr)
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(65_535),
        )
        .await;
        let stuck = GreeterClient::new(channel)
            .say_hello_stream(HelloRequest {
                name: "x".repeat(100_000),
            })
            .await
            .unwrap_or_else(|status| fail(&format!("stream: {status:?}")));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let never_reads = exit_time(
            async {
                let _ = served.await;
            },
            || {
                shutdown.request_shutdown("bench");
            },
        )
        .await;
        drop(stuck);
        [
            (
                "tonic `serve_with_incoming_shutdown`, a stream open (read by its client)".to_owned(),
                shown(tonic_time),
            ),
            (
                "`drain_tonic::serve`, the stream ends at the drain (`end_on_drain`)".to_owned(),
                shown(ends),
            ),
            (
                "`drain_tonic::serve`, a client that never reads its stream (`SHUTDOWN_TIMEOUT=1`, stop bound 1 s)".to_owned(),
                shown(never_reads),
            ),
        ]
    })
}

fn main() {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for round in 0..ROUNDS {
        for i in 0..MODES.len() {
            let m = (i + round) % MODES.len();
            let rate = throughput(MODES[m]);
            eprintln!("round {round}: {:?} {rate:.0} RPC/s", MODES[m]);
            rates[m].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let (tonic, tonic_shutdown) = (medians[0], medians[1]);
    println!(
        "## gRPC (drain-tonic): per-RPC cost\n\nUnary `SayHello`, {CONCURRENCY} callers over {CONNECTIONS} connections, server and client on one tokio worker each; median of {ROUNDS} rounds of {} s, modes in rotating order. Time per RPC is the inverse of the throughput.\n",
        MEASURE.as_secs()
    );
    println!(
        "| server | RPC/s | µs per RPC | time to tonic | time to tonic + `serve_with_shutdown` |\n|---|---|---|---|---|"
    );
    for (mode, rate) in MODES.iter().zip(&medians) {
        println!(
            "| {} | {rate:.0} | {:.1} | {:.2}x | {:.2}x |",
            mode.label(),
            1e6 / rate,
            tonic / rate,
            tonic_shutdown / rate
        );
    }
    println!(
        "\n## gRPC (drain-tonic): time to exit with an open stream\n\nFrom the stop (tonic's signal, or the trigger with no pre-stop delay) to the return of `serve`, bounded at {} s.\n",
        EXIT_BOUND.as_secs()
    );
    println!("| server, stream | time to exit |\n|---|---|");
    for (what, time) in exit_times() {
        println!("| {what} | {time} |");
    }
}
