//! End-to-end tests on real node processes over loopback: append then read,
//! a node killed with SIGKILL and restarted between writers, and reads
//! served by the restarted node from what it recovered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use trilog_client::{Consumer, Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterOptions};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::{make_payload, payload_id};
use trilog_testkit::reader::read_segment_from;
use trilog_testkit::verify::verify;
use trilog_wire::record::RECORD_HEADER_BYTES;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

/// Appends `n` self-describing entries with ids from `first_id`, pipelined,
/// and closes the producer. Returns seq -> id of every committed entry.
async fn write(cluster: &Cluster, log_id: u64, first_id: u64, n: u64) -> HashMap<u64, u64> {
    let producer = Producer::open(cluster.pool(), log_id, ProducerOptions::default())
        .await
        .expect("open producer");
    let mut pending = Vec::new();
    for id in first_id..first_id + n {
        let f = producer
            .submit(make_payload(id, 100 + (id as usize % 300)))
            .await
            .expect("submit");
        pending.push((id, f));
    }
    let mut committed = HashMap::new();
    for (id, f) in pending {
        let seq = f.await.expect("append committed");
        committed.insert(seq, id);
    }
    producer.close().await.expect("close");
    committed
}

/// Reads `log_id` from seq 0 until `end`, with a deadline.
async fn read_all(cluster: &Cluster, log_id: u64, end: u64) -> Vec<(u64, Option<u64>)> {
    let mut c = Consumer::open(cluster.pool(), log_id, 0)
        .await
        .expect("open consumer");
    let mut reads = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while c.position() < end {
            let batch = c
                .next_batch(Duration::from_millis(500))
                .await
                .expect("read");
            // No record is copied out of its answer (a batch is one): the
            // payloads lie one after another in the answer's buffer, each
            // behind its record header.
            for w in batch.windows(2) {
                let (a, b) = (&w[0].payload, &w[1].payload);
                let end_of_a = a.as_ptr() as usize + a.len();
                assert_eq!(
                    (b.as_ptr() as usize).checked_sub(end_of_a),
                    Some(RECORD_HEADER_BYTES),
                    "seq {}: not in its answer's buffer",
                    w[1].seq
                );
            }
            reads.extend(batch.iter().map(|r| (r.seq, payload_id(&r.payload))));
        }
    })
    .await;
    assert!(read.is_ok(), "read stuck at {} of {end}", c.position());
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_then_read_across_producers() {
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let mut committed = write(&cluster, 7, 0, 500).await;
    assert_eq!(committed.len(), 500);
    let mut seqs: Vec<u64> = committed.keys().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "seqs are dense from 0");
    // A second producer continues the log in a new segment and epoch.
    committed.extend(write(&cluster, 7, 500, 300).await);
    let reads = read_all(&cluster, 7, 800).await;
    let v = verify(&committed, &reads, &[]);
    assert_eq!((v.committed, v.read), (800, 800), "{v:?}");
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom),
        (0, 0, 0, 0),
        "{v:?}"
    );
    let record = cluster
        .meta()
        .get_log(7)
        .await
        .expect("meta")
        .record
        .expect("log exists");
    assert_eq!(record.segments.len(), 2);
    assert_eq!(record.epoch, 2);
    assert_eq!(record.segments[0].sealed_len, Some(500));
    assert_eq!(record.segments[1].sealed_len, Some(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_serves_what_was_committed() {
    let mut cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let mut committed = write(&cluster, 9, 0, 400).await;
    // kill -9 a replica and bring it back: it recovers from its files.
    cluster.kill(2).expect("kill");
    cluster.spawn(2).expect("restart");
    cluster
        .wait_alive(3, Duration::from_secs(10))
        .await
        .expect("alive again");
    let addr = SocketAddr::from(([127, 0, 0, 1], cluster.nodes[1].port));
    let payloads = read_segment_from(addr, 9, 0, 400)
        .await
        .expect("read node 2");
    let mut by_seq: Vec<(u64, u64)> = committed.iter().map(|(s, i)| (*s, *i)).collect();
    by_seq.sort_unstable();
    let ids: Vec<Option<u64>> = payloads.iter().map(|p| payload_id(p)).collect();
    assert_eq!(
        ids,
        by_seq.iter().map(|(_, id)| Some(*id)).collect::<Vec<_>>()
    );
    // The log goes on, and the whole of it reads back in order.
    committed.extend(write(&cluster, 9, 400, 200).await);
    let reads = read_all(&cluster, 9, 600).await;
    let v = verify(&committed, &reads, &[]);
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom, v.read),
        (0, 0, 0, 0, 600),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_tails_while_the_producer_writes() {
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let pool = cluster.pool();
    let producer = Producer::open(pool.clone(), 11, ProducerOptions::default())
        .await
        .expect("open");
    let mut consumer = Consumer::open(pool, 11, 0).await.expect("consumer");
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        // Short of 300 at the deadline: the check below says what is missing.
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while got.len() < 300 {
                let batch = consumer
                    .next_batch(Duration::from_millis(300))
                    .await
                    .expect("read");
                got.extend(batch.iter().map(|r| (r.seq, payload_id(&r.payload))));
            }
        })
        .await;
        got
    });
    let mut committed = HashMap::new();
    for id in 0..300u64 {
        // One at a time: the consumer sees each entry through the watermark
        // the idle producer sends alone.
        let seq = producer.append(make_payload(id, 64)).await.expect("append");
        committed.insert(seq, id);
    }
    let got = reader.await.expect("reader");
    let v = verify(&committed, &got, &[]);
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom, v.read),
        (0, 0, 0, 0, 300),
        "{v:?}"
    );
    producer.close().await.expect("close");
}

/// Large entries, batched into appends far above the size from which the
/// connection writes a payload shared by the three replicas straight from
/// its buffer (`SHARED_WRITE_MIN_BYTES`), interleaved with small ones that
/// are coalesced: every entry is read back once, in order, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batched_appends_are_read_back_intact() {
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let producer = Producer::open(cluster.pool(), 9, ProducerOptions::default())
        .await
        .expect("open producer");
    let mut pending = Vec::new();
    for id in 0..120u64 {
        let len = if id % 3 == 0 {
            200
        } else {
            150_000 + id as usize
        };
        let f = producer
            .submit(make_payload(id, len))
            .await
            .expect("submit");
        pending.push((id, f));
    }
    let mut committed = HashMap::new();
    for (id, f) in pending {
        committed.insert(f.await.expect("append committed"), id);
    }
    producer.close().await.expect("close");
    let reads = read_all(&cluster, 9, 120).await;
    let v = verify(&committed, &reads, &[]);
    assert_eq!((v.committed, v.read), (120, 120), "{v:?}");
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom),
        (0, 0, 0, 0),
        "{v:?}"
    );
}

/// The replicas of every segment go to three zones when there are three:
/// on six nodes in zones a, a, b, b, c, c, each segment of several logs
/// (one opened per producer) and the segment a switch places after a
/// replica is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_spread_over_three_zones() {
    const ZONES: [&str; 6] = ["a", "a", "b", "b", "c", "c"];
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
    let zone_of = |node: u64| ZONES[node as usize - 1];
    for log in 100..106 {
        write(&cluster, log, 0, 3).await;
    }
    // A switch: a replica of the open segment (not node 1, the store) dies.
    const SWITCHED: u64 = 110;
    let producer = Producer::open(cluster.pool(), SWITCHED, ProducerOptions::default())
        .await
        .expect("open");
    producer.append(make_payload(0, 100)).await.expect("append");
    let record = cluster.meta().get_log(SWITCHED).await.expect("meta").record;
    let first = record.expect("log exists").segments[0].clone();
    let victim = *first.replicas.iter().find(|n| **n != 1).expect("a replica");
    cluster.kill(victim).expect("kill");
    producer
        .append(make_payload(1, 100))
        .await
        .expect("append after the kill");
    producer.close().await.expect("close");
    for log in (100..106).chain([SWITCHED]) {
        let record = cluster.meta().get_log(log).await.expect("meta").record;
        let record = record.expect("log exists");
        for s in &record.segments {
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
        }
        if log == SWITCHED {
            assert!(
                record.segments.len() >= 2,
                "the producer switched: {record:?}"
            );
            let last = record.segments.last().expect("segments");
            assert!(!last.replicas.contains(&victim), "{record:?}");
        }
    }
}
