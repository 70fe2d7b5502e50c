//! Repair on real node processes: a node killed for good, and every sealed
//! segment it held copied to another node by the cluster itself, back to
//! 3 replicas in 3 zones, every copy holding every committed entry; and a
//! repair cancelled when the lost node comes back before it publishes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use trilog_client::repair_status::under_replicated;
use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterOptions};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::make_payload;
use trilog_testkit::reader::read_segment_ids_from;
use trilog_testkit::wait::wait_for;
use trilog_wire::meta::LogMeta;

const ZONES: [&str; 6] = ["a", "a", "b", "b", "c", "c"];
const LOGS: std::ops::Range<u64> = 1..5;
const SEGMENTS_PER_LOG: u64 = 2;
const ENTRIES_PER_SEGMENT: u64 = 300;
const ENTRY_BYTES: usize = 4096;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

async fn start(extra: &[&str]) -> Cluster {
    let mut node_args = vec!["--repair-grace-secs".to_string(), "2".to_string()];
    node_args.extend(extra.iter().map(|a| a.to_string()));
    Cluster::start_with(
        ZONES.len(),
        node_command(),
        None,
        ClusterOptions {
            zones: ZONES.iter().map(|z| z.to_string()).collect(),
            node_args,
            ..ClusterOptions::default()
        },
    )
    .await
    .expect("cluster")
}

/// Writes `SEGMENTS_PER_LOG` sealed segments to `log` (one producer each,
/// closed); returns seq -> payload id.
async fn write(cluster: &Cluster, log: u64) -> HashMap<u64, u64> {
    let mut committed = HashMap::new();
    for s in 0..SEGMENTS_PER_LOG {
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
    committed
}

/// The records of the logs written (log ids from `LOGS.start`).
async fn records(cluster: &Cluster) -> BTreeMap<u64, LogMeta> {
    let mut out = BTreeMap::new();
    for log in LOGS {
        if cluster
            .meta()
            .get_log(log)
            .await
            .expect("meta")
            .record
            .is_none()
        {
            assert!(log > LOGS.start, "log {log} was written");
            break;
        }
        let record = cluster.meta().get_log(log).await.expect("meta").record;
        out.insert(log, record.expect("log exists"));
    }
    out
}

fn node_addr(cluster: &Cluster, node: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], cluster.nodes[node as usize - 1].port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_for_good_has_every_sealed_segment_copied_back_to_three_zones() {
    let mut cluster = start(&[]).await;
    let mut committed = HashMap::new();
    for log in LOGS {
        committed.insert(log, write(&cluster, log).await);
    }
    let before = records(&cluster).await;
    // The node (not node 1: it serves the metadata store) holding the most
    // replicas.
    let mut held: BTreeMap<u64, u64> = BTreeMap::new();
    for r in before.values() {
        for s in &r.segments {
            for n in s.replicas.iter().filter(|n| **n != 1) {
                *held.entry(*n).or_default() += s.sealed_len.expect("sealed");
            }
        }
    }
    let (&victim, &entries_lost) = held.iter().max_by_key(|(_, e)| **e).expect("a replica");
    let segments_lost = before
        .values()
        .flat_map(|r| &r.segments)
        .filter(|s| s.replicas.contains(&victim))
        .count();
    assert!(segments_lost > 0);
    cluster.kill(victim).expect("kill");
    let killed = Instant::now();

    let zone_of = |node: u64| ZONES[node as usize - 1];
    let after = wait_for(
        "every sealed segment back to 3 replicas in 3 zones",
        Duration::from_secs(90),
        || {
            let cluster = &cluster;
            async move {
                let now = records(cluster).await;
                let whole = now.values().flat_map(|r| &r.segments).all(|s| {
                    let mut zones: Vec<&str> = s.replicas.iter().map(|n| zone_of(*n)).collect();
                    zones.sort_unstable();
                    zones.dedup();
                    !s.replicas.contains(&victim) && s.replicas.len() == 3 && zones.len() == 3
                });
                whole.then_some(now)
            }
        },
    )
    .await
    .expect("repaired");
    let took = killed.elapsed();
    let bytes = entries_lost * ENTRY_BYTES as u64;
    println!(
        "repair: node {victim} lost with {segments_lost} sealed segments ({entries_lost} entries, {bytes} payload bytes); all back to 3 replicas in 3 zones {:.1} s after the kill (grace 2 s, scans every 5 s)",
        took.as_secs_f64()
    );

    // Each copy as the node that made it logged it (entries, bytes, time,
    // rate at the default throttle).
    for n in 1..=ZONES.len() {
        let log =
            std::fs::read_to_string(cluster.dir.join(format!("node-{n}.log"))).unwrap_or_default();
        for line in log
            .lines()
            .filter(|l| l.contains(&format!("replaces node {victim}")))
        {
            let at = line.find("repair:").unwrap_or(0);
            println!("  {}", &line[at..]);
        }
    }

    // Nothing else changed, and every replica of every segment (the new
    // copies above all) holds exactly the committed entries.
    for (log, r) in &after {
        let old = &before[log];
        assert_eq!(r.segments.len(), old.segments.len());
        for (s, o) in r.segments.iter().zip(&old.segments) {
            assert_eq!(
                (s.id, s.first_seq, s.sealed_len),
                (o.id, o.first_seq, o.sealed_len)
            );
            let len = s.sealed_len.expect("sealed");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_is_cancelled_when_the_lost_node_comes_back() {
    // Slow enough that the copy is still running when the node is back.
    let mut cluster = start(&["--repair-bytes-per-sec", "40000"]).await;
    for log in LOGS.take(1) {
        write(&cluster, log).await;
    }
    let before = records(&cluster).await;
    let victim = *before[&LOGS.start].segments[0]
        .replicas
        .iter()
        .find(|n| **n != 1)
        .expect("a replica");
    cluster.kill(victim).expect("kill");
    // `trilog repair --status` sees the dead replica and the node that
    // will copy it.
    let meta = cluster.meta();
    let short = wait_for("the dead replica to show", Duration::from_secs(30), || {
        let meta = meta.clone();
        async move {
            let short = under_replicated(&*meta).await.expect("status");
            (!short.is_empty()).then_some(short)
        }
    })
    .await
    .expect("under-replicated");
    for u in &short {
        assert_eq!(u.dead, vec![victim], "{u:?}");
        let target = u.target.expect("a target");
        assert!(!u.replicas.contains(&target), "{u:?}");
    }
    // Wait until some node started copying (its log says so), then bring
    // the lost node back.
    let copying = wait_for("a repair to start", Duration::from_secs(60), || {
        let cluster = &cluster;
        async move {
            (1..=ZONES.len() as u64).find(|n| {
                let log = std::fs::read_to_string(cluster.dir.join(format!("node-{n}.log")))
                    .unwrap_or_default();
                log.contains(&format!("in place of lost node {victim}"))
            })
        }
    })
    .await
    .expect("a repair started");
    cluster.spawn(victim).expect("restart");
    let log_path = cluster.dir.join(format!("node-{copying}.log"));
    wait_for(
        "the repair to be abandoned",
        Duration::from_secs(30),
        || {
            let log_path = log_path.clone();
            async move {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                log.contains(&format!("abandoned: node {victim} is alive again"))
                    .then_some(())
            }
        },
    )
    .await
    .expect("abandoned");
    // The record still lists the node that came back: nothing was
    // published.
    let after = records(&cluster).await;
    assert_eq!(after, before, "a cancelled repair changed the record");
}
