//! One shard's metrics. The shard alone writes them (thread per core: each
//! counter is an atomic only its own core touches, so counting costs an
//! uncontended add); the admin port's thread reads them when scraped.
//! Every labelled child is made at start, so the hot path never looks a
//! label set up and every series exists (at 0) from the first scrape.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use trilog_wire::message::ErrorCode;

use super::labels::{code_name, CodeLabel, OpLabel, ReasonLabel, ERROR_CODES};

/// Why the node closed a connection, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseReason {
    /// The peer closed it (or reset it).
    Peer,
    /// No Hello, or a bad one, or no TLS handshake in time.
    Handshake,
    /// A malformed, oversized or forbidden frame.
    BadFrame,
    /// A frame begun was not whole in time.
    Slow,
    /// The peer stopped reading answers.
    Stalled,
    /// Nothing sent and nothing owed for the idle period.
    Idle,
    /// The node stopped on purpose (a drain), after answering the
    /// connection's appends.
    Drain,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::Peer,
        CloseReason::Handshake,
        CloseReason::BadFrame,
        CloseReason::Slow,
        CloseReason::Stalled,
        CloseReason::Idle,
        CloseReason::Drain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Handshake => "handshake",
            CloseReason::BadFrame => "bad_frame",
            CloseReason::Slow => "slow",
            CloseReason::Stalled => "stalled",
            CloseReason::Idle => "idle",
            CloseReason::Drain => "drain",
        }
    }
}

/// A disk operation that failed, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskOp {
    Flush,
    Control,
    Create,
    Read,
    Delete,
}

impl DiskOp {
    pub const ALL: [DiskOp; 5] = [
        DiskOp::Flush,
        DiskOp::Control,
        DiskOp::Create,
        DiskOp::Read,
        DiskOp::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DiskOp::Flush => "flush",
            DiskOp::Control => "control",
            DiskOp::Create => "create",
            DiskOp::Read => "read",
            DiskOp::Delete => "delete",
        }
    }
}

/// A shard's counters, gauges and histograms (see the module doc).
/// Cloning shares them.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    pub appends: Counter,
    pub append_entries: Counter,
    pub append_bytes: Counter,
    pub reads: Counter,
    pub read_entries: Counter,
    pub read_bytes: Counter,
    pub fsyncs: Counter,
    fsync_seconds: Histogram,
    pub group_commits: Counter,
    group_commit_appends: Histogram,
    group_commit_bytes: Histogram,
    pub segments: Gauge,
    pub connections: Gauge,
    pub connections_refused: Counter,
    closed: Family<ReasonLabel, Counter>,
    closed_by: BTreeMap<CloseReason, Counter>,
    errors: Family<CodeLabel, Counter>,
    errors_by: HashMap<ErrorCode, Counter>,
    disk_errors: Family<OpLabel, Counter>,
    disk_errors_by: BTreeMap<DiskOp, Counter>,
    pub segments_deleted: Counter,
    pub scrub_bytes: Counter,
    pub damage_found: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics::new()
    }
}

impl ShardMetrics {
    /// A shard's metrics, every labelled series made at 0; registered
    /// nowhere until [`ShardMetrics::register`] (the simulator never does).
    pub fn new() -> ShardMetrics {
        let closed = Family::<ReasonLabel, Counter>::default();
        let closed_by = CloseReason::ALL
            .iter()
            .map(|r| {
                (
                    *r,
                    closed.get_or_create_owned(&ReasonLabel { reason: r.name() }),
                )
            })
            .collect();
        let errors = Family::<CodeLabel, Counter>::default();
        let errors_by = ERROR_CODES
            .iter()
            .map(|c| {
                (
                    *c,
                    errors.get_or_create_owned(&CodeLabel {
                        code: code_name(*c),
                    }),
                )
            })
            .collect();
        let disk_errors = Family::<OpLabel, Counter>::default();
        let disk_errors_by = DiskOp::ALL
            .iter()
            .map(|o| {
                (
                    *o,
                    disk_errors.get_or_create_owned(&OpLabel { op: o.name() }),
                )
            })
            .collect();
        ShardMetrics {
            appends: Counter::default(),
            append_entries: Counter::default(),
            append_bytes: Counter::default(),
            reads: Counter::default(),
            read_entries: Counter::default(),
            read_bytes: Counter::default(),
            fsyncs: Counter::default(),
            // 50 us to 1.6 s: a fast NVMe flush to a disk in trouble.
            fsync_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 16)),
            group_commits: Counter::default(),
            group_commit_appends: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 4 KiB to 1 GiB.
            group_commit_bytes: Histogram::new(exponential_buckets(4096.0, 4.0, 10)),
            segments: Gauge::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            closed,
            closed_by,
            errors,
            errors_by,
            disk_errors,
            disk_errors_by,
            segments_deleted: Counter::default(),
            scrub_bytes: Counter::default(),
            damage_found: Counter::default(),
        }
    }

    /// One fdatasync of a segment file in a group commit, and how long it
    /// took.
    pub fn fsynced(&self, took: Duration) {
        self.fsyncs.inc();
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    /// A group commit round: the appends and payload bytes it made durable.
    pub fn group_commit(&self, appends: u64, bytes: u64) {
        self.group_commits.inc();
        self.group_commit_appends.observe(appends as f64);
        self.group_commit_bytes.observe(bytes as f64);
    }

    pub fn connection_closed(&self, why: CloseReason) {
        if let Some(c) = self.closed_by.get(&why) {
            c.inc();
        }
    }

    pub fn error_answered(&self, code: ErrorCode) {
        if let Some(c) = self.errors_by.get(&code) {
            c.inc();
        }
    }

    pub fn disk_error(&self, op: DiskOp) {
        if let Some(c) = self.disk_errors_by.get(&op) {
            c.inc();
        }
    }

    /// Adds every metric to `registry` (a shard's sub-registry, whose
    /// label names the shard).
    pub fn register(&self, registry: &mut Registry) {
        let m = self.clone();
        registry.register("appends", "Append requests received", m.appends);
        registry.register(
            "append_entries",
            "Entries staged for a group commit",
            m.append_entries,
        );
        registry.register_with_unit(
            "append",
            "Entry payload bytes staged for a group commit",
            Unit::Bytes,
            m.append_bytes,
        );
        registry.register("reads", "Read answers with entries sent", m.reads);
        registry.register(
            "read_entries",
            "Entries sent in read answers",
            m.read_entries,
        );
        registry.register_with_unit(
            "read",
            "Entry bytes sent in read answers (records with their headers)",
            Unit::Bytes,
            m.read_bytes,
        );
        registry.register(
            "fsyncs",
            "fdatasyncs of segment files by group commits",
            m.fsyncs,
        );
        registry.register_with_unit(
            "fsync_duration",
            "How long one fdatasync of a segment file took",
            Unit::Seconds,
            m.fsync_seconds,
        );
        registry.register("group_commits", "Group commit rounds", m.group_commits);
        registry.register(
            "group_commit_appends",
            "Appends made durable together by one group commit round",
            m.group_commit_appends,
        );
        registry.register_with_unit(
            "group_commit",
            "Payload bytes made durable by one group commit round",
            Unit::Bytes,
            m.group_commit_bytes,
        );
        registry.register(
            "segments",
            "Segment replicas held (open and sealed)",
            m.segments,
        );
        registry.register(
            "connections",
            "Client and peer connections open",
            m.connections,
        );
        registry.register(
            "connections_refused",
            "Connections refused because the shard had its maximum open",
            m.connections_refused,
        );
        registry.register(
            "connections_closed",
            "Connections closed, by reason",
            m.closed,
        );
        registry.register(
            "error_answers",
            "Requests answered with an error, by error code",
            m.errors,
        );
        registry.register(
            "disk_errors",
            "Disk operations that failed, by operation",
            m.disk_errors,
        );
        registry.register(
            "segments_deleted",
            "Segment replicas deleted (trimmed, or their log deleted)",
            m.segments_deleted,
        );
        registry.register_with_unit(
            "scrub",
            "Bytes of sealed segments re-read and checked by the scrub",
            Unit::Bytes,
            m.scrub_bytes,
        );
        registry.register(
            "damage_found",
            "Damaged records found (by a read, the scrub or recovery)",
            m.damage_found,
        );
    }
}
