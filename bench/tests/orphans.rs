//! Copies no record lists, with real node processes: a
//! raw client fences made-up segments of a log that does not exist onto
//! one node. The node creates at most `UNCONFIRMED_SEGMENTS_MAX` per shard
//! and refuses the rest; its orphan sweep (every 5 s here) removes the
//! made-up ones (counted on the file system) after two checks, while a
//! made-up segment past the last one of a real log is kept (a takeover may
//! still publish it) and every copy the record lists stays, its entries
//! read back.

use std::path::Path;
use std::time::Duration;

use trilog_client::conn::NodeConn;
use trilog_client::{Producer, ProducerOptions};
use trilog_protocol::shard::UNCONFIRMED_SEGMENTS_MAX;
use trilog_testkit::cluster::{Cluster, ClusterOptions};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::make_payload;
use trilog_testkit::reader::read_segment_ids_from;
use trilog_testkit::wait::wait_for;
use trilog_wire::message::{ErrorCode, Fence};
use trilog_wire::Message;

const LOG: u64 = 3;
const MADE_UP_LOG: u64 = 900;
const ENTRIES: u64 = 50;
const NODE: u64 = 2;
const WAIT: Duration = Duration::from_secs(60);
/// The nodes' orphan sweep period: long enough that the made-up segments
/// are all fenced within one (the bound is about what a shard holds at
/// once), short for a test.
const SWEEP_SECS: u64 = 5;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

/// Segment ids of `log_id` with a `.seg` file under `dir`.
fn seg_files(dir: &Path, log_id: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let prefix = format!("{log_id:016x}-");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&prefix) {
                if let Some(hex) = rest.strip_suffix(".seg") {
                    out.extend(u64::from_str_radix(hex, 16).ok());
                }
            }
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_segments_are_bounded_and_swept_and_listed_ones_stay() {
    let opts = ClusterOptions {
        node_args: vec!["--orphan-sweep-secs".into(), SWEEP_SECS.to_string()],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(3, node_command(), None, opts)
        .await
        .expect("cluster");
    let producer = Producer::open(cluster.pool(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let mut pending = Vec::new();
    for id in 0..ENTRIES {
        pending.push(
            producer
                .submit(make_payload(id, 100))
                .await
                .expect("submit"),
        );
    }
    for f in pending {
        f.await.expect("committed");
    }
    producer.close().await.expect("close");
    let record = cluster
        .meta()
        .get_log(LOG)
        .await
        .expect("metadata")
        .record
        .expect("the log");
    let last = record.segments.last().expect("a segment").id;

    let shards = cluster
        .meta()
        .list_nodes(false)
        .await
        .expect("nodes")
        .into_iter()
        .find(|n| n.info.node_id == NODE)
        .expect("node 2")
        .info
        .shard_ports
        .len();
    let addr = cluster.client_addr(NODE).expect("addr");
    let dir = cluster.nodes[NODE as usize - 1].dir.clone();
    let listed_before = seg_files(&dir, LOG);

    // Made-up segments: past the bound, refused. Each fence goes to its
    // shard (the connection's shard answers `WrongShard` otherwise; this
    // test sends every fence to the shard that owns it).
    let bound = shards * UNCONFIRMED_SEGMENTS_MAX;
    let mut created = 0;
    let mut refused = 0;
    let fence = |log_id: u64, segment: u64| {
        let owner = trilog_wire::message::shard_of(log_id, segment, shards as u32);
        let mut a = addr;
        a.set_port(addr.port() + owner as u16);
        (
            a,
            Fence {
                log_id,
                segment,
                epoch: 1,
            },
        )
    };
    // First a segment past the real log's last one: a takeover's, maybe.
    let (a, f) = fence(LOG, last + 1);
    let conn = NodeConn::connect_tokio(a).await.expect("connect");
    let answer = conn.request(&f, WAIT).await.expect("answer");
    assert!(matches!(answer, Message::FenceAck(_)), "{answer:?}");
    for segment in 0..(bound as u64 + 20) {
        let (a, f) = fence(MADE_UP_LOG, segment);
        let conn = NodeConn::connect_tokio(a).await.expect("connect");
        match conn.request(&f, WAIT).await.expect("answer") {
            Message::FenceAck(_) => created += 1,
            Message::ErrorMsg(e) if e.code == ErrorCode::Internal => refused += 1,
            other => panic!("a fence of a made-up segment answered {other:?}"),
        }
    }
    println!("orphans: {created} made-up segments created, {refused} refused (bound {bound})");
    assert!(created <= bound, "{created} created past the bound {bound}");
    assert!(refused >= 20, "only {refused} refused");
    assert!(seg_files(&dir, MADE_UP_LOG).len() <= bound);

    // The sweep removes them (two checks a whole sweep apart), on the disk.
    let dir_ref = &dir;
    wait_for("the made-up segments swept", WAIT, || async move {
        seg_files(dir_ref, MADE_UP_LOG).is_empty().then_some(())
    })
    .await
    .expect("swept");
    let now = seg_files(&dir, LOG);
    for s in &listed_before {
        assert!(now.contains(s), "listed segment {s} swept: {now:?}");
    }
    assert!(
        now.contains(&(last + 1)),
        "a segment past the last one swept"
    );
    // Every listed copy on the node still serves its entries.
    for g in record
        .segments
        .iter()
        .filter(|g| g.replicas.contains(&NODE))
    {
        let len = g.sealed_len.expect("sealed after close");
        let ids = read_segment_ids_from(addr, LOG, g.id, len)
            .await
            .expect("read back");
        assert_eq!(ids.len() as u64, len);
    }
    // New made-up segments can be created again once the old are gone.
    let (a, f) = fence(MADE_UP_LOG, 100_000);
    let conn = NodeConn::connect_tokio(a).await.expect("connect");
    assert!(matches!(
        conn.request(&f, WAIT).await.expect("answer"),
        Message::FenceAck(_)
    ));
}
