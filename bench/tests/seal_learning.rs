//! Seals reach every replica even if the producer's process exits: a
//! producer whose process died right after its sealing CAS told no replica
//! of the seal, yet each replica of the sealed segment learns it from the
//! metadata record (the node's seal learning) and ends up sealed at the
//! recorded length. Real node processes over loopback; every wait is for a
//! condition, with a deadline.

use std::path::PathBuf;
use std::time::Duration;

use trilog_client::meta::CasOutcome;
use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::make_payload;
use trilog_testkit::wait::wait_for;
use trilog_wire::message::Read;
use trilog_wire::Message;

const ENTRIES: u64 = 20;
/// Two seal-learning sweeps (3 s each) and a lookup, on a debug build
/// sharing 2 cores, with room to spare.
const LEARN_WAIT: Duration = Duration::from_secs(40);
const REQUEST_WAIT: Duration = Duration::from_secs(5);

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(PathBuf::from(env!("CARGO_BIN_EXE_trilog-bench")), "node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_learn_a_seal_nobody_told_them_from_the_record() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .is_test(true)
        .try_init();
    let cluster = Cluster::start(4, node_command(), None)
        .await
        .expect("cluster");
    let pool = cluster.pool();
    let meta = cluster.meta();
    let log_id = 5;
    let p = Producer::open(pool.clone(), log_id, ProducerOptions::default())
        .await
        .expect("open");
    for i in 0..ENTRIES {
        let seq = p.append(make_payload(i, 100)).await.expect("append");
        assert_eq!(seq, i);
    }
    // The producer's process dies right after its sealing CAS: no replica
    // hears of the seal from it.
    drop(p);
    let v = meta.get_log(log_id).await.expect("metadata");
    let mut sealed = v.record.expect("the log exists");
    let segment = {
        let last = sealed.segments.last_mut().expect("a segment");
        assert_eq!(last.sealed_len, None, "open");
        last.sealed_len = Some(ENTRIES - last.first_seq);
        last.clone()
    };
    let len = ENTRIES - segment.first_seq;
    match meta.cas_log(log_id, v.version, sealed).await.expect("cas") {
        CasOutcome::Applied { .. } => {}
        CasOutcome::Conflict(v) => panic!("the record moved: {v:?}"),
    }
    for node in segment.replicas.clone() {
        let pool = pool.clone();
        let what = format!("node {node} learns segment {} sealed at {len}", segment.id);
        let sealed_len = wait_for(&what, LEARN_WAIT, || {
            let pool = pool.clone();
            async move {
                let c = pool.for_segment(node, log_id, segment.id).await.ok()?;
                let read = Read {
                    log_id,
                    segment: segment.id,
                    from_offset: len,
                    limit: u64::MAX,
                    max_bytes: 1 << 16,
                    wait_ms: 0,
                };
                match c.request(&read, REQUEST_WAIT).await {
                    Ok(Message::ReadResponse(r)) => r.sealed_len,
                    _ => {
                        pool.forget(&c).await;
                        None
                    }
                }
            }
        })
        .await
        .expect("every replica learns the seal");
        assert_eq!(sealed_len, len, "node {node} sealed at the recorded length");
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_below_what_a_replica_knows_committed_is_refused() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .is_test(true)
        .try_init();
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let pool = cluster.pool();
    let log_id = 6;
    let p = Producer::open(pool.clone(), log_id, ProducerOptions::default())
        .await
        .expect("open");
    for i in 0..ENTRIES {
        p.append(make_payload(i, 100)).await.expect("append");
    }
    p.close().await.expect("close");
    let r = cluster
        .meta()
        .get_log(log_id)
        .await
        .expect("metadata")
        .record
        .expect("the log exists");
    let seg = r.segments.last().expect("a segment").clone();
    let len = seg.sealed_len.expect("closed");
    for node in seg.replicas {
        let c = pool.for_segment(node, log_id, seg.id).await.expect("conn");
        let rogue = trilog_wire::message::Seal {
            log_id,
            segment: seg.id,
            epoch: 0,
            len: 0,
        };
        let answer = c.request(&rogue, REQUEST_WAIT).await.expect("answer");
        assert!(
            matches!(answer, Message::ErrorMsg(_)),
            "node {node}: a Seal{{len: 0}} of a closed log is refused: {answer:?}"
        );
        let read = Read {
            log_id,
            segment: seg.id,
            from_offset: 0,
            limit: u64::MAX,
            max_bytes: 1 << 20,
            wait_ms: 0,
        };
        match c.request(&read, REQUEST_WAIT).await.expect("read") {
            Message::ReadResponse(r) => {
                assert_eq!(r.sealed_len, Some(len), "node {node} keeps its seal");
                assert_eq!(u64::from(r.count), len, "node {node} keeps every entry");
            }
            other => panic!("node {node}: {other:?}"),
        }
    }
}
