//! `hello-tonic` (drain-tonic) as a gRPC client sees it: a real process, real
//! signals, tonic's own client over HTTP/2 on 127.0.0.1.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use e2e_tests::{Child, Signal, Source};
use hello_tonic::pb::HelloRequest;
use hello_tonic::pb::greeter_client::GreeterClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Bound on waiting for a line, an answer or an exit: only stops a hung server from
/// hanging CI.
const WAIT: Duration = Duration::from_secs(30);

/// The binary, next to this test's executable: `<target>/<profile>/deps/tonic-*` is
/// this test, `<target>/<profile>/hello-tonic` the example.
fn binary() -> String {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in <target>/<profile>/deps");
    let path = profile.join(format!("hello-tonic{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} not found: build it first, with the same profile and CARGO_TARGET_DIR: \
         `cargo build -p hello-tonic`",
        path.display()
    );
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Starts `hello-tonic` on a free port with `env`; returns it and its address.
fn start(env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut env = env.to_vec();
    env.push(("BIND_ADDR", "127.0.0.1:0"));
    let mut child = Child::spawn(&binary(), &env).expect("start hello-tonic");
    let line = child.wait_for_line(Source::Stdout, "listening on ", WAIT);
    let addr = line
        .rsplit("listening on ")
        .next()
        .and_then(|addr| addr.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_timeout(WAIT)
        .timeout(WAIT)
}

async fn channel(addr: SocketAddr) -> Channel {
    endpoint(addr).connect().await.expect("connect")
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
    }
}

/// A multi-threaded runtime: the test thread blocks on the child's output while the
/// clients' tasks go on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The shutdown report's log line.
fn report(child: &mut Child) -> String {
    child.wait_for_line(Source::Stderr, "graceful shutdown complete", WAIT)
}

#[test]
fn a_unary_rpc_in_flight_at_sigterm_completes() {
    let rt = runtime();
    let (mut child, addr) = start(&[("SHUTDOWN_TIMEOUT", "30")]);
    let channel = rt.block_on(channel(addr));
    let call = rt.spawn(async move {
        GreeterClient::new(channel)
            .say_hello(hello("slow:1500"))
            .await
    });
    // Signalled once the RPC is in its handler: the drain must count it.
    child.wait_for_line(Source::Stderr, "SayHello is waiting", WAIT);
    child.signal(Signal::SIGTERM);
    let draining = child.wait_for_line(Source::Stderr, "draining in-flight requests", WAIT);
    assert!(draining.contains("in_flight=1"), "{draining}");

    let reply = rt.block_on(call).expect("task").expect("the RPC completes");
    assert_eq!(reply.into_inner().message, "Hello slow:1500!");
    let status = child.wait(WAIT);
    assert_eq!(status.code(), Some(0), "{}", child.output());
    let report = report(&mut child);
    assert!(
        report.contains("drained=1") && report.contains("interrupted=0"),
        "{report}"
    );
}

#[test]
fn a_new_rpc_during_the_drain_gets_unavailable_with_a_message_and_a_pushback() {
    let rt = runtime();
    let (mut child, addr) = start(&[("SHUTDOWN_TIMEOUT", "30"), ("SHUTDOWN_RETRY_AFTER", "2")]);
    let first = rt.block_on(channel(addr));
    let slow = rt.spawn(async move {
        GreeterClient::new(first)
            .say_hello(hello("slow:3000"))
            .await
    });
    child.wait_for_line(Source::Stderr, "SayHello is waiting", WAIT);
    child.signal(Signal::SIGTERM);
    child.wait_for_line(
        Source::Stderr,
        "draining in-flight requests in_flight=1",
        WAIT,
    );

    // A client that connects during the drain: the listener is still open.
    let late = rt.block_on(async {
        let channel = channel(addr).await;
        GreeterClient::new(channel).say_hello(hello("late")).await
    });
    let status = late.expect_err("turned away");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), drain_tonic::mapping::REJECTION_MESSAGE);
    assert_eq!(
        status
            .metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()),
        Some("2000"),
        "{status:?}"
    );

    let reply = rt
        .block_on(slow)
        .expect("task")
        .expect("the slow RPC completes");
    assert_eq!(reply.into_inner().message, "Hello slow:3000!");
    let exit = child.wait(WAIT);
    assert_eq!(exit.code(), Some(0), "{}", child.output());
    let report = report(&mut child);
    assert!(
        report.contains("rejected=1") && report.contains("drained=1"),
        "{report}"
    );
}

#[test]
fn health_turns_not_serving_at_the_trigger_and_watch_sees_it() {
    let rt = runtime();
    let (mut child, addr) = start(&[("SHUTDOWN_DELAY", "3"), ("SHUTDOWN_TIMEOUT", "10")]);
    let channel = rt.block_on(channel(addr));
    let health = HealthClient::new(channel.clone());
    let check = |service: &str| {
        let mut health = health.clone();
        let service = service.to_owned();
        rt.block_on(async move {
            health
                .check(HealthCheckRequest { service })
                .await
                .map(|r| r.into_inner().status)
                .unwrap_or_else(|status| panic!("{status:?}"))
        })
    };
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(check(""), serving);
    assert_eq!(check("helloworld.Greeter"), serving);
    let mut watch = rt
        .block_on(health.clone().watch(HealthCheckRequest {
            service: String::new(),
        }))
        .expect("watch")
        .into_inner();
    let mut next = || {
        rt.block_on(async { tokio::time::timeout(WAIT, watch.message()).await })
            .expect("a status in time")
            .expect("no error")
            .expect("still open")
            .status
    };
    assert_eq!(next(), serving);

    let triggered = Instant::now();
    child.signal(Signal::SIGTERM);
    assert_eq!(next(), not_serving, "the open Watch sees the trigger");
    assert!(
        triggered.elapsed() < Duration::from_secs(2),
        "at the trigger, not after the 3 s pre-stop delay: {:?}",
        triggered.elapsed()
    );
    assert_eq!(check(""), not_serving);
    assert_eq!(check("helloworld.Greeter"), not_serving);
    let served = rt.block_on(GreeterClient::new(channel).say_hello(hello("during the delay")));
    assert!(
        served.is_ok(),
        "RPCs are still served during the pre-stop delay: {served:?}"
    );
    assert!(
        !child.output().contains("draining in-flight requests"),
        "all of this happened before the drain"
    );

    let exit = child.wait(WAIT);
    assert_eq!(exit.code(), Some(0), "{}", child.output());
}

#[test]
fn an_open_server_stream_ends_with_a_status_when_the_drain_begins() {
    let rt = runtime();
    let (mut child, addr) = start(&[("SHUTDOWN_TIMEOUT", "30")]);
    let mut stream = rt
        .block_on(async {
            GreeterClient::new(channel(addr).await)
                .say_hello_stream(hello("stream"))
                .await
        })
        .expect("stream opened")
        .into_inner();
    let mut next = || rt.block_on(async { tokio::time::timeout(WAIT, stream.message()).await });
    for n in 1..=2 {
        let reply = next().expect("in time").expect("a reply").expect("open");
        assert_eq!(reply.message, format!("Hello stream! #{n}"));
    }
    let signalled = Instant::now();
    child.signal(Signal::SIGTERM);
    let status = loop {
        match next().expect("in time") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), drain_tonic::stream::DRAIN_MESSAGE);

    let exit = child.wait(WAIT);
    assert_eq!(exit.code(), Some(0), "{}", child.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "long before the 30 s deadline: {:?}",
        signalled.elapsed()
    );
    let report = report(&mut child);
    assert!(
        report.contains("drained=1") && report.contains("interrupted=0"),
        "{report}"
    );
}

#[test]
fn a_client_that_never_reads_its_stream_cannot_keep_the_process_past_the_deadline() {
    let rt = runtime();
    let (mut child, addr) = start(&[("SHUTDOWN_TIMEOUT", "1")]);
    // A small flow-control window and large replies: the server cannot send the rest
    // of the stream (its end included) until the client reads, which it never does.
    let channel = rt
        .block_on(
            endpoint(addr)
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(65_535)
                .connect(),
        )
        .expect("connect");
    let big = "x".repeat(100_000);
    let stream = rt
        .block_on(GreeterClient::new(channel).say_hello_stream(hello(&big)))
        .expect("stream opened");
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    child.signal(Signal::SIGTERM);
    let exit = child.wait(WAIT);
    let took = signalled.elapsed();
    drop(stream);

    assert_eq!(exit.code(), Some(3), "interrupted\n{}", child.output());
    assert!(
        took < Duration::from_secs(6),
        "the deadline (1 s) plus the stop bound, not the client, decides: {took:?}"
    );
    let output = child.output();
    assert!(output.contains("drain timeout"), "{output}");
    let report = report(&mut child);
    assert!(report.contains("interrupted=1"), "{report}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let rt = runtime();
    let (mut child, addr) = start(&[("SHUTDOWN_TIMEOUT", "60")]);
    let channel = rt.block_on(channel(addr));
    let _call = rt.spawn(async move {
        GreeterClient::new(channel)
            .say_hello(hello("slow:60000"))
            .await
    });
    child.wait_for_line(Source::Stderr, "SayHello is waiting", WAIT);
    child.signal(Signal::SIGTERM);
    child.wait_for_line(
        Source::Stderr,
        "draining in-flight requests in_flight=1",
        WAIT,
    );
    child.signal(Signal::SIGTERM);
    let exit = child.wait(WAIT);
    assert_eq!(exit.code(), Some(143), "{}", child.output());
    assert_eq!(exit.signal(), None, "an exit code, not death by signal");
}

#[test]
fn a_bad_shutdown_variable_exits_with_2() {
    let mut child =
        Child::spawn(&binary(), &[("SHUTDOWN_TIMEOUT", "soon")]).expect("start hello-tonic");
    let exit = child.wait(WAIT);
    assert_eq!(exit.code(), Some(2), "{}", child.output());
    assert!(
        child.output().contains("SHUTDOWN_TIMEOUT"),
        "{}",
        child.output()
    );
}
