//! Server for the long-lived connections benchmark of `cargo xtask bench`
//! (`long-lived-bench`): the same three routes on axum, actix-web or poem, stopped by
//! this project's drain or by the framework's own graceful shutdown.
//!
//! - `GET /events`: SSE, `event: tick` / `data: <n>` every 100 ms, the first at once;
//! - `GET /ws`: a WebSocket that echoes text;
//! - `GET /slow?ms=N`: `200` after N ms (a short request to have in flight).
//!
//! `BENCH_FRAMEWORK=axum|actix|poem`, `BENCH_MODE=drain|builtin`:
//!
//! - `drain`: the adapter's `DrainLayer` and `serve`, `OnDrain` + `sse`, the adapter's
//!   WebSocket session; `SHUTDOWN_*` from the environment, `shutdown-signal`;
//! - `builtin`: the framework's own SSE and WebSocket and its own graceful shutdown on
//!   SIGTERM: `axum::serve(..).with_graceful_shutdown` (no bound), actix-web's
//!   `HttpServer` with its signal handling and `shutdown_timeout(BUILTIN_STOP_SECS)`,
//!   poem's `run_with_graceful_shutdown(.., Some(BUILTIN_STOP_SECS))`.
//!
//! `BIND_ADDR` (default `127.0.0.1:0`). Prints `listening on <addr>` on stdout and
//! `exit_code=<n>` before exiting; logs to stderr.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use shutdown_core::{Shutdown, ShutdownConfig};

/// The stop bound given to actix-web and poem in `builtin` mode (axum takes none).
const BUILTIN_STOP_SECS: u64 = 10;
const TICK: Duration = Duration::from_millis(100);

fn ticks() -> impl Stream<Item = u64> + Send + 'static {
    futures_util::stream::unfold(0_u64, |n| async move {
        if n > 0 {
            tokio::time::sleep(TICK).await;
        }
        Some((n, n + 1))
    })
}

fn slow_ms(query: Option<&str>) -> u64 {
    query
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(100)
        .min(10_000)
}

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {error}");
    println!("exit_code=2");
    std::process::exit(2)
}

fn main() {
    e2e_tests::init_logs();
    let framework = std::env::var("BENCH_FRAMEWORK").unwrap_or_else(|_| "axum".into());
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "drain".into());
    let drain = match mode.as_str() {
        "drain" => true,
        "builtin" => false,
        other => fail(
            "BENCH_MODE",
            format!("{other:?}: expected drain or builtin"),
        ),
    };
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = std::net::TcpListener::bind(&bind)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .unwrap_or_else(|error| fail("BIND_ADDR", error));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| fail("local address", error));
    let code = match framework.as_str() {
        "axum" => tokio_runtime().block_on(axum_server::run(listener, addr, drain)),
        "poem" => tokio_runtime().block_on(poem_server::run(listener, addr, drain)),
        "actix" => actix_web::rt::System::new().block_on(actix_server::run(listener, addr, drain)),
        other => fail(
            "BENCH_FRAMEWORK",
            format!("{other:?}: expected axum, actix or poem"),
        ),
    };
    println!("exit_code={code}");
    std::process::exit(code);
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| fail("runtime", error))
}

/// The `Shutdown` of `drain` mode, with the signal handlers installed.
fn shutdown() -> Shutdown {
    let config = ShutdownConfig::from_env().unwrap_or_else(|error| fail("configuration", error));
    let shutdown = Shutdown::new(config);
    if let Err(error) = shutdown_signal::install(&shutdown) {
        fail("signals", error);
    }
    shutdown
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(error) => fail("SIGTERM handler", error),
    }
}

mod axum_server {
    use axum::Router;
    use axum::extract::RawQuery;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::response::sse::{Event, Sse};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use drain_axum::OnDrain;

    use super::*;

    fn events() -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        ticks().map(|n| Ok(Event::default().event("tick").data(n.to_string())))
    }

    async fn slow(RawQuery(query): RawQuery) -> &'static str {
        tokio::time::sleep(Duration::from_millis(slow_ms(query.as_deref()))).await;
        "done"
    }

    pub(super) async fn run(listener: std::net::TcpListener, addr: SocketAddr, drain: bool) -> i32 {
        let listener = tokio::net::TcpListener::from_std(listener)
            .unwrap_or_else(|error| fail("listener", error));
        if drain {
            let shutdown = shutdown();
            let app = Router::new()
                .route(
                    "/events",
                    get(|OnDrain(drain): OnDrain| async move {
                        drain_axum::sse(events(), &drain).into_response()
                    }),
                )
                .route(
                    "/ws",
                    get(|upgrade: drain_axum::ws::WebSocketUpgrade| async move {
                        upgrade.on_upgrade(|mut socket| async move {
                            while let Some(Ok(message)) = socket.recv().await {
                                if let Message::Text(text) = message {
                                    if socket.send(Message::Text(text)).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        })
                    }),
                )
                .route("/slow", get(slow))
                .with_state(shutdown.clone());
            println!("listening on {addr}");
            match drain_axum::serve(listener, drain_axum::drained(app, &shutdown), &shutdown).await
            {
                Ok(report) => report.exit_code(),
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        } else {
            let app = Router::new()
                .route("/events", get(|| async { Sse::new(events()) }))
                .route(
                    "/ws",
                    get(|upgrade: WebSocketUpgrade| async move {
                        let response: Response = upgrade.on_upgrade(|mut socket| async move {
                            while let Some(Ok(message)) = socket.recv().await {
                                if let Message::Text(text) = message {
                                    if socket.send(Message::Text(text)).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        });
                        response
                    }),
                )
                .route("/slow", get(slow));
            println!("listening on {addr}");
            match axum::serve(listener, app)
                .with_graceful_shutdown(sigterm())
                .await
            {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        }
    }
}

mod actix_server {
    use actix_web::web::{self, Bytes};
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
    use drain_actix::{DrainLayer, OnDrain};

    use super::*;

    fn events() -> impl Stream<Item = Result<Bytes, Infallible>> + 'static {
        ticks().map(|n| Ok(Bytes::from(format!("event: tick\ndata: {n}\n\n"))))
    }

    async fn slow(request: HttpRequest) -> &'static str {
        tokio::time::sleep(Duration::from_millis(slow_ms(Some(request.query_string())))).await;
        "done"
    }

    async fn ws_drain(request: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
        let (response, mut socket) = drain_actix::ws::handle(&request, body)?;
        actix_web::rt::spawn(async move {
            while let Some(Ok(message)) = socket.recv().await {
                let sent = match message {
                    actix_ws::Message::Text(text) => socket.session().text(text).await,
                    actix_ws::Message::Close(reason) => {
                        let _ = socket.send(actix_ws::Message::Close(reason)).await;
                        break;
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        Ok(response)
    }

    async fn ws_builtin(
        request: HttpRequest,
        body: web::Payload,
    ) -> actix_web::Result<HttpResponse> {
        let (response, mut session, mut stream) = actix_ws::handle(&request, body)?;
        actix_web::rt::spawn(async move {
            while let Some(Ok(message)) = stream.recv().await {
                let sent = match message {
                    actix_ws::Message::Text(text) => session.text(text).await,
                    actix_ws::Message::Close(reason) => {
                        let _ = session.close(reason).await;
                        break;
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        Ok(response)
    }

    pub(super) async fn run(listener: std::net::TcpListener, addr: SocketAddr, drain: bool) -> i32 {
        if drain {
            let shutdown = shutdown();
            let layer = DrainLayer::new(shutdown.clone());
            let data = shutdown.clone();
            let factory = move || {
                App::new()
                    .wrap(layer.clone())
                    .app_data(data.clone())
                    .route(
                        "/events",
                        web::get().to(|OnDrain(drain): OnDrain| async move {
                            drain_actix::sse(events(), &drain)
                        }),
                    )
                    .route("/ws", web::get().to(ws_drain))
                    .route("/slow", web::get().to(slow))
            };
            println!("listening on {addr}");
            match drain_actix::serve(listener, factory, &shutdown).await {
                Ok(report) => report.exit_code(),
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        } else {
            let factory = || {
                App::new()
                    .route(
                        "/events",
                        web::get().to(|| async {
                            HttpResponse::Ok()
                                .content_type("text/event-stream")
                                .streaming(events())
                        }),
                    )
                    .route("/ws", web::get().to(ws_builtin))
                    .route("/slow", web::get().to(slow))
            };
            let server = match HttpServer::new(factory)
                .shutdown_timeout(BUILTIN_STOP_SECS)
                .listen(listener)
            {
                Ok(server) => server.run(),
                Err(error) => fail("listen", error),
            };
            println!("listening on {addr}");
            match server.await {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        }
    }
}

mod poem_server {
    use drain_poem::{DrainLayer, OnDrain};
    use poem::listener::TcpAcceptor;
    use poem::web::sse::{Event, SSE};
    use poem::web::websocket::{Message, WebSocket};
    use poem::{EndpointExt, IntoResponse, Request, Route, Server, get, handler};

    use super::*;

    fn events() -> impl Stream<Item = Event> + Send + 'static {
        ticks().map(|n| Event::message(n.to_string()).event_type("tick"))
    }

    #[handler]
    async fn slow(request: &Request) -> &'static str {
        tokio::time::sleep(Duration::from_millis(slow_ms(request.uri().query()))).await;
        "done"
    }

    #[handler]
    fn events_drain(OnDrain(drain): OnDrain) -> poem::Response {
        drain_poem::sse(events(), &drain).into_response()
    }

    #[handler]
    fn events_builtin() -> poem::Response {
        SSE::new(events()).into_response()
    }

    #[handler]
    fn ws_drain(upgrade: drain_poem::ws::WebSocketUpgrade) -> impl IntoResponse {
        upgrade.on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                if let Message::Text(text) = message {
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
            }
        })
    }

    #[handler]
    fn ws_builtin(upgrade: WebSocket) -> impl IntoResponse {
        upgrade.on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    if futures_util::SinkExt::send(&mut socket, Message::Text(text))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        })
    }

    pub(super) async fn run(listener: std::net::TcpListener, addr: SocketAddr, drain: bool) -> i32 {
        let acceptor =
            TcpAcceptor::from_std(listener).unwrap_or_else(|error| fail("listener", error));
        if drain {
            let shutdown = shutdown();
            let app = Route::new()
                .at("/events", get(events_drain))
                .at("/ws", get(ws_drain))
                .at("/slow", get(slow))
                .data(shutdown.clone())
                .with(DrainLayer::new(shutdown.clone()));
            println!("listening on {addr}");
            match drain_poem::serve(acceptor, app, &shutdown).await {
                Ok(report) => report.exit_code(),
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        } else {
            let app = Route::new()
                .at("/events", get(events_builtin))
                .at("/ws", get(ws_builtin))
                .at("/slow", get(slow));
            println!("listening on {addr}");
            match Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    sigterm(),
                    Some(Duration::from_secs(BUILTIN_STOP_SECS)),
                )
                .await
            {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        }
    }
}
