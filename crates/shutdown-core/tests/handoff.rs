//! The handoff drain: after `Trigger::Handoff` a successor serves new connections, so
//! this process serves what still arrives on its open connections (never a `503`),
//! asks HTTP/1.x clients to reconnect, and stops once that has settled.

use std::time::Duration;

use shutdown_core::{Admission, Phase, Protocol, RequestGate, Shutdown, ShutdownConfig, Trigger};
use tokio::time::Instant;

fn shutdown() -> Shutdown {
    Shutdown::new(
        ShutdownConfig::new()
            .with_pre_stop_delay(Duration::from_secs(60))
            .with_handoff_grace(Duration::from_secs(3))
            .with_drain_timeout(Duration::from_secs(30)),
    )
}

fn served(admission: Admission<'_>) -> shutdown_core::Pass {
    admission
        .into_pass()
        .unwrap_or_else(|_| panic!("rejected during a handoff"))
}

#[tokio::test(start_paused = true)]
async fn a_handoff_serves_the_grace_instead_of_the_pre_stop_delay_and_never_rejects() {
    let shutdown = shutdown();
    let gate = RequestGate::new(shutdown.clone());
    assert!(!shutdown.is_handing_off());
    let started = Instant::now();
    assert!(shutdown.trigger(Trigger::Handoff { successor: 42 }));
    assert!(shutdown.is_handing_off());
    assert!(!shutdown.is_ready(), "the successor is the one to route to");

    // During the grace: served and counted, with Connection: close on HTTP/1.x only.
    let mut during = served(gate.admit("/orders", Protocol::Http1));
    assert!(!during.is_exempt(), "counted");
    assert!(during.close_connection(200, || None::<&[u8]>));
    let http2 = served(gate.admit("/orders", Protocol::Http2));
    assert!(!http2.close_connection(200, || None::<&[u8]>));
    drop(http2);

    let guard = during.take_guard();
    drop(during);
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain().await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        shutdown.phase(),
        Phase::Draining,
        "after the grace, not the 60 s delay"
    );

    // After the grace the drain refuses new requests; a handoff serves them anyway,
    // uncounted, and counts no rejection.
    let mut late = served(gate.admit("/orders", Protocol::Http1));
    assert!(late.take_guard().is_none(), "not counted");
    assert!(late.close_connection(200, || None::<&[u8]>));
    assert_eq!(shutdown.rejected(), 0);

    drop(guard);
    let summary = drain.await.expect("drain");
    assert_eq!(summary.trigger, Trigger::Handoff { successor: 42 });
    assert_eq!(summary.pre_stop_delay, Duration::from_secs(3));
    assert_eq!(summary.rejected, 0);
    assert_eq!(summary.drained(), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    let report = shutdown.run().await;
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.drain.trigger.kind(), "handoff");
}

#[tokio::test(start_paused = true)]
async fn handed_over_resolves_for_a_handoff_only() {
    let handoff = shutdown();
    handoff.trigger(Trigger::Handoff { successor: 7 });
    tokio::time::timeout(Duration::from_millis(1), handoff.handed_over())
        .await
        .expect("resolves at the handoff");

    let stop = shutdown();
    stop.trigger(Trigger::Signal("SIGTERM"));
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), stop.handed_over())
            .await
            .is_err(),
        "a SIGTERM keeps the listener open until the drain has ended"
    );
    let gate = RequestGate::new(stop.clone());
    let drain = tokio::spawn({
        let stop = stop.clone();
        async move { stop.drain().await }
    });
    tokio::time::sleep(Duration::from_secs(61)).await;
    drain.await.expect("drain");
    assert!(
        gate.admit("/orders", Protocol::Http1).into_pass().is_err(),
        "other triggers still reject"
    );
    assert_eq!(stop.rejected(), 1);
}
