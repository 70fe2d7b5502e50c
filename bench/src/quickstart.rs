//! The quickstart: a 5-node cluster of real processes on loopback, a
//! producer and a consumer running at once, and a check that every
//! committed entry was read back exactly once, in order, with its payload.
//!
//! By default it kills (SIGKILL) one node holding a replica of the open
//! segment halfway through: the producer seals that segment at its commit
//! watermark and goes on in a new one on other nodes, resending what was
//! in flight, so every append still commits and the log ends with at
//! least two segments.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use trilog_client::{Consumer, Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterError};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::{make_payload, payload_id};
use trilog_testkit::verify::{verify, Verdict};

use crate::latency::{new_histogram, record, summarize, table};

/// What the quickstart runs.
#[derive(Debug, Clone)]
pub struct QuickstartConfig {
    pub nodes: usize,
    pub duration: Duration,
    pub payload_bytes: usize,
    /// Appends each producer task keeps in flight.
    pub concurrency: usize,
    pub log_id: u64,
    /// Kill a replica of the open segment (never node 1, which serves the
    /// metadata) halfway through.
    pub kill: bool,
}

/// What it found.
#[derive(Debug, Clone)]
pub struct QuickstartReport {
    pub appended: u64,
    pub verdict: Verdict,
    pub segments: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub table: String,
    pub elapsed: Duration,
    /// The node killed halfway through, if one was.
    pub killed: Option<u64>,
}

impl QuickstartReport {
    pub fn line(&self, nodes: usize) -> String {
        let v = &self.verdict;
        format!(
            "quickstart: nodes={nodes} appended={} committed={} read={} lost={} duplicated={} out_of_order={} segments={} p50_us={} p99_us={}",
            self.appended, v.committed, v.read, v.lost, v.duplicated, v.out_of_order, self.segments, self.p50_us, self.p99_us
        )
    }

    pub fn clean(&self) -> bool {
        let v = &self.verdict;
        v.lost == 0
            && v.duplicated == 0
            && v.out_of_order == 0
            && v.phantom == 0
            && v.committed == self.appended
            && v.read == v.committed
            // A kill of a replica of the open segment forces a switch.
            && (self.killed.is_none() || self.segments >= 2)
    }
}

/// Long-poll of one read of the tailing consumer.
const TAIL_POLL_MS: u64 = 200;
/// How long the consumer may read on once told where the log ends.
const TAIL_AFTER_END: Duration = Duration::from_secs(30);
/// How often the run looks at the clock, the log and the progress.
const TICK_MS: u64 = 100;
/// How often it prints the count of committed entries.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Starts the cluster, runs the load with a consumer beside it (and the
/// kill, if asked), then checks what was read against what committed.
pub async fn run(cfg: QuickstartConfig) -> Result<QuickstartReport, ClusterError> {
    println!(
        "starting {} trilog nodes (real processes, loopback, embedded metadata on node 1)...",
        cfg.nodes
    );
    let mut cluster = Cluster::start(cfg.nodes, NodeCommand::this_exe()?, None).await?;
    println!(
        "cluster up in {}; metadata at {}",
        cluster.dir.display(),
        cluster.meta_addr
    );
    let pool = cluster.pool();
    let producer =
        Arc::new(Producer::open(pool.clone(), cfg.log_id, ProducerOptions::default()).await?);
    let started = Instant::now();
    // The consumer reads while the producer writes.
    let tail = Tail::start(Consumer::open(pool.clone(), cfg.log_id, 0).await?);
    let appenders = Appenders::start(&producer, cfg.concurrency, cfg.payload_bytes);
    let killed = drive(&mut cluster, &cfg, &appenders, started).await?;
    let (hist, committed, appended) = appenders.stop().await;
    let elapsed = started.elapsed();
    let end = committed.keys().max().map(|m| m + 1).unwrap_or(0);
    let reads = tail.finish(end).await;
    if let Ok(p) = Arc::try_unwrap(producer) {
        if let Err(e) = p.close().await {
            eprintln!("producer close: {e}");
        }
    }
    let segments = match cluster.meta().get_log(cfg.log_id).await?.record {
        Some(r) => r.segments.len(),
        None => 0,
    };
    let s = summarize(&hist);
    let ops = s.count as f64 / elapsed.as_secs_f64();
    let table = format!(
        "{}throughput: {ops:.0} appends/s ({} B payloads, {} in flight, 3 replicas, fdatasync before every ack)\n",
        table(&[("append (commit on 3/3)", s)]),
        cfg.payload_bytes,
        cfg.concurrency
    );
    Ok(QuickstartReport {
        appended,
        verdict: verify(&committed, &reads, &[]),
        segments,
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        table,
        elapsed,
        killed,
    })
}

/// Runs the load for the configured time: kills a replica of the open
/// segment halfway through (if asked), says when the producer switched
/// away from it, and prints the progress. Returns the node killed.
async fn drive(
    cluster: &mut Cluster,
    cfg: &QuickstartConfig,
    appenders: &Appenders,
    started: Instant,
) -> Result<Option<u64>, ClusterError> {
    let mut last_report = Instant::now();
    let mut killed = None;
    let mut switch_shown = false;
    while started.elapsed() < cfg.duration {
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
        if cfg.kill && killed.is_none() && started.elapsed() >= cfg.duration / 2 {
            let (victim, segment, replicas) = open_replica(cluster, cfg.log_id).await?;
            println!(
                "  {:>4.1}s  killing node {victim} (kill -9), a replica of the open segment {segment} on {replicas:?}",
                started.elapsed().as_secs_f64(),
            );
            cluster.kill(victim)?;
            killed = Some(victim);
        }
        if killed.is_some() && !switch_shown {
            if let Some(line) = switch_note(cluster, cfg.log_id).await {
                println!("  {:>4.1}s  {line}", started.elapsed().as_secs_f64());
                switch_shown = true;
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let n = appenders.committed_len();
            println!("  {:>4.1}s  committed {n}", started.elapsed().as_secs_f64());
        }
    }
    Ok(killed)
}

/// Workers appending through one producer, each one append at a time,
/// timing each append and keeping seq -> payload id of every commit.
struct Appenders {
    stop: Arc<AtomicBool>,
    appended: Arc<AtomicU64>,
    committed: Arc<Mutex<HashMap<u64, u64>>>,
    workers: Vec<JoinHandle<Histogram<u64>>>,
}

impl Appenders {
    fn start(producer: &Arc<Producer>, concurrency: usize, payload_bytes: usize) -> Appenders {
        assert!(concurrency > 0, "at least one worker");
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(0));
        let appended = Arc::new(AtomicU64::new(0));
        let committed = Arc::new(Mutex::new(HashMap::new()));
        let workers = (0..concurrency)
            .map(|_| {
                tokio::spawn(append_loop(
                    producer.clone(),
                    stop.clone(),
                    next_id.clone(),
                    appended.clone(),
                    committed.clone(),
                    payload_bytes,
                ))
            })
            .collect();
        Appenders {
            stop,
            appended,
            committed,
            workers,
        }
    }

    fn committed_len(&self) -> usize {
        self.committed.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Stops the workers once their append in flight resolved; returns
    /// the latencies, the committed entries and the appends started.
    async fn stop(self) -> (Histogram<u64>, HashMap<u64, u64>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let mut hist = new_histogram();
        for w in self.workers {
            if let Ok(h) = w.await {
                let _ = hist.add(&h);
            }
        }
        let committed = match Arc::try_unwrap(self.committed) {
            Ok(m) => m.into_inner().unwrap_or_default(),
            Err(arc) => arc.lock().map(|m| m.clone()).unwrap_or_default(),
        };
        (hist, committed, self.appended.load(Ordering::SeqCst))
    }
}

async fn append_loop(
    producer: Arc<Producer>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    appended: Arc<AtomicU64>,
    committed: Arc<Mutex<HashMap<u64, u64>>>,
    payload_bytes: usize,
) -> Histogram<u64> {
    let mut h = new_histogram();
    while !stop.load(Ordering::Relaxed) {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let payload = make_payload(id, payload_bytes);
        let t0 = Instant::now();
        appended.fetch_add(1, Ordering::Relaxed);
        match producer.append(payload).await {
            Ok(seq) => {
                record(&mut h, t0.elapsed().as_micros() as u64);
                // A poisoned lock means a writer panicked: the run is
                // void, not "lost" entries.
                committed.lock().expect("committed map").insert(seq, id);
            }
            Err(e) => eprintln!("append {id}: {e}"),
        }
    }
    h
}

/// The consumer reading beside the producer until told where the log
/// ends; it records (seq, payload id) of every entry in the order read.
struct Tail {
    /// Where the log ends; `u64::MAX` while the load runs.
    end: Arc<AtomicU64>,
    task: JoinHandle<Vec<(u64, Option<u64>)>>,
}

impl Tail {
    fn start(consumer: Consumer) -> Tail {
        let end = Arc::new(AtomicU64::new(u64::MAX));
        let task = tokio::spawn(tail_loop(consumer, end.clone()));
        Tail { end, task }
    }

    /// Reads up to `end` (exclusive), for at most [`TAIL_AFTER_END`] more.
    async fn finish(self, end: u64) -> Vec<(u64, Option<u64>)> {
        assert!(end < u64::MAX, "u64::MAX means no end");
        self.end.store(end, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

async fn tail_loop(mut consumer: Consumer, end: Arc<AtomicU64>) -> Vec<(u64, Option<u64>)> {
    let mut reads = Vec::new();
    let mut end_seen: Option<Instant> = None;
    loop {
        let end = end.load(Ordering::SeqCst);
        if end != u64::MAX {
            let since = *end_seen.get_or_insert_with(Instant::now);
            if consumer.position() >= end || since.elapsed() > TAIL_AFTER_END {
                break;
            }
        }
        match consumer
            .next_batch(Duration::from_millis(TAIL_POLL_MS))
            .await
        {
            Ok(batch) => reads.extend(batch.into_iter().map(|r| (r.seq, payload_id(&r.payload)))),
            Err(e) => {
                eprintln!("consumer: {e}");
                break;
            }
        }
    }
    reads
}

/// A node other than node 1 (which serves the metadata) that holds a
/// replica of the log's open segment; with the segment and its replicas.
async fn open_replica(
    cluster: &Cluster,
    log_id: u64,
) -> Result<(u64, u64, Vec<u64>), ClusterError> {
    let record = cluster.meta().get_log(log_id).await?.record;
    let open = record
        .as_ref()
        .and_then(|r| r.segments.last())
        .filter(|s| s.sealed_len.is_none());
    let victim = open.and_then(|s| {
        s.replicas
            .iter()
            .copied()
            .find(|n| *n != 1)
            .map(|n| (n, s.id, s.replicas.clone()))
    });
    victim.ok_or_else(|| ClusterError::Node {
        node: 0,
        why: format!("log {log_id} has no open segment with a replica to kill"),
    })
}

/// Once the producer switched: "segment 0 sealed at N; segment 1 on [..]".
async fn switch_note(cluster: &Cluster, log_id: u64) -> Option<String> {
    let record = cluster.meta().get_log(log_id).await.ok()?.record?;
    let n = record.segments.len();
    if n < 2 {
        return None;
    }
    let (sealed, next) = (&record.segments[n - 2], &record.segments[n - 1]);
    Some(format!(
        "the producer switched: segment {} sealed at {} entries; segment {} on {:?}",
        sealed.id,
        sealed.sealed_len.unwrap_or(0),
        next.id,
        next.replicas
    ))
}
