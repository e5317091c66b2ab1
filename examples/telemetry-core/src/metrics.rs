//! The demo's own metrics, recorded through the `metrics` facade next to
//! `drain-metrics`' ones.

use metrics::{Unit, describe_counter, describe_gauge};

/// Events accepted into the write-behind buffer (answered `202`), duplicates excluded.
pub const EVENTS_ACCEPTED: &str = "telemetry_events_accepted_total";
/// Events written to SQLite by a flush (`INSERT OR IGNORE`: rows new to the table).
pub const EVENTS_STORED: &str = "telemetry_events_stored_total";
/// Events accepted but not yet committed to SQLite.
pub const EVENTS_BUFFERED: &str = "telemetry_events_buffered";
/// Flushes that failed (their events stay buffered and are retried).
pub const FLUSH_FAILURES: &str = "telemetry_flush_failures_total";
/// Events published to Redis.
pub const REDIS_PUBLISHED: &str = "telemetry_redis_published_total";
/// Events not published to Redis (Redis down, or the queue full).
pub const REDIS_FAILED: &str = "telemetry_redis_failed_total";

/// Describes the metrics above. Call it after installing the recorder: descriptions
/// sent before are lost.
pub fn describe_metrics() {
    describe_counter!(
        EVENTS_ACCEPTED,
        Unit::Count,
        "Events accepted into the write-behind buffer"
    );
    describe_counter!(EVENTS_STORED, Unit::Count, "Events written to SQLite");
    describe_gauge!(
        EVENTS_BUFFERED,
        Unit::Count,
        "Events accepted but not yet committed to SQLite"
    );
    describe_counter!(
        FLUSH_FAILURES,
        Unit::Count,
        "Flushes of the write-behind buffer that failed"
    );
    describe_counter!(REDIS_PUBLISHED, Unit::Count, "Events published to Redis");
    describe_counter!(REDIS_FAILED, Unit::Count, "Events not published to Redis");
}
