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

use trilog_client::{Consumer, Producer, ProducerOptions};

use crate::cluster::{Cluster, ClusterError, NodeCommand};
use crate::latency::{new_histogram, record, summarize, table};
use crate::verify::{make_payload, payload_id, verify, Verdict};

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
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(0));
    let appended = Arc::new(AtomicU64::new(0));
    let committed: Arc<Mutex<HashMap<u64, u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let started = Instant::now();

    // The consumer reads while the producer writes.
    let mut consumer = Consumer::open(pool.clone(), cfg.log_id, 0).await?;
    let consumer_stop = Arc::new(AtomicU64::new(u64::MAX));
    let cstop = consumer_stop.clone();
    let reader = tokio::spawn(async move {
        let mut reads: Vec<(u64, Option<u64>)> = Vec::new();
        let deadline_after_stop = Duration::from_secs(30);
        let mut stop_seen: Option<Instant> = None;
        loop {
            let end = cstop.load(Ordering::SeqCst);
            if end != u64::MAX {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if consumer.position() >= end || since.elapsed() > deadline_after_stop {
                    break;
                }
            }
            match consumer.next_batch(Duration::from_millis(200)).await {
                Ok(batch) => {
                    reads.extend(batch.into_iter().map(|r| (r.seq, payload_id(&r.payload))))
                }
                Err(e) => {
                    eprintln!("consumer: {e}");
                    break;
                }
            }
        }
        reads
    });

    let mut workers = Vec::new();
    for _ in 0..cfg.concurrency {
        let producer = producer.clone();
        let stop = stop.clone();
        let next_id = next_id.clone();
        let appended = appended.clone();
        let committed = committed.clone();
        let size = cfg.payload_bytes;
        workers.push(tokio::spawn(async move {
            let mut h = new_histogram();
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let payload = make_payload(id, size);
                let t0 = Instant::now();
                appended.fetch_add(1, Ordering::Relaxed);
                match producer.append(payload).await {
                    Ok(seq) => {
                        record(&mut h, t0.elapsed().as_micros() as u64);
                        // A poisoned lock means a writer panicked: the
                        // run is void, not "lost" entries.
                        committed.lock().expect("committed map").insert(seq, id);
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("append {id}: {e}");
                    }
                }
            }
            (h, failures)
        }));
    }
    let mut last_report = Instant::now();
    let mut killed = None;
    let mut switch_shown = false;
    while started.elapsed() < cfg.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if cfg.kill && killed.is_none() && started.elapsed() >= cfg.duration / 2 {
            let (victim, segment, replicas) = open_replica(&cluster, cfg.log_id).await?;
            println!(
                "  {:>4.1}s  killing node {victim} (kill -9), a replica of the open segment {segment} on {replicas:?}",
                started.elapsed().as_secs_f64(),
            );
            cluster.kill(victim)?;
            killed = Some(victim);
        }
        if killed.is_some() && !switch_shown {
            if let Some(line) = switch_note(&cluster, cfg.log_id).await {
                println!("  {:>4.1}s  {line}", started.elapsed().as_secs_f64());
                switch_shown = true;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let n = committed.lock().map(|c| c.len()).unwrap_or(0);
            println!("  {:>4.1}s  committed {n}", started.elapsed().as_secs_f64());
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut hist = new_histogram();
    for w in workers {
        if let Ok((h, _failures)) = w.await {
            let _ = hist.add(&h);
        }
    }
    let elapsed = started.elapsed();
    let committed = match Arc::try_unwrap(committed) {
        Ok(m) => m.into_inner().unwrap_or_default(),
        Err(arc) => arc.lock().map(|m| m.clone()).unwrap_or_default(),
    };
    let end = committed.keys().max().map(|m| m + 1).unwrap_or(0);
    consumer_stop.store(end, Ordering::SeqCst);
    let reads = reader.await.unwrap_or_default();
    if let Ok(p) = Arc::try_unwrap(producer) {
        if let Err(e) = p.close().await {
            eprintln!("producer close: {e}");
        }
    }
    let segments = match cluster.meta().get_log(cfg.log_id).await?.record {
        Some(r) => r.segments.len(),
        None => 0,
    };
    let verdict = verify(&committed, &reads, &[]);
    let s = summarize(&hist);
    let ops = s.count as f64 / elapsed.as_secs_f64();
    let table = format!(
        "{}throughput: {ops:.0} appends/s ({} B payloads, {} in flight, 3 replicas, fdatasync before every ack)\n",
        table(&[("append (commit on 3/3)", s)]),
        cfg.payload_bytes,
        cfg.concurrency
    );
    Ok(QuickstartReport {
        appended: appended.load(Ordering::SeqCst),
        verdict,
        segments,
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        table,
        elapsed,
        killed,
    })
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
