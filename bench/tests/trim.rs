//! Trim and delete on real node processes: a log written across several
//! segments is trimmed, the trimmed segments' files are gone from every
//! replica's data dir (measured on the file system), a read below the trim
//! point names the first readable seq and a read from it returns every
//! remaining entry; then the log is deleted and its files go too. Also: a
//! small segment costs at most 1 MiB per replica, and a `DeleteSegment`
//! of a live replica sent straight to its node is refused.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use trilog_client::conn::NodeConn;
use trilog_client::{ClientError, Consumer, Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::{make_payload, payload_id};
use trilog_wire::message::{DeleteSegment, ErrorCode};
use trilog_wire::Message;

const LOG: u64 = 5;
const PER_SEGMENT: u64 = 200;
const SEGMENTS: u64 = 4;
/// What a new segment may preallocate (the node's `PREALLOC_FIRST_BYTES`).
const SMALL_SEGMENT_BYTES_MAX: u64 = 1024 * 1024;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

/// One producer: `n` entries with ids from `first_id`, then a clean close
/// (so each call writes one sealed segment). Returns seq -> id.
async fn write(cluster: &Cluster, first_id: u64, n: u64) -> HashMap<u64, u64> {
    let producer = Producer::open(cluster.pool(), LOG, ProducerOptions::default())
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
        committed.insert(f.await.expect("committed"), id);
    }
    producer.close().await.expect("close");
    committed
}

/// Files of `log_id`'s segments under `dir` (recursively): (segment, bytes
/// allocated on disk, as `du` counts them, and apparent size).
fn segment_files(dir: &Path, log_id: u64, out: &mut Vec<(u64, u64, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{log_id:016x}-");
    for e in entries {
        let e = e.expect("dir entry");
        let meta = e.metadata().expect("stat");
        if meta.is_dir() {
            segment_files(&e.path(), log_id, out);
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(&prefix) {
            let hex = &rest[..16.min(rest.len())];
            let segment = u64::from_str_radix(hex, 16).expect("segment id in file name");
            out.push((segment, meta.blocks() * 512, meta.len()));
        }
    }
}

fn files_of(cluster: &Cluster) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for n in &cluster.nodes {
        segment_files(&n.dir, LOG, &mut out);
    }
    out
}

fn allocated(files: &[(u64, u64, u64)]) -> u64 {
    files.iter().map(|f| f.1).sum()
}

/// Every entry from `from` to `end`, as (seq, id).
async fn read_from(cluster: &Cluster, from: u64, end: u64) -> Vec<(u64, u64)> {
    let mut c = Consumer::open(cluster.pool(), LOG, from)
        .await
        .expect("open consumer");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while c.position() < end {
            for r in c
                .next_batch(Duration::from_millis(500))
                .await
                .expect("read")
            {
                got.push((r.seq, payload_id(&r.payload).expect("payload id")));
            }
        }
    })
    .await;
    assert!(read.is_ok(), "read stuck at {} of {end}", c.position());
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_deletes_whole_segments_and_delete_takes_the_log() {
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let mut committed = HashMap::new();
    for k in 0..SEGMENTS {
        committed.extend(write(&cluster, k * PER_SEGMENT, PER_SEGMENT).await);
    }
    let end = SEGMENTS * PER_SEGMENT;
    assert_eq!(committed.len() as u64, end);

    let before = files_of(&cluster);
    // 2 files (.seg and .ctl) per replica of each segment.
    assert_eq!(before.len() as u64, SEGMENTS * 3 * 2, "{before:?}");
    for (segment, _, size) in &before {
        assert!(
            *size <= SMALL_SEGMENT_BYTES_MAX,
            "segment {segment}: a file of {size} bytes for {PER_SEGMENT} small entries"
        );
    }
    let bytes_before = allocated(&before);

    // Any peer may send a delete: one of a live replica is refused, and
    // every replica keeps its files.
    let record = cluster
        .meta()
        .get_log(LOG)
        .await
        .expect("metadata")
        .record
        .expect("the log");
    let seg0 = &record.segments[0];
    for node in &seg0.replicas {
        let addr = cluster.client_addr(*node).expect("addr");
        let conn = NodeConn::connect_tokio(addr).await.expect("connect");
        let delete = DeleteSegment {
            log_id: LOG,
            segment: seg0.id,
        };
        match conn
            .request(&delete, Duration::from_secs(10))
            .await
            .expect("answer")
        {
            Message::ErrorMsg(e) => assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}"),
            other => panic!("a delete of a listed replica answered {other:?}"),
        }
    }
    assert_eq!(files_of(&cluster), before, "a refused delete removed files");

    // Trim at the end of segment 1: segments 0 and 1 go whole.
    let trim_at = 2 * PER_SEGMENT;
    let report = trilog_client::trim(&cluster.pool(), LOG, Some(trim_at))
        .await
        .expect("trim");
    let deleted: Vec<u64> = report.deleted.iter().map(|s| s.id).collect();
    assert_eq!(deleted.len(), 2, "{report:?}");
    assert!(report.pending.is_empty(), "{report:?}");
    assert_eq!(report.first_readable, trim_at);
    let after = files_of(&cluster);
    for (segment, _, _) in &after {
        assert!(
            !deleted.contains(segment),
            "segment {segment} still on disk"
        );
    }
    assert_eq!(after.len() as u64, (SEGMENTS - 2) * 3 * 2);
    let bytes_after = allocated(&after);
    println!(
        "trim: {} files, {bytes_before} bytes allocated before; {} files, {bytes_after} after; {} bytes reclaimed",
        before.len(),
        after.len(),
        bytes_before - bytes_after
    );
    assert!(bytes_after < bytes_before);
    let record = cluster.meta().get_log(LOG).await.expect("get").record;
    let record = record.expect("the log exists");
    assert!(record.deleting.is_empty(), "dropped once confirmed");

    // Below the trim point: a clear error naming the first readable seq.
    let mut c = Consumer::open(cluster.pool(), LOG, 0)
        .await
        .expect("open consumer");
    match c.next_batch(Duration::from_millis(500)).await {
        Err(ClientError::Trimmed { first_readable, .. }) => assert_eq!(first_readable, trim_at),
        other => panic!("a read below the trim point gave {other:?}"),
    }
    // From it: every remaining entry, each the one committed there.
    let got = read_from(&cluster, trim_at, end).await;
    assert_eq!(got.len() as u64, end - trim_at);
    for (seq, id) in got {
        assert_eq!(committed.get(&seq), Some(&id), "seq {seq}");
    }

    // A trim inside a segment moves the point but deletes nothing.
    let mid = trim_at + PER_SEGMENT / 2;
    let report = trilog_client::trim(&cluster.pool(), LOG, Some(mid))
        .await
        .expect("trim mid-segment");
    assert!(report.deleted.is_empty());
    assert_eq!(report.first_readable, mid);
    assert_eq!(files_of(&cluster).len(), after.len());
    // Past the sealed end: refused.
    let past = trilog_client::trim(&cluster.pool(), LOG, Some(end + 1)).await;
    assert!(matches!(past, Err(ClientError::Trim { .. })), "{past:?}");

    // Delete the log: every file goes, and no producer opens it again.
    let report = trilog_client::delete_log(&cluster.pool(), LOG)
        .await
        .expect("delete");
    assert!(
        report.log_deleted && report.pending.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.deleted.len() as u64, SEGMENTS - 2);
    let left = files_of(&cluster);
    assert!(left.is_empty(), "files of a deleted log: {left:?}");
    println!("delete: {} bytes reclaimed", bytes_after - allocated(&left));
    let reopened = Producer::open(cluster.pool(), LOG, ProducerOptions::default()).await;
    assert!(reopened.is_err(), "a deleted log was opened again");
}
