//! The chaos run: a cluster of real node processes, a producer with many
//! appends in flight and a consumer tailing the log, while a fault
//! injector kills (SIGKILL) and restarts nodes, pauses them (SIGSTOP) and
//! resumes them, cuts them off the network (a partition, through the
//! cluster's proxies) and heals them, and takes the log over with a new
//! producer while the current one is live; it also harms segment files
//! (a flipped byte in a sealed segment while its node runs, a file cut
//! inside a record while its node is down; the damaged copies are healed
//! by their nodes), fills the disk of the last node (its data directory is
//! a small ext4 image of its own: it turns read-only until the filler is
//! deleted), trims the log below what the consumer has read, and loses one
//! node for good (killed, its data directory deleted) a third of the way
//! in, which the cluster repairs by itself. At the end every node but the lost one comes back, the producer
//! closes, the consumer reads to the end of the log, and the check: every
//! acknowledged entry read back once, in order; entries of unknown outcome
//! at most once; nothing else.
//!
//! The fault schedule (when, which fault, which node, for how long) is a
//! function of the seed alone ([`plan`]), so a failing run can be run
//! again with the same faults; the load's timing is not reproducible.
//! Node 1 serves the metadata store, which is not fault tolerant: it is
//! never faulted. At most one node is down or paused at a time, so among
//! the other nodes at least three healthy ones and a spare remain.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trilog_client::{trim, Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterError, ClusterOptions};
use trilog_testkit::disk_faults::{self, find_segment_file, Harm};
use trilog_testkit::ledger::Ledger;
use trilog_testkit::loop_disk::{fill, LoopDisk};
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::reader::{read_segment_from, sealed_log_len, Reader};
use trilog_testkit::verify::Verdict;
use trilog_testkit::wait::wait_for;
use trilog_testkit::writers::{close_producer, Writers};

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub nodes: usize,
    pub duration: Duration,
    pub seed: u64,
    pub payload_bytes: usize,
    /// Appends in flight.
    pub concurrency: usize,
    pub log_id: u64,
    /// Put nodes 2.. behind proxies and cut them off now and then.
    pub partitions: bool,
    /// Lose one node for good a third of the way in (needs 6 nodes).
    pub node_loss: bool,
    /// Put the last node on a small disk of its own and fill it now and
    /// then (needs root, to mount a loop device; without, the run says so
    /// and goes on without).
    pub full_disk: bool,
}

/// The size of the full-disk node's file system.
const FULL_DISK_MIB: u64 = 512;
/// Room a fill leaves: below the node's reserve
/// (`DISK_RESERVE_BYTES_DEFAULT`, 64 MiB), so the node turns read-only,
/// and enough for its control writes and deletes.
const FULL_LEAVE_FREE_BYTES: u64 = 16 << 20;
/// How long a disk stays full.
const FULL_MS: std::ops::RangeInclusive<u64> = 2_000..=5_000;

/// Nodes a run that loses one for good needs: node 1, three replicas, a
/// spare to fault, and the lost one.
pub const NODES_MIN_WITH_LOSS: usize = 6;
/// How long the nodes of a chaos run wait before repairing a dead node's
/// replicas: longer than any planned outage (kill, pause, partition), so
/// only the lost node is repaired (a repair racing a returning node is
/// cancelled all the same).
pub const CHAOS_REPAIR_GRACE_SECS: u64 = 5;
/// The scrub's pause between passes in a chaos run: short, so a byte
/// flipped late in the run is found (and healed) before its end.
pub const CHAOS_SCRUB_PASS_PAUSE_SECS: u64 = 2;
/// How long the end of a run waits for every sealed segment of the lost
/// node to be repaired.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the end of a run waits for every harmed copy still in the log
/// to be healed.
const HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Nodes a run needs: node 1 (the metadata store, never faulted), three
/// replicas and a spare to fault.
pub const NODES_MIN: usize = 5;

/// Gap between two faults.
const FAULT_GAP_MS: std::ops::RangeInclusive<u64> = 1_000..=2_500;
/// How long a killed node stays down before it is restarted.
const KILL_DOWN_MS: std::ops::RangeInclusive<u64> = 1_000..=3_000;
/// How long a paused node stays paused.
const PAUSE_MS: std::ops::RangeInclusive<u64> = 500..=3_000;
/// How long a partition lasts.
const PARTITION_MS: std::ops::RangeInclusive<u64> = 1_000..=3_000;
/// Room the schedule leaves after a node's return (a restart takes a
/// moment) before the next node fault.
const RETURN_MARGIN_MS: u64 = 500;
/// Percent of faults that are takeovers when a node fault may be chosen;
/// then kills, then partitions (if on), then pauses.
const TAKEOVER_PERCENT: u32 = 25;
const KILL_PERCENT: u32 = 25;
const PARTITION_PERCENT: u32 = 15;
/// Disk faults and trims.
const FLIP_PERCENT: u32 = 10;
const CUT_PERCENT: u32 = 5;
const TRIM_PERCENT: u32 = 8;
const FILL_PERCENT: u32 = 6;
/// How long the end of the run may take: the writers to finish their
/// appends, the producer to close, the consumer to reach the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a takeover may take (it waits up to 60 s for a fence answer).
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a node may take to be registered again after its return.
const RETURN_TIMEOUT: Duration = Duration::from_secs(20);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

const _: () = assert!(
    TAKEOVER_PERCENT
        + KILL_PERCENT
        + PARTITION_PERCENT
        + FLIP_PERCENT
        + CUT_PERCENT
        + TRIM_PERCENT
        + FILL_PERCENT
        < 100
);

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of `node`, restarted `down_ms` later.
    Kill { node: u64, down_ms: u64 },
    /// SIGSTOP of `node`, SIGCONT `down_ms` later.
    Pause { node: u64, down_ms: u64 },
    /// `node` cut off the network (clients and the metadata store), healed
    /// `down_ms` later.
    Partition { node: u64, down_ms: u64 },
    /// A new producer takes the log over from the live one.
    Takeover,
    /// A flipped byte in a record of a sealed segment replica on `node`,
    /// while it runs (its scrub finds it). `pick` chooses the segment and
    /// the record.
    Flip { node: u64, pick: u64 },
    /// `node` killed, a sealed segment replica's file cut inside a record,
    /// the node restarted `down_ms` later (its recovery finds it).
    Cut { node: u64, down_ms: u64, pick: u64 },
    /// The log trimmed below what the consumer has read.
    Trim,
    /// `node` killed and its data directory deleted: lost for good.
    Lose { node: u64 },
    /// `node`'s disk filled (all but `FULL_LEAVE_FREE_BYTES`), the
    /// filler deleted `down_ms` later.
    Fill { node: u64, down_ms: u64 },
}

impl Fault {
    fn node(&self) -> Option<(u64, u64)> {
        match *self {
            Fault::Kill { node, down_ms }
            | Fault::Pause { node, down_ms }
            | Fault::Partition { node, down_ms }
            | Fault::Cut { node, down_ms, .. }
            | Fault::Fill { node, down_ms } => Some((node, down_ms)),
            Fault::Takeover | Fault::Flip { .. } | Fault::Trim | Fault::Lose { .. } => None,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill { node, down_ms } => {
                write!(f, "kill -9 node {node} (restart in {down_ms} ms)")
            }
            Fault::Pause { node, down_ms } => {
                write!(f, "SIGSTOP node {node} (SIGCONT in {down_ms} ms)")
            }
            Fault::Partition { node, down_ms } => {
                write!(f, "partition node {node} (heal in {down_ms} ms)")
            }
            Fault::Takeover => write!(f, "producer takeover"),
            Fault::Flip { node, .. } => write!(f, "flip a byte in a sealed segment on node {node}"),
            Fault::Cut { node, down_ms, .. } => write!(
                f,
                "kill -9 node {node}, cut a sealed segment file inside a record (restart in {down_ms} ms)"
            ),
            Fault::Trim => write!(f, "trim the log below what the consumer read"),
            Fault::Lose { node } => write!(f, "lose node {node} for good (kill -9, data deleted)"),
            Fault::Fill { node, down_ms } => {
                write!(f, "fill node {node}'s disk (freed in {down_ms} ms)")
            }
        }
    }
}

/// A fault and when it starts, in ms from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub at_ms: u64,
    pub fault: Fault,
}

/// The fault schedule of a run: a fault every 1 to 2.5 s; a node fault
/// only once the previous faulted node is back (else a takeover).
/// Partitions only if `partitions`. With `node_loss`, one node is lost for
/// good at the first fault a third of the way in when no other node is
/// down, and never faulted again. With `full_node`, that node's disk is
/// filled now and then, and it is never the one lost.
pub fn plan(
    seed: u64,
    nodes: usize,
    duration: Duration,
    partitions: bool,
    node_loss: bool,
    full_node: Option<u64>,
) -> Vec<Planned> {
    let min = if node_loss {
        NODES_MIN_WITH_LOSS
    } else {
        NODES_MIN
    };
    assert!(
        nodes >= min,
        "node 1 plus 3 replicas plus a spare to fault (plus one to lose)"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let end_ms = duration.as_millis() as u64;
    let lose_at = end_ms / 3;
    let mut lost: Option<u64> = None;
    let mut out = Vec::new();
    let mut t = 0u64;
    let mut node_free_at = 0u64;
    loop {
        t += rng.gen_range(FAULT_GAP_MS);
        if t >= end_ms {
            return out;
        }
        let roll: u32 = rng.gen_range(0..100);
        let mut node = rng.gen_range(2..=nodes as u64);
        while Some(node) == lost {
            node = rng.gen_range(2..=nodes as u64);
        }
        let pick = rng.gen::<u64>();
        if node_loss
            && lost.is_none()
            && t >= lose_at
            && t >= node_free_at
            && Some(node) != full_node
        {
            lost = Some(node);
            out.push(Planned {
                at_ms: t,
                fault: Fault::Lose { node },
            });
            continue;
        }
        let mut bound = TAKEOVER_PERCENT;
        let mut below = |percent: u32| {
            bound += percent;
            roll < bound
        };
        let fault = if t < node_free_at || roll < TAKEOVER_PERCENT {
            Fault::Takeover
        } else if below(KILL_PERCENT) {
            Fault::Kill {
                node,
                down_ms: rng.gen_range(KILL_DOWN_MS),
            }
        } else if below(PARTITION_PERCENT) && partitions {
            Fault::Partition {
                node,
                down_ms: rng.gen_range(PARTITION_MS),
            }
        } else if below(FLIP_PERCENT) {
            Fault::Flip { node, pick }
        } else if below(CUT_PERCENT) {
            Fault::Cut {
                node,
                down_ms: rng.gen_range(KILL_DOWN_MS),
                pick,
            }
        } else if below(TRIM_PERCENT) {
            Fault::Trim
        } else if let (true, Some(full)) = (below(FILL_PERCENT), full_node) {
            Fault::Fill {
                node: full,
                down_ms: rng.gen_range(FULL_MS),
            }
        } else {
            Fault::Pause {
                node,
                down_ms: rng.gen_range(PAUSE_MS),
            }
        };
        if let Some((_, down_ms)) = fault.node() {
            node_free_at = t + down_ms + RETURN_MARGIN_MS;
        }
        out.push(Planned { at_ms: t, fault });
    }
}

/// What a chaos run found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub faults: u64,
    pub takeovers_failed: u64,
    pub ledger_summary: LedgerSummary,
    pub verdict: Verdict,
    /// Entries in the log at the end, from the metadata.
    pub log_len: u64,
    pub segments: usize,
    pub epoch: u64,
    pub consumer_reopened: u32,
    pub elapsed: Duration,
    /// Sealed segments the cluster copied back to full strength after the
    /// node loss (from the nodes' repair log lines).
    pub repaired: u64,
    /// Disk space the trims gave back, as the file system counts it
    /// (allocated blocks of the deleted segments' files on every node).
    pub trimmed_bytes: u64,
    /// Segment files harmed (flipped bytes, cuts) and disks filled.
    pub disk_faults: u64,
    /// Harmed segments still in the log at the end, each read back whole
    /// (every record's crc checked) from every one of its replicas, the
    /// harmed one included: healed.
    pub healed: u64,
    /// Harmed segments still in the log whose harmed copy is not whole
    /// at the end, and refuses what it lacks as `Damaged` (read around).
    pub unhealed: u64,
}

/// The counts of a [`Ledger`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerSummary {
    pub appended: u64,
    pub acked: u64,
    pub maybe: u64,
    pub refused: u64,
    pub seq_reused: u64,
}

impl From<&Ledger> for LedgerSummary {
    fn from(l: &Ledger) -> Self {
        LedgerSummary {
            appended: l.appended,
            acked: l.committed.len() as u64,
            maybe: l.maybe.len() as u64,
            refused: l.refused.len() as u64,
            seq_reused: l.seq_reused,
        }
    }
}

impl ChaosReport {
    /// The line the run ends with.
    pub fn line(&self) -> String {
        let v = &self.verdict;
        format!(
            "chaos: faults={} appended={} acked={} read={} lost={} duplicated={} out_of_order={} repaired={} trimmed_bytes={}",
            self.faults,
            self.ledger_summary.appended,
            self.ledger_summary.acked,
            v.read,
            v.lost,
            v.duplicated,
            v.out_of_order,
            self.repaired,
            self.trimmed_bytes
        )
    }

    /// Nothing lost, duplicated, reordered or made up; every entry of the
    /// log read.
    pub fn clean(&self) -> bool {
        let v = &self.verdict;
        v.lost == 0
            && v.duplicated == 0
            && v.out_of_order == 0
            && v.phantom == 0
            && self.ledger_summary.seq_reused == 0
            && v.read == self.log_len
    }
}

/// Why a chaos run could not finish its check.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("client: {0}")]
    Client(#[from] trilog_client::ClientError),
    #[error("metadata: {0}")]
    Meta(#[from] trilog_client::meta::MetaError),
    #[error("{0}")]
    Stuck(String),
}

/// How a faulted node is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Downed {
    Killed,
    Paused,
    CutOff,
    /// Its disk is full (it runs, read-only).
    Full,
}

/// A faulted node waiting to come back.
struct Down {
    node: u64,
    due: Instant,
    how: Downed,
}

/// Runs the chaos of `cfg` and checks the log.
pub async fn run(cfg: ChaosConfig, cmd: NodeCommand) -> Result<ChaosReport, ChaosError> {
    let proxied = if cfg.partitions {
        (2..=cfg.nodes as u64).collect()
    } else {
        Vec::new()
    };
    let cluster = Cluster::start_with(
        cfg.nodes,
        cmd,
        None,
        ClusterOptions {
            proxied,
            node_args: vec![
                "--repair-grace-secs".into(),
                CHAOS_REPAIR_GRACE_SECS.to_string(),
                "--scrub-pass-pause-secs".into(),
                CHAOS_SCRUB_PASS_PAUSE_SECS.to_string(),
            ],
            ..ClusterOptions::default()
        },
    )
    .await?;
    println!(
        "cluster of {} nodes up in {}; metadata on node 1 at {} (never faulted)",
        cfg.nodes,
        cluster.dir.display(),
        cluster.meta_addr
    );
    let mut cluster = cluster;
    let disk = match cfg.full_disk {
        true => small_disk(&mut cluster, cfg.nodes as u64).await?,
        false => None,
    };
    let full_node = disk.as_ref().map(|_| cfg.nodes as u64);
    let schedule = plan(
        cfg.seed,
        cfg.nodes,
        cfg.duration,
        cfg.partitions,
        cfg.node_loss,
        full_node,
    );
    println!(
        "chaos: seed={} nodes={} duration={}s payload_bytes={} concurrency={} partitions={} node_loss={} full_disk={} planned_faults={}",
        cfg.seed,
        cfg.nodes,
        cfg.duration.as_secs(),
        cfg.payload_bytes,
        cfg.concurrency,
        if cfg.partitions { "on" } else { "off" },
        if cfg.node_loss { "on" } else { "off" },
        full_node.map_or("off".to_string(), |n| format!("node {n}")),
        schedule.len()
    );
    let pool = cluster.pool();
    let mut inj = Injector::new(cluster, cfg.clone(), disk);
    let producer = Producer::open(pool.clone(), cfg.log_id, inj.opts()).await?;
    let reader = Reader::start(pool, cfg.log_id, 0).await?;
    let writers = Writers::start(producer, cfg.concurrency, cfg.payload_bytes, 0, None);
    inj.start = Instant::now();
    inj.next_progress = inj.start + PROGRESS_EVERY;
    for (i, p) in schedule.iter().enumerate() {
        inj.before(p, &writers, &reader).await;
        inj.inject(i + 1, p.fault, &writers, &reader).await?;
    }
    inj.finish_faults(&writers, &reader).await?;
    inj.check(writers, reader).await
}

/// Moves node `node` (which holds nothing yet) onto a small ext4 image of
/// its own, mounted over its data directory: killed, its lease left to
/// end (its new directory gets a new identity), restarted there. `None`
/// (and why, printed) when no loop device can be mounted.
async fn small_disk(cluster: &mut Cluster, node: u64) -> Result<Option<LoopDisk>, ChaosError> {
    cluster.kill(node)?;
    cluster.wait_node(node, false, RETURN_TIMEOUT).await?;
    let dir = cluster.nodes[node as usize - 1].dir.clone();
    let image = cluster.dir.join(format!("node-{node}.img"));
    let disk = match LoopDisk::mount(&image, &dir, FULL_DISK_MIB) {
        Ok(disk) => Some(disk),
        Err(why) => {
            println!("full-disk faults off: cannot mount a loop ext4 image ({why}); run as root");
            None
        }
    };
    tokio::task::block_in_place(|| cluster.spawn(node))?;
    cluster.wait_node(node, true, RETURN_TIMEOUT).await?;
    if disk.is_some() {
        println!("node {node} runs on a {FULL_DISK_MIB} MiB ext4 image of its own");
    }
    Ok(disk)
}

/// The fault injector's state through a run.
struct Injector {
    /// The full-disk node's file system: declared before the cluster, so
    /// it is unmounted (lazily) before the cluster's directory is removed.
    disk: Option<LoopDisk>,
    /// The filler taking the room of that disk, while it is full.
    filler: Option<std::path::PathBuf>,
    cluster: Cluster,
    cfg: ChaosConfig,
    start: Instant,
    next_progress: Instant,
    /// At most one node is down at a time.
    down: Option<Down>,
    faults: u64,
    takeovers_failed: u64,
    /// Seeds each producer's choice of replicas, from the run's seed.
    opts_seed: u64,
    /// The node lost for good.
    lost: Option<u64>,
    /// Segments with a harmed replica: at most one replica of a segment is
    /// ever harmed (its node heals it, but a second harm of another
    /// replica before that heal would leave one good copy), as at most
    /// one node is down at a time.
    harmed: std::collections::BTreeSet<u64>,
    disk_faults: u64,
    trimmed_bytes: u64,
}

impl Injector {
    fn new(cluster: Cluster, cfg: ChaosConfig, disk: Option<LoopDisk>) -> Injector {
        let now = Instant::now();
        let cfg_seed = cfg.seed;
        Injector {
            disk,
            filler: None,
            cluster,
            cfg,
            start: now,
            next_progress: now,
            down: None,
            faults: 0,
            takeovers_failed: 0,
            opts_seed: cfg_seed,
            lost: None,
            harmed: std::collections::BTreeSet::new(),
            disk_faults: 0,
            trimmed_bytes: 0,
        }
    }

    fn opts(&mut self) -> ProducerOptions {
        self.opts_seed = self.opts_seed.wrapping_add(1_000_003);
        ProducerOptions {
            seed: self.opts_seed,
            ..ProducerOptions::default()
        }
    }

    fn stamp(&self) -> String {
        format!("[{:>5.1}s]", self.start.elapsed().as_secs_f64())
    }

    /// Sleeps until `until`, printing progress on the way.
    async fn wait(&mut self, until: Instant, writers: &Writers, reader: &Reader) {
        while Instant::now() < until {
            if Instant::now() >= self.next_progress {
                self.next_progress += PROGRESS_EVERY;
                println!(
                    "{} acked {} read {} (epoch {})",
                    self.stamp(),
                    writers.acked(),
                    reader.position(),
                    writers.current().epoch()
                );
            }
            let step = until
                .min(self.next_progress)
                .saturating_duration_since(Instant::now());
            tokio::time::sleep(step).await;
        }
    }

    /// Waits for the time of `p`; a faulted node comes back when due, and
    /// always before the next node fault.
    async fn before(&mut self, p: &Planned, writers: &Writers, reader: &Reader) {
        let due = self.start + Duration::from_millis(p.at_ms);
        if let Some(back) = self.down.as_ref().map(|d| d.due) {
            if back <= due || p.fault.node().is_some() {
                self.wait(back, writers, reader).await;
                self.bring_back().await;
            }
        }
        self.wait(due, writers, reader).await;
    }

    async fn inject(
        &mut self,
        n: usize,
        fault: Fault,
        writers: &Writers,
        reader: &Reader,
    ) -> Result<(), ChaosError> {
        let note = match fault.node() {
            Some((node, _)) => role(&self.cluster, self.cfg.log_id, node).await,
            None => String::new(),
        };
        println!("{} fault {n}: {fault}{note}", self.stamp());
        let (node, down_ms, how) = match fault {
            Fault::Kill { node, down_ms } => {
                self.cluster.kill(node)?;
                (node, down_ms, Downed::Killed)
            }
            Fault::Pause { node, down_ms } => {
                self.cluster.pause(node)?;
                (node, down_ms, Downed::Paused)
            }
            Fault::Partition { node, down_ms } => {
                self.cluster.partition(node)?;
                (node, down_ms, Downed::CutOff)
            }
            Fault::Takeover => {
                self.take_over(writers).await;
                return Ok(());
            }
            Fault::Flip { node, pick } => {
                self.harm(node, pick, Harm::FlipByte).await;
                return Ok(());
            }
            Fault::Cut {
                node,
                down_ms,
                pick,
            } => {
                self.cluster.kill(node)?;
                self.harm(node, pick, Harm::Truncate).await;
                (node, down_ms, Downed::Killed)
            }
            Fault::Trim => {
                self.trim(reader).await;
                return Ok(());
            }
            Fault::Fill { node, down_ms } => {
                let Some(disk) = &self.disk else {
                    unreachable!("fills are planned only with a small disk");
                };
                match fill(&disk.point, FULL_LEAVE_FREE_BYTES) {
                    Ok(path) => {
                        println!("{}   node {node}'s disk is full", self.stamp());
                        self.filler = Some(path);
                        self.disk_faults += 1;
                        (node, down_ms, Downed::Full)
                    }
                    Err(e) => {
                        println!(
                            "{}   skipped: filling node {node}'s disk: {e}",
                            self.stamp()
                        );
                        return Ok(());
                    }
                }
            }
            Fault::Lose { node } => {
                self.cluster.kill(node)?;
                let dir = self.cluster.nodes[node as usize - 1].dir.clone();
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    println!("{}   deleting {}: {e}", self.stamp(), dir.display());
                }
                self.lost = Some(node);
                self.faults += 1;
                return Ok(());
            }
        };
        assert!(self.down.is_none(), "one node down at a time");
        self.faults += 1;
        self.down = Some(Down {
            node,
            due: Instant::now() + Duration::from_millis(down_ms),
            how,
        });
        Ok(())
    }

    /// A new producer takes the log over; the workers move to it, and the
    /// old one's pending appends come back indeterminate (or committed).
    async fn take_over(&mut self, writers: &Writers) {
        let before = writers.current().epoch();
        let pool = self.cluster.pool();
        let opts = self.opts();
        let taken = tokio::time::timeout(
            TAKEOVER_TIMEOUT,
            Producer::takeover(pool, self.cfg.log_id, opts),
        )
        .await;
        match taken {
            Ok(Ok(next)) => {
                let epoch = next.epoch();
                drop(writers.replace(next));
                self.faults += 1;
                println!(
                    "{}   takeover done: epoch {before} -> {epoch}",
                    self.stamp()
                );
            }
            Ok(Err(e)) => {
                self.takeovers_failed += 1;
                println!("{}   takeover failed: {e}", self.stamp());
            }
            Err(_) => {
                self.takeovers_failed += 1;
                println!(
                    "{}   takeover not done within {TAKEOVER_TIMEOUT:?}",
                    self.stamp()
                );
            }
        }
    }

    /// Harms a record of a sealed segment replica on `node` (`pick`
    /// chooses which), unless no segment qualifies: sealed, not empty, no
    /// replica harmed yet, no replica on the lost node.
    async fn harm(&mut self, node: u64, pick: u64, how: Harm) {
        let record = match self.cluster.meta().get_log(self.cfg.log_id).await {
            Ok(v) => v.record,
            Err(e) => {
                println!("{}   skipped: metadata: {e}", self.stamp());
                return;
            }
        };
        let candidates: Vec<(u64, u64)> = record
            .iter()
            .flat_map(|r| &r.segments)
            .filter(|g| g.replicas.contains(&node) && !self.harmed.contains(&g.id))
            .filter(|g| self.lost.is_none_or(|l| !g.replicas.contains(&l)))
            .filter_map(|g| g.sealed_len.filter(|l| *l > 0).map(|l| (g.id, l)))
            .collect();
        if candidates.is_empty() {
            println!(
                "{}   skipped: no sealed segment to harm on node {node}",
                self.stamp()
            );
            return;
        }
        let (segment, len) = candidates[(pick % candidates.len() as u64) as usize];
        let dir = &self.cluster.nodes[node as usize - 1].dir;
        let Some(path) = find_segment_file(dir, self.cfg.log_id, segment) else {
            println!(
                "{}   skipped: segment {segment}'s file is not on node {node}",
                self.stamp()
            );
            return;
        };
        match disk_faults::harm(&path, len, (pick >> 20) % len, how) {
            Ok(offset) => {
                self.harmed.insert(segment);
                self.disk_faults += 1;
                self.faults += 1;
                println!(
                    "{}   {how:?} at record {offset} of segment {segment} ({len} entries) on node {node}",
                    self.stamp()
                );
            }
            Err(e) => println!("{}   skipped: {e}", self.stamp()),
        }
    }

    /// Trims the log below what the consumer has read (and the end of the
    /// sealed segments), and counts the space the file system gives back.
    async fn trim(&mut self, reader: &Reader) {
        let log_id = self.cfg.log_id;
        let record = match self.cluster.meta().get_log(log_id).await {
            Ok(v) => v.record,
            Err(e) => {
                println!("{}   skipped: metadata: {e}", self.stamp());
                return;
            }
        };
        let sealed_end = record
            .iter()
            .flat_map(|r| &r.segments)
            .filter_map(|g| g.sealed_len.map(|l| g.first_seq + l))
            .max()
            .unwrap_or(0);
        let before = reader.position().min(sealed_end);
        let sizes = segment_sizes(&self.cluster, log_id);
        match trim(&self.cluster.pool(), log_id, Some(before)).await {
            Ok(report) => {
                let mut freed = 0;
                for g in &report.deleted {
                    freed += sizes.get(&g.id).copied().unwrap_or(0);
                    let left: Vec<u64> = g
                        .replicas
                        .iter()
                        .copied()
                        .filter(|n| {
                            find_segment_file(
                                &self.cluster.nodes[*n as usize - 1].dir,
                                log_id,
                                g.id,
                            )
                            .is_some()
                        })
                        .collect();
                    if !left.is_empty() {
                        println!(
                            "{}   segment {} confirmed deleted but still on nodes {left:?}",
                            self.stamp(),
                            g.id
                        );
                    }
                }
                self.trimmed_bytes += freed;
                self.faults += 1;
                println!(
                    "{}   trimmed before {before}: {} segments deleted, {} pending, {freed} bytes freed",
                    self.stamp(),
                    report.deleted.len(),
                    report.pending.len()
                );
            }
            Err(e) => println!("{}   trim failed: {e}", self.stamp()),
        }
    }

    /// Waits until no sealed segment of the log lists the lost node, and
    /// counts the repairs the nodes logged.
    async fn wait_repaired(&self) -> Result<u64, ChaosError> {
        let Some(lost) = self.lost else {
            return Ok(0);
        };
        let meta = self.cluster.meta();
        let log_id = self.cfg.log_id;
        let repaired = wait_for(
            "every sealed segment of the lost node repaired",
            REPAIR_TIMEOUT,
            || {
                let meta = meta.clone();
                async move {
                    let record = meta.get_log(log_id).await.ok()?.record?;
                    let left = record
                        .segments
                        .iter()
                        .any(|g| g.sealed_len.is_some() && g.replicas.contains(&lost));
                    (!left).then_some(())
                }
            },
        )
        .await;
        if repaired.is_err() {
            return Err(ChaosError::Stuck(format!(
                "sealed segments still list node {lost}, lost for good, after {REPAIR_TIMEOUT:?}"
            )));
        }
        let needle = format!("replaces node {lost}:");
        let mut count = 0;
        for n in &self.cluster.nodes {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            count += log.lines().filter(|l| l.contains(&needle)).count() as u64;
        }
        println!(
            "{} every sealed segment of lost node {lost} repaired ({count} copies)",
            self.stamp()
        );
        Ok(count)
    }

    /// Restarts a killed node, resumes a paused one, heals a cut-off one.
    async fn bring_back(&mut self) {
        let Some(d) = self.down.take() else { return };
        let cluster = &mut self.cluster;
        let (outcome, what) = match d.how {
            // Blocks until the node is ready (recovery, and its port free
            // again): off the async workers' hands.
            Downed::Killed => (
                tokio::task::block_in_place(|| cluster.spawn(d.node)),
                "restarted",
            ),
            Downed::Paused => (cluster.resume(d.node), "SIGCONT"),
            Downed::CutOff => (cluster.heal(d.node), "healed"),
            Downed::Full => {
                let freed = match self.filler.take() {
                    Some(path) => std::fs::remove_file(&path).map_err(ClusterError::from),
                    None => Ok(()),
                };
                (freed, "disk freed")
            }
        };
        match outcome {
            Ok(()) => println!("{}   node {} {what}", self.stamp(), d.node),
            Err(e) => println!("{}   node {} {what} failed: {e}", self.stamp(), d.node),
        }
        if let Err(e) = self.cluster.wait_node(d.node, true, RETURN_TIMEOUT).await {
            println!("{}   node {}: {e}", self.stamp(), d.node);
        }
    }

    /// The last node comes back, the load runs to the end of the
    /// duration, and every node is made sure to run, resumed and healed.
    async fn finish_faults(
        &mut self,
        writers: &Writers,
        reader: &Reader,
    ) -> Result<(), ChaosError> {
        if let Some(back) = self.down.as_ref().map(|d| d.due) {
            self.wait(back, writers, reader).await;
            self.bring_back().await;
        }
        let end = self.start + self.cfg.duration;
        self.wait(end, writers, reader).await;
        println!("{} faults stopped; every node back", self.stamp());
        for n in (2..=self.cfg.nodes as u64).filter(|n| Some(*n) != self.lost) {
            if !self.cluster.is_running(n) {
                let cluster = &mut self.cluster;
                tokio::task::block_in_place(|| cluster.spawn(n))?;
            }
            self.cluster.resume(n)?;
            if self.cfg.partitions {
                self.cluster.heal(n)?;
            }
        }
        let alive = self.cfg.nodes - usize::from(self.lost.is_some());
        self.cluster.wait_alive(alive, RETURN_TIMEOUT).await?;
        Ok(())
    }

    /// Stops the writers, closes the producer, reads to the end of the
    /// log and checks it against what the writers were told.
    async fn check(self, writers: Writers, reader: Reader) -> Result<ChaosReport, ChaosError> {
        let (ledger, producer) = tokio::time::timeout(DRAIN_TIMEOUT, writers.stop())
            .await
            .map_err(|_| ChaosError::Stuck("appends in flight did not resolve".into()))?;
        close_producer(producer, DRAIN_TIMEOUT)
            .await
            .map_err(ChaosError::Stuck)?;
        let meta = self.cluster.meta();
        let log_id = self.cfg.log_id;
        let log_len = sealed_log_len(meta.as_ref(), log_id)
            .await?
            .ok_or_else(|| ChaosError::Stuck("the log is still open after close".into()))?;
        println!(
            "{} producer closed; log holds {log_len} entries; reading to the end",
            self.stamp()
        );
        let reads = reader
            .finish(log_len, DRAIN_TIMEOUT)
            .await
            .map_err(|(why, _)| ChaosError::Stuck(why))?;
        let repaired = self.wait_repaired().await?;
        let (healed, unhealed) = self.wait_healed().await?;
        let record = meta.get_log(log_id).await?.record;
        let (segments, epoch) = record.map_or((0, 0), |r| (r.segments.len(), r.epoch));
        Ok(ChaosReport {
            faults: self.faults,
            takeovers_failed: self.takeovers_failed,
            ledger_summary: LedgerSummary::from(&ledger),
            verdict: ledger.verify(&reads.reads, &ledger.maybe),
            log_len,
            segments,
            epoch,
            consumer_reopened: reads.reopened,
            elapsed: self.start.elapsed(),
            repaired,
            trimmed_bytes: self.trimmed_bytes,
            disk_faults: self.disk_faults,
            healed,
            unhealed,
        })
    }

    /// Waits until every harmed segment still in the log reads back whole
    /// from every one of its replicas. Returns (healed, unhealed): a copy
    /// still short at the deadline counts as unhealed only if its node
    /// refuses the range it lacks with `Damaged` (read around, never served
    /// wrong); serving anything else fails the run.
    async fn wait_healed(&self) -> Result<(u64, u64), ChaosError> {
        let log_id = self.cfg.log_id;
        let record = self.cluster.meta().get_log(log_id).await?.record;
        let mut left: Vec<(u64, u64, Vec<std::net::SocketAddr>)> = Vec::new();
        for g in record.iter().flat_map(|r| &r.segments) {
            let Some(len) = g.sealed_len.filter(|_| self.harmed.contains(&g.id)) else {
                continue;
            };
            let addrs = g
                .replicas
                .iter()
                .map(|n| self.cluster.client_addr(*n))
                .collect::<Result<Vec<_>, _>>()?;
            left.push((g.id, len, addrs));
        }
        let left = &left;
        let whole = wait_for("every harmed copy healed", HEAL_TIMEOUT, || async move {
            for (segment, len, addrs) in left {
                for addr in addrs {
                    read_segment_from(*addr, log_id, *segment, *len)
                        .await
                        .ok()?;
                }
            }
            Some(())
        })
        .await;
        if whole.is_ok() {
            println!(
                "{} every harmed segment still in the log ({}) reads whole from each replica",
                self.stamp(),
                left.len()
            );
            return Ok((left.len() as u64, 0));
        }
        let mut unhealed = Vec::new();
        for (segment, len, addrs) in left {
            for addr in addrs {
                match read_segment_from(*addr, log_id, *segment, *len).await {
                    Ok(_) => {}
                    Err(why) if why.contains("code: Damaged") => {
                        println!(
                            "{}   segment {segment} on {addr}: not healed, read around: {why}",
                            self.stamp()
                        );
                        unhealed.push(*segment);
                    }
                    Err(why) => {
                        return Err(ChaosError::Stuck(format!(
                            "harmed segment {segment} on {addr} neither whole nor refused as damaged: {why}"
                        )))
                    }
                }
            }
        }
        let healed = left.len() - unhealed.len();
        println!(
            "{} harmed segments still in the log: {healed} read whole from each replica, {} not healed (read around) after {HEAL_TIMEOUT:?}",
            self.stamp(),
            unhealed.len()
        );
        Ok((healed as u64, unhealed.len() as u64))
    }
}

/// Per segment of `log_id`, the bytes its files (data and control)
/// allocate on every node's disk, as the file system counts them.
fn segment_sizes(cluster: &Cluster, log_id: u64) -> std::collections::BTreeMap<u64, u64> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &std::path::Path, prefix: &str, out: &mut std::collections::BTreeMap<u64, u64>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&path, prefix, out);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let Some(segment) = rest.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()) else {
                continue;
            };
            *out.entry(segment).or_default() += meta.blocks() * 512;
        }
    }
    let prefix = format!("{log_id:016x}-");
    let mut out = std::collections::BTreeMap::new();
    for n in &cluster.nodes {
        walk(&n.dir, &prefix, &mut out);
    }
    out
}

/// " [replica of the open segment S]" if `node` holds one, for the log.
async fn role(cluster: &Cluster, log_id: u64, node: u64) -> String {
    let record = match cluster.meta().get_log(log_id).await {
        Ok(v) => v.record,
        Err(_) => None,
    };
    match record.as_ref().and_then(|r| r.segments.last()) {
        Some(s) if s.sealed_len.is_none() && s.replicas.contains(&node) => {
            format!(" [replica of the open segment {}]", s.id)
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let d = Duration::from_secs(60);
        assert_eq!(
            plan(7, 6, d, true, true, Some(6)),
            plan(7, 6, d, true, true, Some(6))
        );
        assert_ne!(
            plan(7, 6, d, true, true, Some(6)),
            plan(8, 6, d, true, true, Some(6))
        );
        assert!(plan(7, 6, d, false, true, Some(6))
            .iter()
            .all(|p| !matches!(p.fault, Fault::Partition { .. })));
    }

    #[test]
    fn the_schedule_keeps_one_node_down_at_most_and_spares_node_1() {
        let mut kinds = [0u32; 4];
        for seed in 0..200 {
            let p = plan(seed, 6, Duration::from_secs(60), true, false, None);
            assert!(p.len() >= 20, "seed {seed}: only {} faults", p.len());
            let mut free_at = 0;
            let mut seen = [false; 4];
            for f in &p {
                if let Some((node, down_ms)) = f.fault.node() {
                    assert!((2..=6).contains(&node), "seed {seed}: {f:?}");
                    assert!(f.at_ms >= free_at, "seed {seed}: overlapping {f:?}");
                    free_at = f.at_ms + down_ms;
                }
                let kind = match f.fault {
                    Fault::Kill { .. } => 0,
                    Fault::Pause { .. } => 1,
                    Fault::Partition { .. } => 2,
                    Fault::Takeover => 3,
                    Fault::Flip { .. }
                    | Fault::Cut { .. }
                    | Fault::Trim
                    | Fault::Lose { .. }
                    | Fault::Fill { .. } => continue,
                };
                seen[kind] = true;
            }
            for (k, s) in kinds.iter_mut().zip(seen) {
                *k += u32::from(s);
            }
        }
        // Every kind shows up in nearly every run.
        assert!(kinds.iter().all(|k| *k >= 180), "{kinds:?}");
    }

    #[test]
    fn fills_hit_only_the_small_disk_node_which_is_never_lost() {
        let mut with_fill = 0;
        for seed in 0..200 {
            let p = plan(seed, 6, Duration::from_secs(60), true, true, Some(6));
            let mut fills = 0;
            for f in &p {
                match f.fault {
                    Fault::Fill { node, down_ms } => {
                        assert_eq!(node, 6, "seed {seed}: {f:?}");
                        assert!(FULL_MS.contains(&down_ms));
                        fills += 1;
                    }
                    Fault::Lose { node } => assert_ne!(node, 6, "seed {seed}"),
                    _ => {}
                }
            }
            with_fill += u32::from(fills > 0);
            let without = plan(seed, 6, Duration::from_secs(60), true, true, None);
            assert!(without
                .iter()
                .all(|f| !matches!(f.fault, Fault::Fill { .. })));
        }
        assert!(with_fill >= 120, "fills in only {with_fill} of 200 runs");
    }
}
