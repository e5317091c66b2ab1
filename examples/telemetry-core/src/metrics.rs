//! The demo's own metrics, recorded through the `metrics` facade next to
//! `drain-metrics`' ones.

use metrics::{Unit, describe_counter, describe_gauge};

/// Events acknowledged with `202` as new (duplicates excluded): once committed with
/// `ACK_MODE=durable`, once buffered with `ACK_MODE=buffered`.
pub const EVENTS_ACCEPTED: &str = "telemetry_events_accepted_total";
/// Events written to SQLite (`INSERT OR IGNORE`: rows new to the table), by a commit,
/// a flush or the replay of a spill file.
pub const EVENTS_STORED: &str = "telemetry_events_stored_total";
/// Events accepted but not yet committed to SQLite (buffered, or waiting for their
/// transaction): at most `BUFFER_CAPACITY`.
pub const EVENTS_BUFFERED: &str = "telemetry_events_buffered";
/// Events answered `503` + `Retry-After`, labelled `reason`: `full` (the bound of
/// events not yet committed is reached), `failed` (their transaction failed) or
/// `closed` (the database is closing).
pub const EVENTS_REFUSED: &str = "telemetry_events_refused_total";
/// Transactions committed by the writer of `ACK_MODE=durable` (events stored divided
/// by this is the mean group size).
pub const COMMITS: &str = "telemetry_commits_total";
/// Commits and flushes that failed (with `ACK_MODE=buffered` their events stay
/// buffered and are retried; with `durable` they are answered `503`).
pub const FLUSH_FAILURES: &str = "telemetry_flush_failures_total";
/// Events published to Redis.
pub const REDIS_PUBLISHED: &str = "telemetry_redis_published_total";
/// Events not published because Redis was unreachable, failed or did not answer in time.
pub const REDIS_FAILED: &str = "telemetry_redis_failed_total";
/// Events not published because the publish queue was full.
pub const REDIS_DROPPED: &str = "telemetry_redis_dropped_total";

/// Describes the metrics above. Call it after installing the recorder: descriptions
/// sent before are lost.
pub fn describe_metrics() {
    describe_counter!(
        EVENTS_ACCEPTED,
        Unit::Count,
        "Events acknowledged with 202 (committed, or buffered with ACK_MODE=buffered)"
    );
    describe_counter!(EVENTS_STORED, Unit::Count, "Events written to SQLite");
    describe_gauge!(
        EVENTS_BUFFERED,
        Unit::Count,
        "Events accepted but not yet committed to SQLite"
    );
    describe_counter!(
        EVENTS_REFUSED,
        Unit::Count,
        "Events answered 503 + Retry-After, by reason: full, failed, closed"
    );
    describe_counter!(COMMITS, Unit::Count, "Transactions of the durable writer");
    describe_counter!(
        FLUSH_FAILURES,
        Unit::Count,
        "Commits and flushes that failed"
    );
    describe_counter!(REDIS_PUBLISHED, Unit::Count, "Events published to Redis");
    describe_counter!(
        REDIS_FAILED,
        Unit::Count,
        "Events not published because Redis was unreachable or failed"
    );
    describe_counter!(
        REDIS_DROPPED,
        Unit::Count,
        "Events not published because the publish queue was full"
    );
}
