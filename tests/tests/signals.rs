//! Real signals sent to a real child process (`signal-probe`): one process per
//! scenario, since signal handlers are process-wide.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use e2e_tests::{Child, Signal, Source};

const PROBE: &str = env!("CARGO_BIN_EXE_signal-probe");
/// Generous bounds: they only stop a hung child from hanging CI.
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);

fn start(env: &[(&str, &str)]) -> Child {
    let mut child = Child::spawn(PROBE, env).expect("start signal-probe");
    child.wait_for_line(Source::Stderr, "signal handlers registered", START);
    child.wait_for_line(Source::Stdout, "ready", START);
    child
}

#[test]
fn sigterm_drains_the_request_in_flight_runs_cleanup_and_exits_0() {
    let mut child = start(&[("PROBE_REQUEST_MS", "300"), ("SHUTDOWN_TIMEOUT", "15")]);
    child.signal(Signal::SIGTERM);
    let status = child.wait(EXIT);

    assert_eq!(status.code(), Some(0), "{}", child.output());
    let out = child.lines(Source::Stdout);
    assert_eq!(
        out,
        [
            "ready",
            "request completed",
            "background task stopped",
            "cleanup flush",
            "cleanup database",
            "exit_code=0"
        ],
        "the request finishes before background work stops, then cleanup runs LIFO"
    );
    let err = child.output();
    assert!(
        err.contains("shutting down") && err.contains("SIGTERM"),
        "{err}"
    );
    assert!(
        err.contains("draining in-flight requests in_flight=1"),
        "{err}"
    );
    assert!(err.contains("all requests completed"), "{err}");
    let report = child
        .lines(Source::Stderr)
        .into_iter()
        .find(|l| l.contains("graceful shutdown complete"))
        .unwrap_or_else(|| panic!("no report line\n{err}"))
        .to_owned();
    for field in [
        "drained=1",
        "interrupted=0",
        "rejected=0",
        "cleanups=2",
        "cleanups_failed=0",
        "exit_code=0",
    ] {
        assert!(report.contains(field), "report lacks {field}: {report}");
    }
}

#[test]
fn sigint_is_graceful_too() {
    let mut child = start(&[("PROBE_REQUEST_MS", "200")]);
    child.signal(Signal::SIGINT);
    let status = child.wait(EXIT);
    assert_eq!(status.code(), Some(0), "{}", child.output());
    assert!(child.lines(Source::Stdout).contains(&"request completed"));
    assert!(child.output().contains("SIGINT"));
}

#[test]
fn second_sigint_during_the_drain_exits_at_once_with_130() {
    let mut child = start(&[("PROBE_REQUEST_MS", "60000"), ("SHUTDOWN_TIMEOUT", "60")]);
    child.signal(Signal::SIGINT);
    child.wait_for_line(Source::Stderr, "draining in-flight requests", START);
    child.signal(Signal::SIGINT);
    let status = child.wait(EXIT);

    assert_eq!(status.code(), Some(130), "{}", child.output());
    assert!(
        child.output().contains("exiting at once"),
        "{}",
        child.output()
    );
    let out = child.lines(Source::Stdout);
    assert!(
        !out.iter().any(|l| l.starts_with("cleanup")),
        "forced exit skips cleanup: {out:?}"
    );
}

#[test]
fn second_sigterm_exits_with_143() {
    let mut child = start(&[("PROBE_REQUEST_MS", "60000"), ("SHUTDOWN_TIMEOUT", "60")]);
    child.signal(Signal::SIGTERM);
    child.wait_for_line(Source::Stderr, "draining in-flight requests", START);
    child.signal(Signal::SIGTERM);
    let status = child.wait(EXIT);
    assert_eq!(status.code(), Some(143), "{}", child.output());
    assert_eq!(status.signal(), None, "an exit code, not death by signal");
}

#[test]
fn drain_timeout_interrupts_the_request_and_exits_3() {
    let mut child = start(&[("PROBE_REQUEST_MS", "60000"), ("SHUTDOWN_TIMEOUT", "0.5")]);
    child.signal(Signal::SIGTERM);
    let status = child.wait(EXIT);

    assert_eq!(status.code(), Some(3), "{}", child.output());
    let out = child.lines(Source::Stdout);
    assert!(
        out.contains(&"request cancelled"),
        "the request token is cancelled at the deadline: {out:?}"
    );
    assert!(
        out.contains(&"cleanup database"),
        "cleanup still runs after a timeout: {out:?}"
    );
    let err = child.output();
    assert!(err.contains("drain timeout"), "{err}");
    assert!(err.contains("interrupted=1"), "{err}");
}

#[test]
fn failed_cleanup_exits_4_after_running_the_rest() {
    let mut child = start(&[("PROBE_CLEANUP_FAIL", "1")]);
    child.signal(Signal::SIGTERM);
    let status = child.wait(EXIT);

    assert_eq!(status.code(), Some(4), "{}", child.output());
    let out = child.lines(Source::Stdout);
    assert!(
        out.contains(&"cleanup flush") && out.contains(&"cleanup database"),
        "{out:?}"
    );
    assert!(child.output().contains("connection reset while closing"));
}

#[test]
fn bad_shutdown_timeout_exits_2_naming_the_variable() {
    for (variable, value) in [
        ("SHUTDOWN_TIMEOUT", "abc"),
        ("SHUTDOWN_DELAY", "-5"),
        ("SHUTDOWN_TIMEOUT", "1e999"),
    ] {
        let mut child = Child::spawn(PROBE, &[(variable, value)]).expect("start signal-probe");
        let status = child.wait(EXIT);
        assert_eq!(status.code(), Some(2), "{}", child.output());
        let err = child.output();
        assert!(err.contains(&format!("{variable}=\"{value}\"")), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
