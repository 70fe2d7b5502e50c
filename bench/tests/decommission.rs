//! Decommission on real node processes: `trilog node decommission`'s
//! library call takes a node out of a 6-node, 3-zone cluster while a
//! producer keeps appending to a log whose open segment is on it. The
//! producer switches away without an error, every sealed segment the node
//! held is moved to another node (3 replicas in 3 zones), every copy holds
//! exactly the committed entries, the node exits by itself with status 0,
//! and its id is refused when it is started again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trilog_client::decommission::{decommission, Decommissioned, Drain};
use trilog_client::{Consumer, Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterOptions};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::{make_payload, payload_id};
use trilog_testkit::reader::read_segment_ids_from;
use trilog_testkit::wait::wait_for;
use trilog_wire::meta::{LogMeta, NodeMode};

const ZONES: [&str; 6] = ["a", "a", "b", "b", "c", "c"];
/// Logs written and closed before the decommission: sealed segments only.
const SEALED_LOGS: std::ops::Range<u64> = 1..5;
/// The log a producer appends to during the decommission.
const LIVE_LOG: u64 = 9;
const ENTRIES_PER_SEGMENT: u64 = 200;
const ENTRY_BYTES: usize = 4096;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

fn node_addr(cluster: &Cluster, node: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], cluster.nodes[node as usize - 1].port))
}

async fn write_closed(cluster: &Cluster, log: u64, committed: &mut HashMap<u64, u64>) {
    for s in 0..2u64 {
        let producer = Producer::open(cluster.pool(), log, ProducerOptions::default())
            .await
            .expect("open");
        let mut pending = Vec::new();
        for i in 0..ENTRIES_PER_SEGMENT {
            let id = log * 1_000_000 + s * 10_000 + i;
            let f = producer
                .submit(make_payload(id, ENTRY_BYTES))
                .await
                .expect("submit");
            pending.push((id, f));
        }
        for (id, f) in pending {
            committed.insert(f.await.expect("committed"), id);
        }
        producer.close().await.expect("close");
    }
}

async fn all_records(cluster: &Cluster) -> BTreeMap<u64, LogMeta> {
    let meta = cluster.meta();
    let mut out = BTreeMap::new();
    for log in meta.list_logs().await.expect("logs") {
        if let Some(r) = meta.get_log(log).await.expect("log").record {
            out.insert(log, r);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_node_is_drained_into_three_zones_then_removed_for_good() {
    let mut cluster = Cluster::start_with(
        ZONES.len(),
        node_command(),
        None,
        ClusterOptions {
            zones: ZONES.iter().map(|z| z.to_string()).collect(),
            ..ClusterOptions::default()
        },
    )
    .await
    .expect("cluster");
    let mut committed: HashMap<u64, HashMap<u64, u64>> = HashMap::new();
    for log in SEALED_LOGS {
        write_closed(&cluster, log, committed.entry(log).or_default()).await;
    }

    // A producer whose open segment is on the node to decommission (not
    // node 1, which serves the metadata store): open segments until one
    // has a replica other than node 1 that also holds sealed copies.
    let producer = Arc::new(
        Producer::open(cluster.pool(), LIVE_LOG, ProducerOptions::default())
            .await
            .expect("open"),
    );
    let mut live: HashMap<u64, u64> = HashMap::new();
    for i in 0..10u64 {
        let id = LIVE_LOG * 1_000_000 + i;
        let seq = producer
            .submit(make_payload(id, ENTRY_BYTES))
            .await
            .expect("submit")
            .await
            .expect("committed");
        live.insert(seq, id);
    }
    let before = all_records(&cluster).await;
    let open = before[&LIVE_LOG]
        .segments
        .last()
        .expect("a segment")
        .clone();
    assert!(
        open.sealed_len.is_none(),
        "the live log's last segment is open"
    );
    let victim = *open
        .replicas
        .iter()
        .find(|n| **n != 1)
        .expect("a replica besides node 1");
    let sealed_on_victim = before
        .values()
        .flat_map(|r| &r.segments)
        .filter(|s| s.sealed_len.is_some() && s.replicas.contains(&victim))
        .count();
    println!("decommissioning node {victim}: {sealed_on_victim} sealed segments and the open segment {} of log {LIVE_LOG}", open.id);

    // The producer keeps appending, one entry at a time, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut i = 1_000u64;
            while !stop.load(Ordering::SeqCst) {
                let id = LIVE_LOG * 1_000_000 + i;
                let seq = producer
                    .submit(make_payload(id, ENTRY_BYTES))
                    .await
                    .expect("submit while the node leaves")
                    .await
                    .expect("committed while the node leaves");
                got.push((seq, id));
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            got
        })
    };

    let started = Instant::now();
    let mut steps: Vec<Drain> = Vec::new();
    let outcome = decommission(&cluster.pool(), victim, Duration::from_secs(120), |d| {
        steps.push(d.clone())
    })
    .await
    .expect("decommission");
    let took = started.elapsed();
    assert_eq!(outcome, Decommissioned::Removed, "drain steps: {steps:?}");
    let first = steps.first().expect("progress was reported");
    assert!(
        first.sealed() >= sealed_on_victim && first.open() == 1,
        "{first:?}"
    );
    assert!(steps.last().expect("a step").done());
    println!(
        "node {victim} drained and removed in {:.1} s over {} progress steps",
        took.as_secs_f64(),
        steps.len()
    );

    // The node exits by itself, with status 0.
    let status = wait_for("the removed node to exit", Duration::from_secs(30), || {
        let status = cluster.exited(victim).expect("try_wait");
        async move { status }
    })
    .await
    .expect("exited");
    assert!(status.success(), "the removed node exited with {status}");

    stop.store(true, Ordering::SeqCst);
    for (seq, id) in appender.await.expect("the appender ran") {
        live.insert(seq, id);
    }
    Arc::into_inner(producer)
        .expect("the only handle left")
        .close()
        .await
        .expect("close");
    committed.insert(LIVE_LOG, live);

    // No record names the node; every sealed segment has 3 replicas in 3
    // zones, each holding exactly the committed entries.
    let zone_of = |node: u64| ZONES[node as usize - 1];
    let after = all_records(&cluster).await;
    for (log, r) in &after {
        for s in r.segments.iter().chain(&r.deleting) {
            assert!(
                !s.replicas.contains(&victim),
                "log {log} segment {} still names node {victim}: {:?}",
                s.id,
                s.replicas
            );
        }
        for s in &r.segments {
            let len = s.sealed_len.expect("every log is closed: all sealed");
            let mut zones: Vec<&str> = s.replicas.iter().map(|n| zone_of(*n)).collect();
            zones.sort_unstable();
            zones.dedup();
            assert_eq!(
                zones.len(),
                3,
                "log {log} segment {}: {:?}",
                s.id,
                s.replicas
            );
            for node in &s.replicas {
                let got = read_segment_ids_from(node_addr(&cluster, *node), *log, s.id, len)
                    .await
                    .expect("read the replica");
                for (offset, id) in got.iter().enumerate() {
                    let seq = s.first_seq + offset as u64;
                    assert_eq!(
                        committed[log].get(&seq),
                        Some(id),
                        "log {log} seq {seq} on node {node}"
                    );
                }
            }
        }
    }
    // The live log reads back whole, in order, through a consumer.
    let mut consumer = Consumer::open(cluster.pool(), LIVE_LOG, 0)
        .await
        .expect("consumer");
    let want = committed[&LIVE_LOG].len() as u64;
    while consumer.position() < want {
        for r in consumer
            .next_batch(Duration::from_secs(5))
            .await
            .expect("read")
        {
            assert_eq!(
                committed[&LIVE_LOG].get(&r.seq),
                Some(&payload_id(&r.payload).expect("a test payload")),
                "seq {}",
                r.seq
            );
        }
    }

    // Removed for good: listed so, not alive, and refused at start.
    let meta = cluster.meta();
    let modes = meta.node_modes().await.expect("modes");
    assert!(
        modes
            .iter()
            .any(|m| m.node_id == victim && m.mode == NodeMode::Removed),
        "{modes:?}"
    );
    let alive = meta.list_nodes(false).await.expect("nodes");
    assert!(alive.iter().all(|n| n.info.node_id != victim), "{alive:?}");
    let refused = cluster.spawn(victim).expect_err("a removed id starts");
    assert!(
        refused.to_string().contains("removed from the cluster"),
        "{refused}"
    );
}
