//! The Raft baseline: its storage against openraft's own test suite and
//! through crashes (reopen, torn and damaged records, truncate, purge),
//! and a 3-node cluster of real processes through a leader's SIGKILL.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StorageError, Vote};
use trilog_baselines::raft::codec::read_record;
use trilog_baselines::raft::types::Entry;
use trilog_baselines::raft::{
    AppendRequest, LogStore, RaftClient, RaftCluster, RaftNodeCommand, RaftNodeOptions,
    StateMachine, TypeConfig,
};
use trilog_testkit::payload::{make_payload, payload_id};

// ---------------------------------------------------------------- storage

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::Builder::new()
            .prefix("trilog-raft-suite-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp dir");
        let log = LogStore::open(&dir.path().join("log")).expect("open log");
        let sm = StateMachine::open(&dir.path().join("sm")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_passes_openraft_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload_bytes: usize) -> Entry {
    let payload = match index % 7 {
        0 => EntryPayload::Blank,
        3 => EntryPayload::Membership(Membership::new(
            vec![[1u64, 2, 3].into_iter().collect()],
            None,
        )),
        _ => EntryPayload::Normal(AppendRequest {
            client: 9,
            seq: index,
            first_unacked: index,
            payloads: vec![make_payload(term << 32 | index, payload_bytes)],
        }),
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

/// What identifies an entry's content: its log id and payload.
fn fingerprint(e: &Entry) -> (LogId<u64>, String) {
    let what = match &e.payload {
        EntryPayload::Blank => "blank".to_string(),
        EntryPayload::Membership(m) => format!("membership {m:?}"),
        EntryPayload::Normal(r) => format!(
            "normal {} {:?}",
            r.seq,
            r.payloads.iter().map(|p| payload_id(p)).collect::<Vec<_>>()
        ),
    };
    (e.log_id, what)
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir")
}

async fn append_all(log: &mut LogStore, entries: Vec<Entry>) {
    log.blocking_append(entries).await.expect("append");
}

/// Appends entries `range` of `term`, `payload_bytes` each, 20 to a call.
async fn append_range(
    log: &mut LogStore,
    term: u64,
    range: std::ops::Range<u64>,
    payload_bytes: usize,
) {
    for start in range.clone().step_by(20) {
        let end = (start + 20).min(range.end);
        append_all(
            log,
            (start..end)
                .map(|i| entry(term, i, payload_bytes))
                .collect(),
        )
        .await;
    }
}

async fn contents(log: &mut LogStore) -> (Option<LogId<u64>>, Option<LogId<u64>>, Vec<Entry>) {
    let state = log.get_log_state().await.expect("log state");
    let entries = log.try_get_log_entries(0..u64::MAX).await.expect("read");
    (state.last_purged_log_id, state.last_log_id, entries)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Offsets of the intact records of a segment file.
fn record_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut pos = 16;
    let mut out = Vec::new();
    while let Some((_, used)) = read_record(&bytes[pos..], 64 << 20) {
        out.push(pos);
        pos += used;
    }
    out
}

#[tokio::test]
async fn log_store_recovers_entries_and_vote() {
    let dir = temp_dir("trilog-raft-log-");
    let path = dir.path().join("log");
    let written: Vec<Entry> = (0..50).map(|i| entry(1, i, 100)).collect();
    {
        let mut log = LogStore::open(&path).expect("open");
        log.save_vote(&Vote::new(3, 2)).await.expect("vote");
        for chunk in written.chunks(7) {
            append_all(&mut log, chunk.to_vec()).await;
        }
    }
    let mut log = LogStore::open(&path).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 2)));
    let (purged, last, entries) = contents(&mut log).await;
    assert_eq!(purged, None);
    assert_eq!(last, Some(log_id(1, 49)));
    assert_eq!(
        entries.iter().map(fingerprint).collect::<Vec<_>>(),
        written.iter().map(fingerprint).collect::<Vec<_>>()
    );
    // A range read is exact.
    let some = log.try_get_log_entries(10..=12).await.expect("read");
    assert_eq!(
        some.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
}

#[tokio::test]
async fn log_store_truncates_and_purges_across_segments() {
    let dir = temp_dir("trilog-raft-log-");
    let path = dir.path().join("log");
    // 512 KiB entries: a 64 MiB segment holds about 127 of them.
    let big = 512 << 10;
    {
        let mut log = LogStore::open(&path).expect("open");
        append_range(&mut log, 1, 0..200, big).await;
        assert!(segments(&path).len() >= 2, "the log spans segments");
        // A follower's conflicting tail, reaching back into the first
        // segment: the later segment goes.
        log.truncate(log_id(1, 100)).await.expect("truncate");
        assert_eq!(segments(&path).len(), 1);
    }
    let mut log = LogStore::open(&path).expect("reopen");
    let (_, last, entries) = contents(&mut log).await;
    assert_eq!(last, Some(log_id(1, 99)));
    assert_eq!(entries.len(), 100);
    // The new leader's entries follow, in a new term.
    append_range(&mut log, 2, 100..200, big).await;
    // The first segment now ends with entry 178 or so: purging past it
    // deletes it.
    log.purge(log_id(2, 185)).await.expect("purge");
    let left = segments(&path);
    assert!(
        left.len() < 3
            && !left
                .iter()
                .any(|p| p.ends_with("log-00000000000000000000.seg")),
        "the fully purged first segment is deleted: {left:?}"
    );
    drop(log);

    let mut log = LogStore::open(&path).expect("reopen after purge");
    let (purged, last, entries) = contents(&mut log).await;
    assert_eq!(purged, Some(log_id(2, 185)));
    assert_eq!(last, Some(log_id(2, 199)));
    assert_eq!(
        entries.iter().map(fingerprint).collect::<Vec<_>>(),
        (186..200)
            .map(|i| fingerprint(&entry(2, i, big)))
            .collect::<Vec<_>>()
    );

    // A snapshot installed past the log's end purges everything; the
    // next entry follows the purged one.
    log.purge(log_id(3, 500)).await.expect("purge past the end");
    let (purged, last, entries) = contents(&mut log).await;
    assert_eq!(
        (purged, last, entries.len()),
        (Some(log_id(3, 500)), Some(log_id(3, 500)), 0)
    );
    drop(log);
    let mut log = LogStore::open(&path).expect("reopen after purge past the end");
    let (purged, last, _) = contents(&mut log).await;
    assert_eq!((purged, last), (Some(log_id(3, 500)), Some(log_id(3, 500))));
    append_all(&mut log, vec![entry(3, 501, 10), entry(3, 502, 10)]).await;
    drop(log);
    let mut log = LogStore::open(&path).expect("reopen after append");
    let (_, last, entries) = contents(&mut log).await;
    assert_eq!(last, Some(log_id(3, 502)));
    assert_eq!(entries.len(), 2);
}

#[tokio::test]
async fn log_store_recovery_stops_at_torn_or_damaged_record() {
    let dir = temp_dir("trilog-raft-log-");
    let path = dir.path().join("log");
    {
        let mut log = LogStore::open(&path).expect("open");
        append_all(&mut log, (0..20).map(|i| entry(1, i, 300)).collect()).await;
    }
    let seg = segments(&path).pop().expect("a segment");
    let offsets = record_offsets(&seg);
    assert_eq!(offsets.len(), 20);

    // A torn last write: the last record's body is damaged.
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[offsets[19] + 20] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("write");
    let mut log = LogStore::open(&path).expect("reopen");
    let (_, last, _) = contents(&mut log).await;
    assert_eq!(
        last,
        Some(log_id(1, 18)),
        "recovery stops before the torn record"
    );
    append_all(&mut log, vec![entry(2, 19, 300)]).await;
    drop(log);

    // Damage in the middle: everything from there on is dropped, and the
    // records after it are cut from the file, so new appends never run
    // into them.
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[offsets[10] + 12] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("write");
    let mut log = LogStore::open(&path).expect("reopen");
    let (_, last, _) = contents(&mut log).await;
    assert_eq!(last, Some(log_id(1, 9)));
    append_all(&mut log, vec![entry(3, 10, 300)]).await;
    drop(log);
    let mut log = LogStore::open(&path).expect("reopen");
    let (_, last, entries) = contents(&mut log).await;
    assert_eq!(last, Some(log_id(3, 10)));
    assert_eq!(entries.len(), 11);
}

// ---------------------------------------------------------------- cluster

fn node_command() -> RaftNodeCommand {
    RaftNodeCommand::program(env!("CARGO_BIN_EXE_trilog-raft-node"))
}

const PAYLOAD_BYTES: usize = 256;
const WAIT: Duration = Duration::from_secs(30);

/// Every payload of the log as node `addr` applied it.
async fn read_log(cluster: &RaftCluster, addr: std::net::SocketAddr) -> Vec<Vec<u8>> {
    let client = cluster.client().await.expect("client");
    let mut out = Vec::new();
    loop {
        let r = client
            .read(addr, out.len() as u64, 4096)
            .await
            .expect("read");
        if r.payloads.is_empty() {
            return out;
        }
        out.extend(r.payloads);
    }
}

/// Appends payloads `ids` all at once; returns position -> id.
async fn append_at_once(client: &Arc<RaftClient>, ids: std::ops::Range<u64>) -> BTreeMap<u64, u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in ids {
        let c = client.clone();
        tasks.spawn(async move { (i, c.append(make_payload(i, PAYLOAD_BYTES)).await) });
    }
    let mut at = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (i, r) = r.expect("task");
        let pos = r.unwrap_or_else(|e| panic!("append {i}: {e}"));
        assert!(at.insert(pos, i).is_none(), "position {pos} given twice");
    }
    at
}

/// Payload `at[pos]` is at `pos` of `log`, for every acknowledged one.
fn assert_holds(log: &[Vec<u8>], at: &BTreeMap<u64, u64>) {
    for (pos, i) in at {
        assert_eq!(
            payload_id(&log[*pos as usize]),
            Some(*i),
            "payload at {pos}"
        );
    }
}

/// One writer appends payloads 1000..1300 one at a time while the leader
/// is SIGKILLed; every append succeeds. Adds them to `at`; returns the
/// new leader.
async fn write_across_leader_kill(
    cluster: &mut RaftCluster,
    client: &Arc<RaftClient>,
    leader: u64,
    at: &mut BTreeMap<u64, u64>,
) -> u64 {
    let writer = {
        let c = client.clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 1000..1300u64 {
                let pos = c.append(make_payload(i, PAYLOAD_BYTES)).await;
                done.push((i, pos.map_err(|e| e.to_string())));
            }
            done
        })
    };
    // Let it get going, then SIGKILL the leader.
    cluster
        .wait_caught_up(leader, 520, WAIT)
        .await
        .expect("writer under way");
    let killed_at = Instant::now();
    cluster.kill(leader).expect("kill leader");
    let new_leader = cluster
        .wait_leader(WAIT, Some(leader))
        .await
        .expect("a new leader");
    assert_ne!(new_leader, leader);
    eprintln!(
        "node {leader} killed; node {new_leader} leads after {} ms",
        killed_at.elapsed().as_millis()
    );
    let done = writer.await.expect("writer");
    let mut acked = HashSet::new();
    for (i, r) in done {
        let pos = r.unwrap_or_else(|e| panic!("append {i} across the failover: {e}"));
        assert!(at.insert(pos, i).is_none(), "position {pos} given twice");
        acked.insert(i);
    }
    assert_eq!(acked.len(), 300);
    new_leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_leader_kill_and_catch_up() {
    // Snapshots every 200 entries, 50 kept: the restarted node will have
    // to be sent a snapshot.
    let options = RaftNodeOptions {
        snapshot_every: 200,
        keep_logs: 50,
        ..RaftNodeOptions::default()
    };
    let mut cluster = RaftCluster::start(3, node_command(), options, None)
        .await
        .expect("start 3 nodes");
    let client = Arc::new(cluster.client().await.expect("client"));

    let mut at = append_at_once(&client, 0..500).await;
    assert_eq!(
        at.keys().copied().collect::<Vec<_>>(),
        (0..500).collect::<Vec<_>>(),
        "500 distinct positions, from 0 up"
    );
    let leader = cluster.wait_leader(WAIT, None).await.expect("leader");
    let leader_addr = cluster.nodes[leader as usize - 1].addr;
    assert_holds(&read_log(&cluster, leader_addr).await, &at);

    let new_leader = write_across_leader_kill(&mut cluster, &client, leader, &mut at).await;

    // The killed node comes back and catches up (from a snapshot: the
    // leader purged the log it lacks).
    cluster.restart(leader).expect("restart");
    let total = at.len() as u64;
    let status = cluster
        .wait_caught_up(leader, total, WAIT)
        .await
        .expect("restarted node catches up");
    assert_eq!(status.positions, total);

    // Every node holds the same log, each acknowledged payload exactly
    // once, at the position it was acknowledged at.
    let reference = read_log(&cluster, cluster.nodes[new_leader as usize - 1].addr).await;
    assert_eq!(reference.len() as u64, total, "no duplicates, nothing lost");
    assert_holds(&reference, &at);
    for n in 1..=3u64 {
        let status = cluster
            .wait_caught_up(n, total, WAIT)
            .await
            .expect("caught up");
        let log = read_log(&cluster, cluster.nodes[n as usize - 1].addr).await;
        assert!(log == reference, "node {n}'s log differs ({status:?})");
    }
    let restarted = cluster.status(leader).await.expect("status");
    assert!(
        restarted.snapshot_index.is_some(),
        "the restarted node has a snapshot: {restarted:?}"
    );
}

/// CPU time (user and system) each node process used so far.
fn node_cpu_ms(cluster: &RaftCluster) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let pid = n.pid().expect("running");
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
            // Fields after the command name (which ends with ')'): utime
            // and stime are the 12th and 13th, in clock ticks (100 Hz).
            let rest = &stat[stat.rfind(')').expect("comm") + 2..];
            let f: Vec<u64> = rest
                .split(' ')
                .skip(11)
                .take(2)
                .map(|x| x.parse().expect("tick count"))
                .collect();
            (f[0] + f[1]) * 10
        })
        .collect()
}

/// The `p`-quantile of sorted latencies.
fn pct(v: &[u64], p: f64) -> u64 {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Latencies of `count` appends one after another, sorted.
async fn sequential_latencies_us(
    client: &RaftClient,
    count: u64,
    payload_bytes: usize,
) -> Vec<u64> {
    let mut us = Vec::new();
    for i in 0..count {
        let t = Instant::now();
        client
            .append(make_payload(100 + i, payload_bytes))
            .await
            .expect("append");
        us.push(t.elapsed().as_micros() as u64);
    }
    us.sort_unstable();
    us
}

/// Latencies of `writers` writers appending `per_writer` each at once,
/// sorted; with the appends per second.
async fn concurrent_latencies_us(
    client: &Arc<RaftClient>,
    writers: u64,
    per_writer: u64,
    payload_bytes: usize,
) -> (Vec<u64>, f64) {
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let c = client.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per_writer {
                let t = Instant::now();
                c.append(make_payload(10_000 + w * per_writer + i, payload_bytes))
                    .await
                    .expect("append");
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        lat.extend(r.expect("task"));
    }
    lat.sort_unstable();
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    (lat, rate)
}

/// A profile, not a check: it prints the baseline's latency, throughput
/// and CPU per append and asserts nothing, so it is not part of the test
/// run. `cargo test --release -p trilog-baselines --test raft -- --ignored --nocapture`.
#[ignore = "a profile that prints numbers; run with --ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_and_concurrent_append_latency() {
    let cluster = RaftCluster::start(3, node_command(), RaftNodeOptions::default(), None)
        .await
        .expect("start 3 nodes");
    let client = Arc::new(cluster.client().await.expect("client"));
    let leader = cluster.wait_leader(WAIT, None).await.expect("leader");
    let term_before = cluster.status(leader).await.expect("status").term;
    let payload_bytes = 1024;
    for i in 0..50 {
        client
            .append(make_payload(i, payload_bytes))
            .await
            .expect("warm-up append");
    }
    let us = sequential_latencies_us(&client, 500, payload_bytes).await;
    eprintln!(
        "raft3 sequential appends of {payload_bytes} B: p50 {} us, p99 {} us, max {} us ({} appends, {})",
        pct(&us, 0.5),
        pct(&us, 0.99),
        us[us.len() - 1],
        us.len(),
        if cfg!(debug_assertions) {
            "test profile"
        } else {
            "release profile"
        }
    );

    let cpu_before = node_cpu_ms(&cluster);
    let writers = 64;
    let (lat, rate) = concurrent_latencies_us(&client, writers, 50, payload_bytes).await;
    eprintln!(
        "raft3 {writers} concurrent writers, {payload_bytes} B: {rate:.0} appends/s, p50 {} us, p99 {} us",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    let cpu_after = node_cpu_ms(&cluster);
    eprintln!(
        "node CPU per append (us): {:?}",
        cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(b, a)| (a - b) * 1000 / lat.len() as u64)
            .collect::<Vec<_>>()
    );
    let leader_after = cluster.wait_leader(WAIT, None).await.expect("leader");
    let term_after = cluster.status(leader_after).await.expect("status").term;
    eprintln!(
        "leader {leader} in term {term_before} before, {leader_after} in term {term_after} after"
    );
}
