//! Fault tests on real node processes over loopback: a replica killed
//! with SIGKILL under load, a switch whose metadata CAS has an unknown
//! outcome, a producer process killed and its log taken over, a takeover
//! racing a live producer, a node cut off by a network partition, a node
//! restarted under load, a replica stopped with SIGTERM under load (a
//! drain) and an idle one. Each checks that every
//! acknowledged entry is read back once and in order, that entries of
//! unknown outcome appear at most once, and that nothing else appears.
//!
//! Every wait is for a condition, with a deadline. The tests run one at a
//! time (they share 2 cores, and a starved node misses its lease).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trilog_client::meta::{CasOutcome, MetaError, MetaFuture, Versioned};
use trilog_client::{AppendError, ConnPool, MetaStore, Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterOptions};
use trilog_testkit::ledger::Ledger;
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::make_payload;
use trilog_testkit::reader::{read_segment_ids_from, sealed_log_len, Reader};
use trilog_testkit::verify::{verify, Verdict};
use trilog_testkit::wait::wait_for;
use trilog_testkit::writers::{close_producer, Writers};
use trilog_wire::meta::{LogMeta, NodeInfo, NodeMode, NodeModeEntry, NodeStatus};

/// One test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the test's turn; logs go to the test's output (shown on failure).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .is_test(true)
        .try_init();
    SERIAL.lock().await
}

const PAYLOAD_BYTES: usize = 200;
const CONCURRENCY: usize = 24;
/// Long enough for a switch (an ack timeout of 2 s, a CAS) on a debug
/// build sharing 2 cores.
const STEP: Duration = Duration::from_secs(20);

fn bench_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trilog-bench"))
}

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(bench_exe(), "node")
}

async fn record(cluster: &Cluster, log_id: u64) -> LogMeta {
    cluster
        .meta()
        .get_log(log_id)
        .await
        .expect("metadata")
        .record
        .expect("the log exists")
}

/// A node other than node 1 (the metadata store) holding a replica of the
/// open segment; with that segment's id.
async fn open_replica(cluster: &Cluster, log_id: u64) -> (u64, u64) {
    let r = record(cluster, log_id).await;
    let s = r.segments.last().expect("a segment");
    assert!(s.sealed_len.is_none(), "the last segment is open: {r:?}");
    let node = s
        .replicas
        .iter()
        .copied()
        .find(|n| *n != 1)
        .expect("3 replicas, at most one of them node 1");
    (node, s.id)
}

/// Waits until `segment` of the log is sealed (the producer switched);
/// returns its sealed length.
async fn wait_sealed(cluster: &Cluster, log_id: u64, segment: u64) -> u64 {
    let meta = &cluster.meta();
    let what = format!("segment {segment} sealed");
    wait_for(&what, STEP, move || async move {
        let r = meta.get_log(log_id).await.ok()?.record?;
        r.segments.iter().find(|s| s.id == segment)?.sealed_len
    })
    .await
    .expect("the producer switches")
}

fn assert_clean(v: &Verdict, what: &str) {
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom),
        (0, 0, 0, 0),
        "{what}: {v:?}"
    );
}

/// Stops the writers, closes the producer, and returns the ledger and the
/// log's length once sealed.
async fn finish_writing(cluster: &Cluster, log_id: u64, writers: Writers) -> (Ledger, u64) {
    let (ledger, producer) = tokio::time::timeout(STEP, writers.stop())
        .await
        .expect("appends in flight resolve");
    assert_eq!(ledger.seq_reused, 0, "two appends got one seq");
    close_producer(producer, STEP).await.expect("close");
    let len = sealed_log_len(cluster.meta().as_ref(), log_id)
        .await
        .expect("metadata")
        .expect("sealed after close");
    (ledger, len)
}

/// Reads the whole log with a fresh consumer.
async fn read_all(pool: ConnPool, log_id: u64, len: u64) -> Vec<(u64, Option<u64>)> {
    let reader = Reader::start(pool, log_id, 0).await.expect("consumer");
    match reader.finish(len, STEP).await {
        Ok(r) => r.reads,
        Err((why, _)) => panic!("{why}"),
    }
}

/// Checks the tailing reader's reads and a fresh read of the whole log
/// against the ledger: every acked entry once, in order, and only acked
/// or unknown-outcome ones.
async fn check_log(
    cluster: &Cluster,
    log_id: u64,
    ledger: &Ledger,
    maybe: &[u64],
    tail: Reader,
    len: u64,
) {
    let tailed = match tail.finish(len, STEP).await {
        Ok(r) => r,
        Err((why, _)) => panic!("tailing consumer: {why}"),
    };
    let v = verify(&ledger.committed, &tailed.reads, maybe);
    assert_clean(&v, "tailing consumer");
    assert_eq!(v.read, len, "the tailing consumer read the whole log");
    let fresh = read_all(cluster.pool(), log_id, len).await;
    let v = verify(&ledger.committed, &fresh, maybe);
    assert_clean(&v, "fresh consumer");
    assert_eq!(v.read, len, "a fresh consumer reads the whole log");
    assert!(
        ledger.committed.len() as u64 <= len,
        "more acks than entries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_makes_the_producer_switch() {
    let _one = serial().await;
    const LOG: u64 = 21;
    let mut cluster = Cluster::start(5, node_command(), None)
        .await
        .expect("cluster");
    let pool = cluster.pool();
    let producer = Producer::open(pool.clone(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let tail = Reader::start(pool.clone(), LOG, 0).await.expect("consumer");
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    writers.wait_acked(10_000, STEP).await.expect("load");
    let (victim, segment) = open_replica(&cluster, LOG).await;
    cluster.kill(victim).expect("kill -9");
    let at_kill = writers.acked();
    wait_sealed(&cluster, LOG, segment).await;
    writers
        .wait_acked(at_kill + 10_000, STEP)
        .await
        .expect("appends commit in the next segment");
    let (ledger, len) = finish_writing(&cluster, LOG, writers).await;
    let r = record(&cluster, LOG).await;
    assert!(r.segments.len() >= 2, "switched: {r:?}");
    assert!(
        r.segments[1..]
            .iter()
            .all(|s| !s.replicas.contains(&victim)),
        "the dead node is not chosen again: {r:?}"
    );
    check_log(&cluster, LOG, &ledger, &ledger.maybe, tail, len).await;
}

/// Waits (off the runtime's threads) for node `id`'s process to exit by
/// itself, with a deadline; its exit status.
async fn wait_exit(cluster: &mut Cluster, id: u64, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = cluster.exited(id).expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether the store lists node `id` alive now.
async fn listed_alive(cluster: &Cluster, id: u64) -> bool {
    let nodes = cluster.meta().list_nodes(false).await.expect("list nodes");
    nodes.iter().any(|n| n.info.node_id == id)
}

/// A lease far longer than any of these tests' steps: a node seen dead
/// soon after it stopped was deregistered, not timed out.
const LONG_LEASE_MS: u64 = 20_000;

/// SIGTERM to a replica of the open segment under load: the node drains
/// (answers what it made durable, closes its connections), gives its
/// registration up and exits 0; the producer switches away from it at
/// once, without waiting for an ack timeout or a lease; the store lists it
/// dead right after it exits though its lease had most of 20 s left; and
/// every acknowledged entry is read back once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_drained_by_sigterm_exits_0_and_leaves_at_once() {
    let _one = serial().await;
    const LOG: u64 = 61;
    let opts = ClusterOptions {
        lease_ms: Some(LONG_LEASE_MS),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(5, node_command(), None, opts)
        .await
        .expect("cluster");
    let pool = cluster.pool();
    let producer = Producer::open(pool.clone(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let tail = Reader::start(pool.clone(), LOG, 0).await.expect("consumer");
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    writers.wait_acked(10_000, STEP).await.expect("load");
    let (victim, segment) = open_replica(&cluster, LOG).await;
    assert!(listed_alive(&cluster, victim).await);
    let at_term = writers.acked();
    let asked = Instant::now();
    cluster.signal(victim, libc::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut cluster, victim, STEP).await;
    let took = asked.elapsed();
    assert!(status.success(), "node {victim} exited with {status}");
    assert!(
        !listed_alive(&cluster, victim).await,
        "node {victim} still listed alive {took:?} after SIGTERM: it did not give up its lease"
    );
    let log = std::fs::read_to_string(cluster.dir.join(format!("node-{victim}.log")))
        .expect("the node's log");
    assert!(log.contains("SIGTERM: drained in"), "{log}");
    wait_sealed(&cluster, LOG, segment).await;
    writers
        .wait_acked(at_term + 10_000, STEP)
        .await
        .expect("appends commit in the next segment");
    let (ledger, len) = finish_writing(&cluster, LOG, writers).await;
    let r = record(&cluster, LOG).await;
    let after: Vec<_> = r
        .segments
        .iter()
        .skip_while(|s| s.id != segment)
        .skip(1)
        .collect();
    assert!(!after.is_empty(), "switched: {r:?}");
    assert!(
        after.iter().all(|s| !s.replicas.contains(&victim)),
        "the stopped node is not chosen again: {r:?}"
    );
    check_log(&cluster, LOG, &ledger, &ledger.maybe, tail, len).await;
    eprintln!("node {victim} drained and exited {took:?} after SIGTERM");
}

/// SIGTERM to an idle node: it exits 0 at once and is listed dead at
/// once; a second node stopped the same way too, while the rest stay
/// alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_drains_and_exits_0() {
    let _one = serial().await;
    let opts = ClusterOptions {
        lease_ms: Some(LONG_LEASE_MS),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, node_command(), None, opts)
        .await
        .expect("cluster");
    for victim in [3, 2] {
        let asked = Instant::now();
        cluster.signal(victim, libc::SIGTERM).expect("SIGTERM");
        let status = wait_exit(&mut cluster, victim, STEP).await;
        assert!(status.success(), "node {victim} exited with {status}");
        assert!(!listed_alive(&cluster, victim).await, "node {victim}");
        eprintln!(
            "idle node {victim} exited {:?} after SIGTERM",
            asked.elapsed()
        );
    }
    assert!(listed_alive(&cluster, 1).await);
}

/// A metadata store whose next CAS, once armed, is applied and then
/// answered with a timeout, and whose next read after it times out too:
/// the outcome of that CAS is unknown and cannot be read back at once.
#[derive(Debug)]
struct Forgetful {
    inner: Arc<dyn MetaStore>,
    /// 0: honest; 1: the next CAS is forgotten; 2: the next read fails.
    armed: AtomicU8,
}

impl Forgetful {
    fn timeout(what: &'static str) -> MetaError {
        MetaError::Timeout { what, after_ms: 0 }
    }

    fn spent(&self) -> bool {
        self.armed.load(Ordering::SeqCst) == 0
    }
}

impl MetaStore for Forgetful {
    fn get_log(&self, log_id: u64) -> MetaFuture<'_, Versioned> {
        Box::pin(async move {
            let armed = self
                .armed
                .compare_exchange(2, 0, Ordering::SeqCst, Ordering::SeqCst);
            match armed {
                Ok(_) => Err(Self::timeout("get_log")),
                Err(_) => self.inner.get_log(log_id).await,
            }
        })
    }

    fn watch_log(&self, log_id: u64, known: u64, wait: Duration) -> MetaFuture<'_, Versioned> {
        self.inner.watch_log(log_id, known, wait)
    }

    fn cas_log(&self, log_id: u64, expected: u64, record: LogMeta) -> MetaFuture<'_, CasOutcome> {
        Box::pin(async move {
            let outcome = self.inner.cas_log(log_id, expected, record).await;
            let armed = self
                .armed
                .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst);
            match (armed, outcome) {
                (Ok(_), Ok(CasOutcome::Applied { .. })) => Err(Self::timeout("cas_log")),
                (Ok(_), other) => panic!("the forgotten CAS did not apply: {other:?}"),
                (Err(_), outcome) => outcome,
            }
        })
    }

    fn list_logs(&self) -> MetaFuture<'_, Vec<u64>> {
        self.inner.list_logs()
    }

    fn register_node(&self, node: NodeInfo, lease: Duration) -> MetaFuture<'_, NodeMode> {
        self.inner.register_node(node, lease)
    }

    fn deregister_node(&self, node_id: u64, incarnation: u64) -> MetaFuture<'_, bool> {
        self.inner.deregister_node(node_id, incarnation)
    }

    fn set_node_mode(&self, node_id: u64, mode: NodeMode) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        self.inner.set_node_mode(node_id, mode)
    }

    fn node_modes(&self) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        self.inner.node_modes()
    }

    fn list_nodes(&self, include_dead: bool) -> MetaFuture<'_, Vec<NodeStatus>> {
        self.inner.list_nodes(include_dead)
    }

    fn cluster_id(&self) -> MetaFuture<'_, u64> {
        self.inner.cluster_id()
    }
}

/// A bug the client had: the driver once turned a switch CAS whose outcome
/// was unknown into a fence it made up, and the producer, which still
/// owned its log, reported itself taken over and stopped. The machine now
/// reads the record back (again, after the failed read) and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_whose_cas_outcome_is_unknown_does_not_stop_the_producer() {
    let _one = serial().await;
    const LOG: u64 = 27;
    let mut cluster = Cluster::start(5, node_command(), None)
        .await
        .expect("cluster");
    let store = Arc::new(Forgetful {
        inner: cluster.meta(),
        armed: AtomicU8::new(0),
    });
    let pool = ConnPool::new(store.clone());
    let producer = Producer::open(pool.clone(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let tail = Reader::start(cluster.pool(), LOG, 0)
        .await
        .expect("consumer");
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    writers.wait_acked(2_000, STEP).await.expect("load");
    store.armed.store(1, Ordering::SeqCst);
    let (victim, segment) = open_replica(&cluster, LOG).await;
    cluster.kill(victim).expect("kill -9");
    let at_kill = writers.acked();
    wait_sealed(&cluster, LOG, segment).await;
    wait_for("the CAS and the read forgotten", STEP, || async {
        store.spent().then_some(())
    })
    .await
    .expect("the store forgets a CAS and a read");
    writers
        .wait_acked(at_kill + 2_000, STEP)
        .await
        .expect("the producer carries on in the next segment");
    let (ledger, len) = finish_writing(&cluster, LOG, writers).await;
    assert!(
        ledger.maybe.is_empty(),
        "no append was left with an unknown outcome: {:?}",
        ledger.first_errors
    );
    assert_eq!(record(&cluster, LOG).await.epoch, 1, "no takeover happened");
    check_log(&cluster, LOG, &ledger, &ledger.maybe, tail, len).await;
}

/// A `trilog-bench produce` process and the acks it printed.
struct ProducerProcess {
    child: std::process::Child,
    acks: Arc<Mutex<Vec<(u64, u64)>>>,
    epoch: Arc<Mutex<Option<u64>>>,
    lines: std::thread::JoinHandle<()>,
}

impl ProducerProcess {
    fn spawn(cluster: &Cluster, log_id: u64) -> ProducerProcess {
        let stderr = std::fs::File::create(cluster.dir.join("producer.log")).expect("log file");
        let mut child = Command::new(bench_exe())
            .args(["produce", "--meta", &cluster.meta_addr.to_string()])
            .args(["--log", &log_id.to_string()])
            .args(["--payload-bytes", "128", "--concurrency", "16"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn the producer");
        let stdout = child.stdout.take().expect("stdout");
        let acks = Arc::new(Mutex::new(Vec::new()));
        let epoch = Arc::new(Mutex::new(None));
        let (a, e) = (acks.clone(), epoch.clone());
        let lines = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // A killed process may leave its last line half written
                // (`acked 123 4` of `acked 123 45`): only a whole line
                // counts.
                let Some(line) = line.strip_suffix('\n') else {
                    return;
                };
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("acked"), Some(seq), Some(id)) => {
                        let seq = seq.parse().expect("seq");
                        let id = id.parse().expect("id");
                        a.lock().expect("acks").push((seq, id));
                    }
                    (Some("ready"), Some(ep), None) => {
                        let ep = ep.trim_start_matches("epoch=").parse().expect("epoch");
                        *e.lock().expect("epoch") = Some(ep);
                    }
                    _ => {}
                }
            }
        });
        ProducerProcess {
            child,
            acks,
            epoch,
            lines,
        }
    }

    fn acked(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// kill -9; returns every ack it printed (seq -> id) and its epoch.
    fn kill(mut self) -> (HashMap<u64, u64>, u64) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        // Its stdout is closed now: the reader thread drains the pipe.
        self.lines.join().expect("line reader");
        let acks = self.acks.lock().expect("acks").clone();
        let mut by_seq = HashMap::new();
        for (seq, id) in acks {
            assert!(
                by_seq.insert(seq, id).is_none(),
                "seq {seq} acked twice by the producer"
            );
        }
        let epoch = self.epoch.lock().expect("epoch").expect("ready line");
        (by_seq, epoch)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_producer_process_is_taken_over() {
    let _one = serial().await;
    const LOG: u64 = 22;
    /// The new producer's ids; the dead one's are below.
    const NEW_IDS: u64 = 1 << 40;
    let cluster = Cluster::start(4, node_command(), None)
        .await
        .expect("cluster");
    let proc = ProducerProcess::spawn(&cluster, LOG);
    let acked = || std::future::ready((proc.acked() >= 10_000).then_some(()));
    wait_for("the producer process to ack 10000 entries", STEP, acked)
        .await
        .expect("the producer process acks");
    let (dead_acks, dead_epoch) = proc.kill();
    assert!(dead_acks.len() >= 10_000);
    let pool = cluster.pool();
    let producer = tokio::time::timeout(
        STEP,
        Producer::takeover(pool.clone(), LOG, ProducerOptions::default()),
    )
    .await
    .expect("takeover in time")
    .expect("takeover");
    assert!(producer.epoch() > dead_epoch);
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, NEW_IDS, None);
    writers.wait_acked(5_000, STEP).await.expect("load");
    let (mut ledger, len) = finish_writing(&cluster, LOG, writers).await;
    for (seq, id) in &dead_acks {
        assert!(
            ledger.committed.insert(*seq, *id).is_none(),
            "seq {seq} acked by both producers"
        );
    }
    let reads = read_all(pool, LOG, len).await;
    // Every id of the dead producer it had not printed as acked has an
    // unknown outcome: it may be in the log (at most once: duplicates are
    // counted by payload id too).
    let dead_ids: HashSet<u64> = dead_acks.values().copied().collect();
    let mut maybe = ledger.maybe.clone();
    let unknown_found: Vec<u64> = reads
        .iter()
        .filter_map(|(_, id)| *id)
        .filter(|id| *id < NEW_IDS && !dead_ids.contains(id))
        .collect();
    maybe.extend(&unknown_found);
    let v = verify(&ledger.committed, &reads, &maybe);
    assert_clean(&v, "after the takeover");
    assert_eq!(v.read, len);
    eprintln!(
        "dead producer: {} acked, {} more of its entries kept by the takeover; new producer: {} acked",
        dead_acks.len(),
        unknown_found.len(),
        ledger.committed.len() - dead_acks.len()
    );
}

/// Appends payloads `ids` one at a time to a producer that was fenced:
/// each must fail with an unknown outcome. Returns the ids.
async fn appends_to_a_fenced_producer(p: &Producer, ids: std::ops::Range<u64>) -> Vec<u64> {
    let mut maybe = Vec::new();
    for id in ids {
        let outcome = tokio::time::timeout(STEP, p.append(make_payload(id, 64)))
            .await
            .expect("the old producer answers");
        match outcome {
            Err(AppendError::Indeterminate { .. }) => maybe.push(id),
            other => panic!("append to a fenced producer: {other:?}"),
        }
    }
    maybe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_fences_a_live_producer() {
    let _one = serial().await;
    const LOG: u64 = 23;
    const NEW_IDS: u64 = 1 << 40;
    const PROBE_IDS: u64 = 1 << 41;
    let cluster = Cluster::start(4, node_command(), None)
        .await
        .expect("cluster");
    let old = Producer::open(cluster.pool(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let old_epoch = old.epoch();
    let old_writers = Writers::start(old, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    old_writers.wait_acked(5_000, STEP).await.expect("load");
    // Another client takes over while the old producer keeps appending.
    let new = tokio::time::timeout(
        STEP,
        Producer::takeover(cluster.pool(), LOG, ProducerOptions::default()),
    )
    .await
    .expect("takeover in time")
    .expect("takeover");
    assert!(new.epoch() > old_epoch);
    // Every append the old producer takes from now on fails, and says its
    // outcome is unknown: never a silent success.
    let old_handle = old_writers.current();
    let probe_maybe = appends_to_a_fenced_producer(&old_handle, PROBE_IDS..PROBE_IDS + 20).await;
    drop(old_handle);
    let (old_ledger, old) = tokio::time::timeout(STEP, old_writers.stop())
        .await
        .expect("the old producer's appends resolve");
    assert!(
        close_producer(old, STEP).await.is_err(),
        "a fenced producer cannot close (seal) the log"
    );
    let writers = Writers::start(new, CONCURRENCY, PAYLOAD_BYTES, NEW_IDS, None);
    writers.wait_acked(5_000, STEP).await.expect("load");
    let (mut ledger, len) = finish_writing(&cluster, LOG, writers).await;
    for (seq, id) in &old_ledger.committed {
        assert!(
            ledger.committed.insert(*seq, *id).is_none(),
            "seq {seq} acked by both producers"
        );
    }
    let mut maybe = ledger.maybe.clone();
    maybe.extend(&old_ledger.maybe);
    maybe.extend(&probe_maybe);
    let reads = read_all(cluster.pool(), LOG, len).await;
    let v = verify(&ledger.committed, &reads, &maybe);
    assert_clean(&v, "after a takeover of a live producer");
    assert_eq!(v.read, len);
    // The fence is what stops the old producer: none of the appends it
    // was refused can be in the log.
    let read_ids: HashSet<u64> = reads.iter().filter_map(|(_, id)| *id).collect();
    assert!(
        old_ledger.refused.iter().all(|id| !read_ids.contains(id)),
        "an append the old producer refused is in the log"
    );
    assert!(
        old_ledger.maybe.len() + probe_maybe.len() > 0,
        "the old producer saw the takeover"
    );
}

/// Opens logs from 30 on until one whose consumer in this process will
/// read segment 0 from a node other than node 1 (which serves the
/// metadata and is not behind a proxy); returns it, its producer and that
/// node. The consumer reads a segment first from the replica at index
/// `pid % 3` (its first replica turn).
async fn open_log_first_read_from_a_proxied_node(cluster: &Cluster) -> (u64, Producer, u64) {
    let turn = std::process::id() as usize % 3;
    for log_id in 30..60 {
        let p = Producer::open(cluster.pool(), log_id, ProducerOptions::default())
            .await
            .expect("open");
        let r = record(cluster, log_id).await;
        let target = r.segments[0].replicas[turn];
        if target != 1 {
            return (log_id, p, target);
        }
        p.close().await.expect("close an unused log");
    }
    panic!("no placement without node 1 at the turn in 30 logs");
}

/// Heals node `node`'s partition; waits until it registers again and the
/// writers get 5000 more acks.
async fn heal_under_load(cluster: &Cluster, node: u64, writers: &Writers) {
    cluster.heal(node).expect("heal");
    cluster
        .wait_node(node, true, STEP)
        .await
        .expect("the healed node registers again");
    let at_heal = writers.acked();
    writers
        .wait_acked(at_heal + 5_000, STEP)
        .await
        .expect("load after the heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_replica_is_switched_away_from_and_read_around() {
    let _one = serial().await;
    let cluster = Cluster::start_with(
        5,
        node_command(),
        None,
        ClusterOptions {
            proxied: vec![2, 3, 4, 5],
            ..ClusterOptions::default()
        },
    )
    .await
    .expect("cluster");
    let pool = cluster.pool();
    // Cut off the replica the consumer reads segment 0 from, so both the
    // producer and the consumer must go around it.
    let (log_id, producer, target) = open_log_first_read_from_a_proxied_node(&cluster).await;
    let tail = Reader::start(pool.clone(), log_id, 0)
        .await
        .expect("consumer");
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    writers.wait_acked(5_000, STEP).await.expect("load");
    tail.wait_position(1_000, STEP)
        .await
        .expect("the consumer reads from the replica");
    cluster.partition(target).expect("partition");
    let cut = Instant::now();
    let at_cut = writers.acked();
    // The producer hears nothing from the replica for an ack timeout and
    // switches to a segment on other nodes.
    let seal = wait_sealed(&cluster, log_id, 0).await;
    eprintln!(
        "node {target} cut off: segment 0 sealed at {seal} after {:?}",
        cut.elapsed()
    );
    writers
        .wait_acked(at_cut + 5_000, STEP)
        .await
        .expect("appends commit in the next segment");
    // The consumer gives up on the silent replica and reads past the seal
    // from the others.
    tail.wait_position(seal + 500, STEP)
        .await
        .expect("the consumer fails over");
    eprintln!(
        "the consumer read past the seal {:?} after the cut",
        cut.elapsed()
    );
    cluster
        .wait_node(target, false, STEP)
        .await
        .expect("the cut-off node's lease runs out");
    let r = record(&cluster, log_id).await;
    assert!(
        r.segments[1..]
            .iter()
            .all(|s| !s.replicas.contains(&target)),
        "the cut-off node is not chosen again while cut off: {r:?}"
    );
    heal_under_load(&cluster, target, &writers).await;
    let (ledger, len) = finish_writing(&cluster, log_id, writers).await;
    check_log(&cluster, log_id, &ledger, &ledger.maybe, tail, len).await;
    // The healed node serves segment 0 up to its seal again.
    let addr = cluster.client_addr(target).expect("addr");
    let ids = read_segment_ids_from(addr, log_id, 0, seal)
        .await
        .expect("read the replica");
    check_segment(&ledger, 0, &ids);
}

/// Entries of a sealed segment starting at `first_seq`, read from one
/// replica, are the committed ones at their seqs (or of unknown outcome).
fn check_segment(ledger: &Ledger, first_seq: u64, ids: &[u64]) {
    let maybe: HashSet<u64> = ledger.maybe.iter().copied().collect();
    for (i, id) in ids.iter().enumerate() {
        let seq = first_seq + i as u64;
        match ledger.committed.get(&seq) {
            Some(acked) => assert_eq!(acked, id, "seq {seq}"),
            None => assert!(maybe.contains(id), "seq {seq}: id {id} was never appended"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_load_serves_its_old_segments() {
    let _one = serial().await;
    const LOG: u64 = 24;
    let mut cluster = Cluster::start(5, node_command(), None)
        .await
        .expect("cluster");
    let pool = cluster.pool();
    let producer = Producer::open(pool.clone(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let tail = Reader::start(pool.clone(), LOG, 0).await.expect("consumer");
    let writers = Writers::start(producer, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    writers.wait_acked(10_000, STEP).await.expect("load");
    let (victim, segment) = open_replica(&cluster, LOG).await;
    cluster.kill(victim).expect("kill -9");
    // Restarted at once, under load, on the same port and data directory.
    tokio::task::block_in_place(|| cluster.spawn(victim)).expect("restart");
    cluster
        .wait_node(victim, true, STEP)
        .await
        .expect("registered again");
    // The producer connects to the restarted replica again and resends
    // what it had not acknowledged (or, if the restart took longer than
    // an ack timeout, switches away from it): either way the load goes on.
    let at_restart = writers.acked();
    writers
        .wait_acked(at_restart + 10_000, STEP)
        .await
        .expect("load after the restart");
    let switched = record(&cluster, LOG)
        .await
        .segments
        .iter()
        .any(|s| s.id == segment && s.sealed_len.is_some());
    println!(
        "after the restart the producer {}",
        if switched { "switched" } else { "reconnected" }
    );
    let (ledger, len) = finish_writing(&cluster, LOG, writers).await;
    check_log(&cluster, LOG, &ledger, &ledger.maybe, tail, len).await;
    // The restarted node recovered the segments it held before the kill
    // (it missed their seal) and serves each up to its sealed length.
    let r = record(&cluster, LOG).await;
    let addr = cluster.client_addr(victim).expect("addr");
    let mut served = 0;
    for s in r.segments.iter().filter(|s| s.replicas.contains(&victim)) {
        let len = s.sealed_len.expect("sealed after close");
        let ids = read_segment_ids_from(addr, LOG, s.id, len)
            .await
            .expect("read the replica");
        assert_eq!(ids.len() as u64, len);
        check_segment(&ledger, s.first_seq, &ids);
        served += 1;
    }
    assert!(served >= 1, "the node held segment {segment}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_takeovers_leave_one_producer() {
    let _one = serial().await;
    const LOG: u64 = 25;
    const IDS_A: u64 = 1 << 40;
    const IDS_B: u64 = 1 << 41;
    let cluster = Cluster::start(5, node_command(), None)
        .await
        .expect("cluster");
    let old = Producer::open(cluster.pool(), LOG, ProducerOptions::default())
        .await
        .expect("open");
    let old_writers = Writers::start(old, CONCURRENCY, PAYLOAD_BYTES, 0, None);
    old_writers.wait_acked(5_000, STEP).await.expect("load");
    // Two clients take over at once while the old producer appends.
    let (a, b) = tokio::join!(
        Producer::takeover(cluster.pool(), LOG, ProducerOptions::default()),
        Producer::takeover(cluster.pool(), LOG, ProducerOptions::default()),
    );
    let (old_ledger, _old) = tokio::time::timeout(STEP, old_writers.stop())
        .await
        .expect("the old producer's appends resolve");
    let mut winners = Vec::new();
    for (p, ids) in [(a, IDS_A), (b, IDS_B)] {
        match p {
            Ok(p) => winners.push((p, ids)),
            Err(e) => eprintln!("a racing takeover lost: {e}"),
        }
    }
    assert!(!winners.is_empty(), "one of two racing takeovers wins");
    // Both may have finished, one after the other: then only the later
    // epoch can commit.
    winners.sort_by_key(|(p, _)| p.epoch());
    let mut committed = old_ledger.committed.clone();
    let mut maybe = old_ledger.maybe.clone();
    let last = winners.pop().expect("a winner");
    for (p, ids) in winners {
        let outcome = p.append(make_payload(ids, 64)).await;
        assert!(
            matches!(outcome, Err(AppendError::Indeterminate { .. })),
            "the earlier of two takeovers is fenced by the later: {outcome:?}"
        );
        maybe.push(ids);
    }
    let (p, ids) = last;
    let writers = Writers::start(p, CONCURRENCY, PAYLOAD_BYTES, ids + 1, None);
    writers.wait_acked(5_000, STEP).await.expect("load");
    let (ledger, len) = finish_writing(&cluster, LOG, writers).await;
    for (seq, id) in &ledger.committed {
        assert!(
            committed.insert(*seq, *id).is_none(),
            "seq {seq} acked twice"
        );
    }
    maybe.extend(&ledger.maybe);
    let reads = read_all(cluster.pool(), LOG, len).await;
    let v = verify(&committed, &reads, &maybe);
    assert_clean(&v, "after racing takeovers");
    assert_eq!(v.read, len);
}
