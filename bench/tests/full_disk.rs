//! A full disk with real processes: node 4 of a 4-node
//! cluster runs on a 64 MiB ext4 image mounted on a loop device. Once it
//! holds sealed segments, a filler file takes nearly all the room left.
//! Then: its registration says full (read by `trilog status --json`, run
//! as a process when the binary is built), producers place new segments
//! on the other nodes, every entry it held is still read from it directly,
//! no half-made or empty segment file is left, it restarts read-only on
//! the full disk, and once the filler is deleted it turns writable again
//! and takes new segments.
//!
//! Needs root (mount); without it the test prints why and passes.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;
use trilog_testkit::loop_disk::{fill, LoopDisk};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::{make_payload, payload_id};
use trilog_testkit::wait::wait_for;
use trilog_wire::message::Read;
use trilog_wire::meta::SegmentMeta;
use trilog_wire::Message;

const LOG: u64 = 9;
const FULL_NODE: u64 = 4;
const IMAGE_MIB: u64 = 64;
/// The full node's reserve: small, for a small disk.
const RESERVE_BYTES: u64 = 8 << 20;
/// Left free by the filler: below the reserve, room for control writes.
const LEFT_FREE_BYTES: u64 = 2 << 20;
const ENTRIES_PER_SEGMENT: u64 = 40;
/// Producers (one segment each) tried before giving up on a placement.
const ROUNDS_MAX: u64 = 40;
const WAIT: Duration = Duration::from_secs(30);
const REQUEST_WAIT: Duration = Duration::from_secs(10);

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

/// One producer writing [`ENTRIES_PER_SEGMENT`] entries from `first_id`,
/// then closing (one sealed segment). Adds seq -> id to `committed`.
async fn write(cluster: &Cluster, first_id: u64, committed: &mut HashMap<u64, u64>) {
    let producer = Producer::open(cluster.pool(), LOG, ProducerOptions::default())
        .await
        .expect("open producer");
    let mut pending = Vec::new();
    for id in first_id..first_id + ENTRIES_PER_SEGMENT {
        let f = producer
            .submit(make_payload(id, 200 + (id as usize % 500)))
            .await
            .expect("submit");
        pending.push((id, f));
    }
    for (id, f) in pending {
        committed.insert(f.await.expect("committed"), id);
    }
    producer.close().await.expect("close");
}

async fn segments(cluster: &Cluster) -> Vec<SegmentMeta> {
    cluster
        .meta()
        .get_log(LOG)
        .await
        .expect("metadata")
        .record
        .map(|r| r.segments)
        .unwrap_or_default()
}

/// `trilog status --json`: the CLI process if it is built beside this
/// test (target/<profile>/trilog), else the same code in process.
async fn status(cluster: &Cluster) -> serde_json::Value {
    let cli = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("trilog")))
        .filter(|p| p.exists());
    match cli {
        Some(cli) => {
            let out = Command::new(&cli)
                .args(["--meta", &cluster.meta_addr.to_string(), "status", "--json"])
                .output()
                .expect("run trilog status --json");
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice(&out.stdout).expect("status --json is JSON")
        }
        None => {
            eprintln!("note: no trilog binary beside the test; status from the library");
            trilog_client::status::status_json(&*cluster.meta())
                .await
                .expect("status")
        }
    }
}

fn node_of(status: &serde_json::Value, id: u64) -> serde_json::Value {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

async fn wait_full(cluster: &Cluster, full: bool) -> serde_json::Value {
    let what = format!("node {FULL_NODE} registered with full={full}");
    wait_for(&what, WAIT, move || async move {
        let n = node_of(&status(cluster).await, FULL_NODE);
        (n["alive"] == true && n["full"] == full).then_some(n)
    })
    .await
    .expect("registration")
}

/// Reads every entry of `seg` from node `node` alone, checking each
/// against what was committed.
async fn read_all_from(
    cluster: &Cluster,
    node: u64,
    seg: &SegmentMeta,
    committed: &HashMap<u64, u64>,
) {
    let len = seg.sealed_len.expect("sealed");
    let pool = cluster.pool();
    let conn = pool.for_segment(node, LOG, seg.id).await.expect("conn");
    let mut from = 0;
    while from < len {
        let read = Read {
            log_id: LOG,
            segment: seg.id,
            from_offset: from,
            limit: len,
            max_bytes: 1 << 20,
            wait_ms: 0,
        };
        let r = match conn.request(&read, REQUEST_WAIT).await.expect("read") {
            Message::ReadResponse(r) => r,
            other => panic!("node {node} segment {}: {other:?}", seg.id),
        };
        assert!(r.count > 0, "node {node} segment {} at {from}", seg.id);
        let entries =
            trilog_wire::record::parse_records(&r.records, from, r.count).expect("records");
        for (offset, payload) in entries {
            let seq = seg.first_seq + offset;
            assert_eq!(
                payload_id(payload),
                committed.get(&seq).copied(),
                "node {node} seq {seq}"
            );
        }
        from += u64::from(r.count);
    }
}

/// Segment files under `dir`: none half-made or empty, each data file
/// with its control file, each named by the record as held by `node`.
fn check_files(dir: &Path, held: &[u64]) {
    let shard = dir.join("shard-0");
    let names: Vec<String> = std::fs::read_dir(&shard)
        .expect("shard dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let prefix = format!("{LOG:016x}-");
    for name in &names {
        assert!(!name.ends_with(".creating"), "half-made file {name}");
        assert!(
            !name.starts_with(".trilog-probe"),
            "probe file left: {name}"
        );
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let segment = u64::from_str_radix(&rest[..16], 16).expect("segment id");
        assert!(
            held.contains(&segment),
            "{name}: a file of a segment the record does not place here"
        );
        let bytes = std::fs::metadata(shard.join(name)).expect("stat").len();
        assert!(bytes > 0, "empty file {name}");
        if let Some(stem) = name.strip_suffix(".seg") {
            assert!(
                names.contains(&format!("{stem}.ctl")),
                "{name} without .ctl"
            );
        }
    }
}

fn held_by(segs: &[SegmentMeta], node: u64) -> Vec<SegmentMeta> {
    segs.iter()
        .filter(|s| s.replicas.contains(&node))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_turns_read_only_keeps_serving_and_recovers() {
    let mut cluster = Cluster::start(4, node_command(), None)
        .await
        .expect("cluster");
    // Node 4 moves onto a small disk of its own (it holds nothing yet).
    cluster.kill(FULL_NODE).expect("kill");
    cluster
        .wait_node(FULL_NODE, false, WAIT)
        .await
        .expect("node 4's lease ends");
    let dir = cluster.nodes[FULL_NODE as usize - 1].dir.clone();
    let mount = match LoopDisk::mount(&cluster.dir.join("disk.img"), &dir, IMAGE_MIB) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a loop ext4 image ({why}); run as root");
            return;
        }
    };
    let reserve = RESERVE_BYTES.to_string();
    let node_args = ["--disk-reserve-bytes", reserve.as_str()];
    cluster
        .spawn_with(FULL_NODE, &node_args)
        .expect("node 4 on the image");
    cluster
        .wait_node(FULL_NODE, true, WAIT)
        .await
        .expect("alive");
    let n = wait_full(&cluster, false).await;
    assert!(
        n["bytes_free"].as_u64().expect("bytes_free") > RESERVE_BYTES,
        "{n}"
    );

    // Segments until node 4 holds some.
    let mut committed = HashMap::new();
    let mut next_id = 1;
    for _ in 0..ROUNDS_MAX {
        write(&cluster, next_id, &mut committed).await;
        next_id += ENTRIES_PER_SEGMENT;
        if held_by(&segments(&cluster).await, FULL_NODE).len() >= 2 {
            break;
        }
    }
    let held = held_by(&segments(&cluster).await, FULL_NODE);
    assert!(held.len() >= 2, "node 4 was given no segments");

    // Fill the disk: node 4 turns read-only, and says so.
    let filler = fill(&mount.point, LEFT_FREE_BYTES).expect("fill the disk");
    let n = wait_full(&cluster, true).await;
    assert!(
        n["bytes_free"].as_u64().expect("bytes_free") < RESERVE_BYTES,
        "{n}"
    );
    assert!(n["bytes_used"].as_u64().expect("bytes_used") > 0, "{n}");
    assert!(n["addr"].as_str().is_some_and(|a| a.contains(':')), "{n}");

    // New segments go elsewhere.
    let before = segments(&cluster).await.len();
    for _ in 0..6 {
        write(&cluster, next_id, &mut committed).await;
        next_id += ENTRIES_PER_SEGMENT;
    }
    let all = segments(&cluster).await;
    assert!(all.len() >= before + 6);
    for s in &all[before..] {
        assert!(
            !s.replicas.contains(&FULL_NODE),
            "placed on the full node: {s:?}"
        );
    }
    // Everything it held is read from it, alone.
    for seg in &held {
        read_all_from(&cluster, FULL_NODE, seg, &committed).await;
    }
    let held_ids: Vec<u64> = held.iter().map(|s| s.id).collect();
    check_files(&dir, &held_ids);

    // Restarted on the full disk: it starts, read-only, and serves.
    cluster.kill(FULL_NODE).expect("kill");
    cluster
        .spawn_with(FULL_NODE, &node_args)
        .expect("restart while full");
    let log = std::fs::read_to_string(&cluster.nodes[FULL_NODE as usize - 1].log).expect("log");
    assert!(
        log.contains("starting read-only"),
        "no start-up line in the log"
    );
    wait_full(&cluster, true).await;
    for seg in &held {
        read_all_from(&cluster, FULL_NODE, seg, &committed).await;
    }
    check_files(&dir, &held_ids);

    // Space freed: writable again, and chosen again.
    std::fs::remove_file(&filler).expect("remove filler");
    wait_full(&cluster, false).await;
    let before = segments(&cluster).await.len();
    let mut placed = false;
    for _ in 0..ROUNDS_MAX {
        write(&cluster, next_id, &mut committed).await;
        next_id += ENTRIES_PER_SEGMENT;
        let all = segments(&cluster).await;
        if all[before..]
            .iter()
            .any(|s| s.replicas.contains(&FULL_NODE))
        {
            placed = true;
            break;
        }
    }
    assert!(placed, "node 4 never took a segment again");
    for seg in held_by(&segments(&cluster).await, FULL_NODE) {
        read_all_from(&cluster, FULL_NODE, &seg, &committed).await;
    }
    cluster.kill(FULL_NODE).expect("kill");
    drop(mount);
}
