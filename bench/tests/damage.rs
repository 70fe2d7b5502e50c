//! Damage on disk, with real node processes: a sealed segment's file on
//! one replica gets a flipped byte in the middle of its records, or is cut
//! inside a record, while its node is down, or a flipped byte while it
//! runs. After the restart (or at the first read of it) the node says it
//! found damage, never serves the damaged range short or wrong
//! (a read of it is refused `Damaged` at once until the copy is healed),
//! a fresh consumer that reads that replica first still reads every
//! committed entry within a deadline, and the node heals its copy from
//! another replica: read back from that node alone, it holds every entry
//! of the segment again.
//!
//! Every wait is for a condition, with a deadline. The tests run one at a
//! time (they share 2 cores).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trilog_client::conn::NodeConn;
use trilog_client::{Consumer, Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;
use trilog_testkit::disk_faults::{self, find_segment_file, Harm};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::payload_id;
use trilog_testkit::reader::{read_segment_ids_from, sealed_log_len};
use trilog_testkit::verify::verify;
use trilog_testkit::wait::wait_for;
use trilog_testkit::writers::{close_producer, Writers};
use trilog_wire::message::{ErrorCode, ErrorMsg, Read};
use trilog_wire::Message;

/// One test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .is_test(true)
        .try_init();
    SERIAL.lock().await
}

const PAYLOAD_BYTES: usize = 200;
const CONCURRENCY: usize = 16;
const ENTRIES: u64 = 4_000;
const STEP: Duration = Duration::from_secs(20);
/// The whole read of the log, the damaged replica first: a hang (the old
/// behaviour) would run into it.
const READ_DEADLINE: Duration = Duration::from_secs(15);
/// The heal: the first check of the shard (1 s), the repair loop's next
/// pass (5 s), and the copy of a few hundred KiB.
const HEAL_DEADLINE: Duration = Duration::from_secs(30);

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(PathBuf::from(env!("CARGO_BIN_EXE_trilog-bench")), "node")
}

/// Harms the middle record of the file; returns its offset.
fn harm(path: &Path, len: u64, how: Harm) -> u64 {
    disk_faults::harm(path, len, len / 2, how).expect("harm the segment file")
}

/// Harms the middle record of a sealed segment's file on one replica: with
/// `live`, while its node runs (a read finds it), else while it is down
/// (its recovery finds it).
async fn damaged_replica_is_read_around(how: Harm, log_id: u64, live: bool) {
    let _one = serial().await;
    let mut cluster = Cluster::start(4, node_command(), None)
        .await
        .expect("cluster");
    // One segment is harmed: a replica left for being slow (this
    // machine's disk stalls now and then, and 4 nodes leave a spare)
    // would spread the entries over two.
    let mut opts = ProducerOptions::default();
    opts.config.slow_lag_floor_ms = u64::MAX;
    let producer = Producer::open(cluster.pool(), log_id, opts)
        .await
        .expect("open");
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    writers.wait_acked(ENTRIES, STEP).await.expect("load");
    let (ledger, producer) = tokio::time::timeout(STEP, writers.stop())
        .await
        .expect("appends in flight resolve");
    close_producer(producer, STEP).await.expect("close");
    let len = sealed_log_len(cluster.meta().as_ref(), log_id)
        .await
        .expect("metadata")
        .expect("sealed after close");
    let record = cluster
        .meta()
        .get_log(log_id)
        .await
        .expect("metadata")
        .record
        .expect("the log");
    assert_eq!(record.segments.len(), 1, "no switch: {record:?}");
    let segment = &record.segments[0];
    let seg_len = segment.sealed_len.expect("sealed");
    // Node 1 serves the metadata: harm another replica.
    let (turn, victim) = segment
        .replicas
        .iter()
        .copied()
        .enumerate()
        .find(|(_, n)| *n != 1)
        .expect("a replica other than node 1");

    if !live {
        cluster.kill(victim).expect("kill");
    }
    let node = cluster
        .nodes
        .iter()
        .find(|n| n.id == victim)
        .expect("the victim");
    let (dir, log_path) = (node.dir.clone(), node.log.clone());
    let file = find_segment_file(&dir, log_id, segment.id).expect("the segment file");
    let damaged_at = harm(&file, seg_len, how);
    if !live {
        tokio::task::block_in_place(|| cluster.spawn(victim)).expect("restart");
        cluster
            .wait_node(victim, true, STEP)
            .await
            .expect("registered again");
    }

    // The node serves what is before the damage and refuses the rest at
    // once.
    let addr = cluster.client_addr(victim).expect("addr");
    let conn = NodeConn::connect_tokio(addr).await.expect("connect");
    let read = |from_offset| Read {
        log_id,
        segment: segment.id,
        from_offset,
        limit: seg_len,
        max_bytes: 1 << 20,
        wait_ms: 10_000,
    };
    // The node heals the copy on its own within seconds, so the read may
    // come after the heal: then it must serve the right entries.
    let first_seq = segment.first_seq;
    let started = Instant::now();
    match conn.request(&read(damaged_at), STEP).await.expect("read") {
        Message::ErrorMsg(ErrorMsg {
            code: ErrorCode::Damaged,
            value,
            ..
        }) => assert_eq!(value, damaged_at),
        Message::ReadResponse(r) => {
            let parsed = trilog_wire::record::parse_records(&r.records, r.from_offset, r.count)
                .expect("records");
            assert!(!parsed.is_empty(), "an empty answer for the damaged range");
            for (offset, payload) in parsed {
                assert_eq!(
                    payload_id(payload),
                    ledger.committed.get(&(first_seq + offset)).copied(),
                    "the damaged range served a wrong entry at offset {offset}"
                );
            }
        }
        other => panic!("a read of the damaged range answered {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the damaged read waited its long poll"
    );
    match conn.request(&read(0), STEP).await.expect("read") {
        Message::ReadResponse(r) => assert!(r.count > 0 && u64::from(r.count) <= damaged_at),
        other => panic!("a read before the damage answered {other:?}"),
    }

    // A fresh consumer reading the damaged replica first reads it all.
    let mut consumer = Consumer::open_at_turn(cluster.pool(), log_id, 0, turn)
        .await
        .expect("consumer");
    let deadline = Instant::now() + READ_DEADLINE;
    let mut reads = Vec::new();
    while consumer.position() < len {
        assert!(
            Instant::now() < deadline,
            "read {} of {len} by the deadline",
            consumer.position()
        );
        let batch = consumer
            .next_batch(Duration::from_secs(1))
            .await
            .expect("read");
        reads.extend(batch.into_iter().map(|r| (r.seq, payload_id(&r.payload))));
    }
    let v = verify(&ledger.committed, &reads, &ledger.maybe);
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom),
        (0, 0, 0, 0),
        "{v:?}"
    );
    assert_eq!(v.read, len);

    let log = std::fs::read_to_string(&log_path).expect("the node's log");
    assert!(
        log.contains("DAMAGE") && log.contains(&format!("from offset {damaged_at}")),
        "the damaged node does not say it found damage at {damaged_at}"
    );

    // The copy is healed: the damaged node alone serves the whole segment,
    // every record's crc checked, every entry the one committed there.
    let healed = wait_for("the damaged copy healed", HEAL_DEADLINE, || async move {
        read_segment_ids_from(addr, log_id, segment.id, seg_len)
            .await
            .ok()
    })
    .await
    .expect("healed");
    for (offset, id) in healed.iter().enumerate() {
        assert_eq!(
            ledger.committed.get(&(first_seq + offset as u64)),
            Some(id),
            "the healed copy holds another entry at offset {offset}"
        );
    }
    // The node says so once the heal's seal is answered, a moment after
    // the entries are durable.
    let log_path = &log_path;
    wait_for("the node says it healed its copy", STEP, || async move {
        std::fs::read_to_string(log_path)
            .ok()
            .filter(|log| log.contains("healed this node's copy"))
    })
    .await
    .expect("the node says it healed its copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_sealed_segment_is_read_around() {
    damaged_replica_is_read_around(Harm::FlipByte, 61, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_under_a_running_node_is_found_by_a_read_and_healed() {
    damaged_replica_is_read_around(Harm::FlipByte, 63, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_segment_cut_inside_a_record_is_read_around() {
    damaged_replica_is_read_around(Harm::Truncate, 62, false).await;
}
