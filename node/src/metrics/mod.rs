//! The node's metrics, served in the Prometheus text format (OpenMetrics)
//! on the admin port (`crate::admin`). Names follow Prometheus
//! conventions: a `trilog_` prefix, base units in the name (`_bytes`,
//! `_seconds`), `_total` on counters. `docs/metrics.md` says what each
//! one means and what to alert on.
//!
//! Three kinds of sources: the shards count into their own
//! [`ShardMetrics`] (labelled `shard`); the repair thread into
//! [`RepairMetrics`]; and what is a state rather than an event (disk
//! space, read-only, registration) is sampled when scraped
//! ([`NodeSample`]), so it is never stale.

pub mod labels;
pub mod shard;

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use labels::{BuildLabels, OutcomeLabel, ShardLabel};
pub use shard::{CloseReason, DiskOp, ShardMetrics};

/// How a repair job ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepairOutcome {
    /// A copy replacing a lost node's was made and published.
    Published,
    /// This node's own copy was filled back (a replaced node) or healed.
    Refilled,
    /// Given up for good (the lost node came back, the log was deleted).
    Abandoned,
    /// Failed; retried at a later scan.
    Failed,
}

impl RepairOutcome {
    pub const ALL: [RepairOutcome; 4] = [
        RepairOutcome::Published,
        RepairOutcome::Refilled,
        RepairOutcome::Abandoned,
        RepairOutcome::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RepairOutcome::Published => "published",
            RepairOutcome::Refilled => "refilled",
            RepairOutcome::Abandoned => "abandoned",
            RepairOutcome::Failed => "failed",
        }
    }
}

/// The repair thread's metrics. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct RepairMetrics {
    jobs: Family<OutcomeLabel, Counter>,
    pub bytes: Counter,
    pub entries: Counter,
}

impl RepairMetrics {
    pub fn job_ended(&self, outcome: RepairOutcome) {
        self.jobs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.name(),
            })
            .inc();
    }

    /// A job's copied bytes and entries.
    pub fn copied(&self, entries: u64, bytes: u64) {
        self.entries.inc_by(entries);
        self.bytes.inc_by(bytes);
    }
}

/// The node's state when scraped (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSample {
    pub disk_used_bytes: u64,
    pub disk_free_bytes: u64,
    pub read_only: bool,
    pub leaving: bool,
    pub registered: bool,
    pub shards_running: usize,
    /// Repair jobs copying now.
    pub repairs_running: usize,
    /// This node's copies reported short of their seal, to heal.
    pub copies_to_heal: usize,
}

/// Every metric of a node, in one registry.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    disk_used: Gauge,
    disk_free: Gauge,
    read_only: Gauge,
    leaving: Gauge,
    registered: Gauge,
    shards_running: Gauge,
    repairs_running: Gauge,
    copies_to_heal: Gauge,
    pub repair: RepairMetrics,
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

impl NodeMetrics {
    pub fn new(node_id: u64, zone: &str) -> NodeMetrics {
        let mut registry = Registry::with_prefix("trilog");
        let m = NodeMetrics {
            registry: Mutex::new(Registry::default()),
            disk_used: Gauge::default(),
            disk_free: Gauge::default(),
            read_only: Gauge::default(),
            leaving: Gauge::default(),
            registered: Gauge::default(),
            shards_running: Gauge::default(),
            repairs_running: Gauge::default(),
            copies_to_heal: Gauge::default(),
            repair: RepairMetrics::default(),
        };
        for outcome in RepairOutcome::ALL {
            // Every outcome's series from the first scrape.
            let _ = m.repair.jobs.get_or_create(&OutcomeLabel {
                outcome: outcome.name(),
            });
        }
        registry.register(
            "build",
            "The node's version, id and zone",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                node_id,
                zone: zone.to_string(),
            }),
        );
        registry.register_with_unit(
            "disk_used",
            "Bytes used on the data directory's file system",
            Unit::Bytes,
            m.disk_used.clone(),
        );
        registry.register_with_unit(
            "disk_free",
            "Bytes free to the node on the data directory's file system",
            Unit::Bytes,
            m.disk_free.clone(),
        );
        registry.register(
            "read_only",
            "1 while the node takes no new data (disk below its reserve, or an allocation failed for space)",
            m.read_only.clone(),
        );
        registry.register(
            "leaving",
            "1 while the node is being decommissioned",
            m.leaving.clone(),
        );
        registry.register(
            "registered",
            "1 while the node's registration with the metadata store is current",
            m.registered.clone(),
        );
        registry.register("shards_running", "Shards serving", m.shards_running.clone());
        registry.register(
            "repairs_running",
            "Repair copies in progress on this node",
            m.repairs_running.clone(),
        );
        registry.register(
            "copies_to_heal",
            "This node's copies short of their seal, waiting to be healed",
            m.copies_to_heal.clone(),
        );
        registry.register(
            "repair_jobs",
            "Repair jobs ended, by outcome",
            m.repair.jobs.clone(),
        );
        registry.register_with_unit(
            "repair",
            "Bytes copied by repairs",
            Unit::Bytes,
            m.repair.bytes.clone(),
        );
        registry.register(
            "repair_entries",
            "Entries copied by repairs",
            m.repair.entries.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }

    /// Adds shard `shard`'s metrics, labelled with its index.
    pub fn add_shard(&self, shard: u32, metrics: &ShardMetrics) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let label = ShardLabel { shard };
        metrics.register(
            registry.sub_registry_with_label(("shard".into(), label.shard.to_string().into())),
        );
    }

    /// The text exposition of every metric, the sampled ones as `now`.
    pub fn render(&self, now: &NodeSample) -> String {
        self.disk_used.set(saturating_i64(now.disk_used_bytes));
        self.disk_free.set(saturating_i64(now.disk_free_bytes));
        self.read_only.set(flag(now.read_only));
        self.leaving.set(flag(now.leaving));
        self.registered.set(flag(now.registered));
        self.shards_running
            .set(saturating_i64(now.shards_running as u64));
        self.repairs_running
            .set(saturating_i64(now.repairs_running as u64));
        self.copies_to_heal
            .set(saturating_i64(now.copies_to_heal as u64));
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_with_its_unit_and_suffix() {
        let node = NodeMetrics::new(7, "a");
        let shard = ShardMetrics::new();
        node.add_shard(0, &shard);
        shard.appends.inc();
        shard.append_bytes.inc_by(4096);
        shard.fsynced(std::time::Duration::from_micros(300));
        shard.error_answered(trilog_wire::message::ErrorCode::Fenced);
        shard.connection_closed(CloseReason::Idle);
        node.repair.copied(3, 300);
        node.repair.job_ended(RepairOutcome::Published);
        let text = node.render(&NodeSample {
            disk_used_bytes: 10,
            disk_free_bytes: 20,
            registered: true,
            shards_running: 1,
            ..NodeSample::default()
        });
        for line in [
            "trilog_build_info{version=\"",
            "trilog_appends_total{shard=\"0\"} 1",
            "trilog_append_bytes_total{shard=\"0\"} 4096",
            "trilog_fsyncs_total{shard=\"0\"} 1",
            "trilog_fsync_duration_seconds_count{shard=\"0\"} 1",
            "trilog_error_answers_total{shard=\"0\",code=\"fenced\"} 1",
            "trilog_error_answers_total{shard=\"0\",code=\"sealed\"} 0",
            "trilog_connections_closed_total{shard=\"0\",reason=\"idle\"} 1",
            "trilog_disk_used_bytes 10",
            "trilog_disk_free_bytes 20",
            "trilog_registered 1",
            "trilog_read_only 0",
            "trilog_repair_bytes_total 300",
            "trilog_repair_jobs_total{outcome=\"published\"} 1",
            "trilog_repair_jobs_total{outcome=\"failed\"} 0",
            "# TYPE trilog_fsync_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
    }
}
