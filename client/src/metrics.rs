//! What the client records through the [`metrics`] facade: the
//! application installs the recorder it exports with (Prometheus,
//! StatsD, ...); without one, recording costs next to nothing. The names
//! follow Prometheus conventions, like the node's (`docs/metrics.md`):
//!
//! - `trilog_client_append_duration_seconds` (histogram): from
//!   [`Producer::submit`](crate::Producer::submit) to the entry committed
//!   on every replica: the latency the database sees.
//! - `trilog_client_appends_total`, `trilog_client_append_bytes_total`
//!   (counters): entries committed, and their payload bytes.
//! - `trilog_client_append_failures_total` (counter): entries whose
//!   outcome is unknown because the producer stopped (fenced, or the log
//!   closed under it).
//! - `trilog_client_segment_switches_total` (counter): times a producer
//!   sealed its open segment and went on in a new one on other replicas
//!   (a replica failed, was slow or refused).
//! - `trilog_client_replica_failures_total` (counter): replicas a
//!   producer found failed (lost connection, error answer).

use std::sync::Once;
use std::time::Duration;

pub const APPEND_DURATION: &str = "trilog_client_append_duration_seconds";
pub const APPENDS: &str = "trilog_client_appends_total";
pub const APPEND_BYTES: &str = "trilog_client_append_bytes_total";
pub const APPEND_FAILURES: &str = "trilog_client_append_failures_total";
pub const SEGMENT_SWITCHES: &str = "trilog_client_segment_switches_total";
pub const REPLICA_FAILURES: &str = "trilog_client_replica_failures_total";

/// Describes every metric to the recorder installed now (once per
/// process: a recorder installed later shows them without descriptions).
pub(crate) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_histogram!(
            APPEND_DURATION,
            metrics::Unit::Seconds,
            "From submit to the entry committed on every replica"
        );
        metrics::describe_counter!(APPENDS, "Entries committed");
        metrics::describe_counter!(
            APPEND_BYTES,
            metrics::Unit::Bytes,
            "Payload bytes of the entries committed"
        );
        metrics::describe_counter!(
            APPEND_FAILURES,
            "Entries whose outcome is unknown: the producer stopped"
        );
        metrics::describe_counter!(
            SEGMENT_SWITCHES,
            "Open segments sealed to go on in a new one on other replicas"
        );
        metrics::describe_counter!(REPLICA_FAILURES, "Replicas a producer found failed");
    });
}

pub(crate) fn committed(latency: Duration, bytes: u64) {
    metrics::histogram!(APPEND_DURATION).record(latency.as_secs_f64());
    metrics::counter!(APPENDS).increment(1);
    metrics::counter!(APPEND_BYTES).increment(bytes);
}

pub(crate) fn failed(entries: u64) {
    metrics::counter!(APPEND_FAILURES).increment(entries);
}

pub(crate) fn switched() {
    metrics::counter!(SEGMENT_SWITCHES).increment(1);
}

pub(crate) fn replica_failed() {
    metrics::counter!(REPLICA_FAILURES).increment(1);
}
