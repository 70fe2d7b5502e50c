//! Many logs at once (one per database shard): one producer per log on
//! one 5-node cluster, all of them together offered the same total load
//! whatever their number, so a run with 1,000 logs differs from one with
//! 1 only in how the load is spread. Each run reports its rate, its
//! latency and the largest node's resident memory after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trilog_client::{ClientError, Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;

use crate::load::{run, AppendFuture, LoadConfig, Mode, Target};

/// One run's figures, as the JSON report carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleRun {
    pub logs: usize,
    /// Appends committed per second.
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The resident memory of the largest node after the run.
    pub node_rss_bytes: u64,
    /// Appends that failed, or were not started (the open loop's bound on
    /// appends in flight was reached).
    pub errors: u64,
    pub dropped: u64,
}

/// The whole document: `{"runs": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    pub runs: Vec<ScaleRun>,
}

/// Appends spread over many producers, one after another in turn.
struct ManyLogs {
    producers: Vec<Producer>,
    next: AtomicUsize,
}

impl Target for ManyLogs {
    fn name(&self) -> &str {
        "trilog"
    }

    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.producers.len();
        let producer = &self.producers[i];
        Box::pin(async move {
            let mut pending = Vec::with_capacity(entries.len());
            for e in entries {
                pending.push(producer.submit(e).await.map_err(|e| e.to_string())?);
            }
            for p in pending {
                p.await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("open log {log}: {source}")]
    Open { log: u64, source: ClientError },
    #[error("a task opening a producer failed: {0}")]
    Task(String),
}

/// How a run offers its load.
#[derive(Debug, Clone, Copy)]
pub struct ScaleLoad {
    /// Appends per second over all logs together.
    pub rate_per_s: f64,
    pub in_flight_max: usize,
    pub payload_bytes: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// Producers opened at once while a run starts.
const OPENING_AT_ONCE: usize = 32;

/// Opens `logs` producers on logs `first_log..`, then offers `load` across
/// them, in turn.
pub async fn scale_run(
    cluster: &Cluster,
    logs: usize,
    first_log: u64,
    load: ScaleLoad,
) -> Result<ScaleRun, ScaleError> {
    assert!(logs > 0, "a run has a log");
    let mut producers = Vec::with_capacity(logs);
    let ids: Vec<u64> = (first_log..first_log + logs as u64).collect();
    for chunk in ids.chunks(OPENING_AT_ONCE) {
        let mut opening = tokio::task::JoinSet::new();
        for &log in chunk {
            let pool = cluster.pool();
            opening.spawn(async move {
                Producer::open(pool, log, ProducerOptions::default())
                    .await
                    .map_err(|source| ScaleError::Open { log, source })
            });
        }
        while let Some(opened) = opening.join_next().await {
            let opened = opened.map_err(|e| ScaleError::Task(e.to_string()))?;
            producers.push(opened?);
        }
    }
    let target = Arc::new(ManyLogs {
        producers,
        next: AtomicUsize::new(0),
    });
    let result = run(
        target,
        LoadConfig {
            mode: Mode::Open {
                rate_per_s: load.rate_per_s,
                in_flight_max: load.in_flight_max,
            },
            payload_bytes: load.payload_bytes,
            batch: 1,
            duration: load.duration,
            warmup: load.warmup,
            progress: true,
        },
    )
    .await;
    let node_rss_bytes = cluster
        .nodes
        .iter()
        .filter_map(|n| n.pid().and_then(rss_bytes))
        .max()
        .unwrap_or(0);
    Ok(ScaleRun {
        logs,
        ops_per_s: (result.ops_per_s() * 10.0).round() / 10.0,
        p50_us: result.histogram.value_at_quantile(0.5),
        p99_us: result.histogram.value_at_quantile(0.99),
        node_rss_bytes,
        errors: result.errors,
        dropped: result.dropped,
    })
}

/// The resident memory of process `pid` (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_rss_bytes(&status)
}

fn status_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_lines() {
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(status_rss_bytes(status), Some(1234 * 1024));
        assert_eq!(status_rss_bytes("Name:\tx\n"), None);
        let own = rss_bytes(std::process::id()).expect("procfs");
        assert!(own > 0);
    }

    #[test]
    fn the_report_reads_back() {
        let report = ScaleReport {
            runs: vec![ScaleRun {
                logs: 1000,
                ops_per_s: 1999.5,
                p50_us: 900,
                p99_us: 4000,
                node_rss_bytes: 1 << 26,
                errors: 0,
                dropped: 0,
            }],
        };
        let text = serde_json::to_string(&report).expect("json");
        assert!(text.contains("\"logs\":1000") && text.contains("\"node_rss_bytes\""));
        let back: ScaleReport = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, report);
    }
}
