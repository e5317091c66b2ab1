//! Probe for the actix adapter scenarios: the probe contract of `e2e_tests::scenarios`,
//! served with `drain-actix` (its middleware, health and metrics routes, and `serve`).
//!
//! Configuration comes from the usual `SHUTDOWN_*` variables (a bad one exits with code
//! 2) and `BIND_ADDR` (default `127.0.0.1:0`).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse};
use drain_actix::DrainLayer;
use drain_metrics::{DrainMetrics, PrometheusMetrics};
use futures_util::StreamExt;
use shutdown_core::{Shutdown, ShutdownConfig};

#[actix_web::main]
async fn main() {
    e2e_tests::init_logs();

    let config = ShutdownConfig::from_env().unwrap_or_else(|error| exit(2, error));
    let prometheus = PrometheusMetrics::install().unwrap_or_else(|error| exit(2, error));
    let shutdown = Shutdown::new(config).with_observer(DrainMetrics::new());
    if let Err(error) = shutdown_signal::install(&shutdown) {
        exit(2, error);
    }
    e2e_tests::handoff_on_sighup(&shutdown);

    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener =
        TcpListener::bind(&bind).unwrap_or_else(|error| exit(2, format!("{bind}: {error}")));
    let addr = listener.local_addr().unwrap_or_else(|error| exit(2, error));
    for name in ["first", "second"] {
        shutdown.register_cleanup(name, move || {
            println!("cleanup {name} listener_closed={}", is_closed(addr));
        });
    }

    let drain = DrainLayer::new(shutdown.clone());
    let health = shutdown.clone();
    let factory = move || {
        App::new()
            .wrap(drain.clone())
            .configure(drain_actix::health_routes(health.clone()))
            .configure(drain_actix::metrics_routes(prometheus.clone()))
            .route("/", web::get().to(|| async { "ok" }))
            .route("/slow", web::get().to(slow))
            .route("/stream", web::get().to(stream))
            .route("/upload", web::post().to(upload))
    };

    println!("listening on {addr}");
    let report = drain_actix::serve(listener, factory, &shutdown)
        .await
        .unwrap_or_else(|error| exit(1, error));
    println!("exit_code={}", report.exit_code());
    std::process::exit(report.exit_code());
}

/// Sleeps `ms` milliseconds, ignoring cancellation like a handler stuck on I/O.
async fn slow(request: HttpRequest) -> HttpResponse {
    let Some(ms) = query(&request, "ms") else {
        return HttpResponse::BadRequest().body("ms=<milliseconds> expected");
    };
    println!("slow started");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    HttpResponse::Ok().body("done")
}

/// `chunks` lines, one every `interval_ms`; `chunks=0` never ends.
async fn stream(request: HttpRequest) -> HttpResponse {
    let (Some(chunks), Some(interval)) =
        (query(&request, "chunks"), query(&request, "interval_ms"))
    else {
        return HttpResponse::BadRequest().body("chunks=<n>&interval_ms=<ms> expected");
    };
    let interval = Duration::from_millis(interval);
    let lines = futures_util::stream::unfold(0u64, move |i| async move {
        if chunks != 0 && i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    HttpResponse::Ok()
        .content_type("text/plain")
        .streaming(lines)
}

/// Reads the whole body, whatever its size.
async fn upload(mut body: web::Payload) -> HttpResponse {
    let mut received = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => received += chunk.len(),
            Err(error) => return HttpResponse::BadRequest().body(error.to_string()),
        }
    }
    HttpResponse::Ok().body(format!("received {received} bytes"))
}

fn query(request: &HttpRequest, key: &str) -> Option<u64> {
    request
        .query_string()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Whether a connection to the server's address is refused now.
fn is_closed(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

fn exit(code: i32, error: impl std::fmt::Display) -> ! {
    eprintln!("actix-probe: {error}");
    std::process::exit(code)
}
