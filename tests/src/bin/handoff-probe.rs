//! A minimal service for the in-place restart tests: a raw TCP listener (`BIND_ADDR`,
//! default `127.0.0.1:0`, or the socket passed in `LISTEN_FDS`) that answers each
//! connection with one line, `pid=<pid> version=<PROBE_VERSION>`, and closes it.
//!
//! Before it reports ready it waits `PROBE_READY_DELAY_MS`; `PROBE_NEVER_READY=1` makes
//! it wait forever, `PROBE_EXIT_BEFORE_READY=<code>` exits with that code instead. A
//! replaced binary (a script that sets these and runs the probe) is how the tests make
//! a successor differ from its predecessor. On any trigger it stops accepting at once,
//! runs the shutdown and exits with the report's code. A bad setting exits with 2.

use std::time::Duration;

use shutdown_core::{Shutdown, ShutdownConfig};
use shutdown_handoff::Handoff;
use tokio::io::AsyncWriteExt;

fn fail(error: impl std::fmt::Display) -> ! {
    eprintln!("handoff-probe: {error}");
    std::process::exit(2)
}

fn number(variable: &str) -> Option<u64> {
    let value = std::env::var(variable).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| fail(format_args!("{variable}={value:?}: expected a number"))),
    )
}

#[tokio::main]
async fn main() {
    e2e_tests::init_logs();
    let handoff = Handoff::from_env().unwrap_or_else(|error| fail(error));
    let addr = std::env::var("BIND_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:0".to_owned())
        .parse()
        .unwrap_or_else(|error| fail(format_args!("BIND_ADDR: {error}")));
    let listener = handoff
        .tcp_listener("probe", addr)
        .and_then(|l| {
            tokio::net::TcpListener::from_std(l)
                .map_err(|source| shutdown_handoff::HandoffError::Bind { addr, source })
        })
        .unwrap_or_else(|error| fail(error));
    let config = ShutdownConfig::from_env().unwrap_or_else(|error| fail(error));
    let shutdown = Shutdown::new(config);
    shutdown_signal::install(&shutdown).unwrap_or_else(|error| fail(error));
    handoff
        .install(&shutdown)
        .unwrap_or_else(|error| fail(error));
    let version = std::env::var("PROBE_VERSION").unwrap_or_else(|_| "1".to_owned());
    let pid = std::process::id();
    match listener.local_addr() {
        Ok(local) => println!("listening on {local}"),
        Err(error) => fail(error),
    }

    if let Some(code) = number("PROBE_EXIT_BEFORE_READY") {
        println!("exiting before ready pid={pid}");
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if std::env::var_os("PROBE_NEVER_READY").is_some() {
        println!("never ready pid={pid}");
        std::future::pending::<()>().await;
    }
    if let Some(ms) = number("PROBE_READY_DELAY_MS") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    handoff.ready().unwrap_or_else(|error| fail(error));
    println!("ready pid={pid} version={version}");

    let line = format!("pid={pid} version={version}\n");
    loop {
        tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            accepted = listener.accept() => {
                if let Ok((mut stream, _)) = accepted {
                    let line = line.clone();
                    // Counted, so that the drain waits for the answer.
                    let guard = shutdown.try_enter();
                    tokio::spawn(async move {
                        let _ = stream.write_all(line.as_bytes()).await;
                        drop(guard);
                    });
                }
            }
        }
    }
    drop(listener);
    let kind = shutdown.trigger_reason().map_or("none", |t| t.kind());
    println!("stopped accepting pid={pid} trigger={kind}");
    let report = shutdown.run().await;
    println!("exit_code={} pid={pid}", report.exit_code());
    std::process::exit(report.exit_code());
}
