//! The node's repair loop: a thread that looks at the registrations every
//! [`REPAIR_SCAN_INTERVAL_MS`] and, when `ScanSchedule` says (a node just
//! crossed the grace period, repairs are left, or a minute passed), scans
//! the records for sealed segments with a lost replica that
//! placement gives to this node, and copies them here one at a time, at a
//! throttled rate (`trilog_protocol::repair` decides who repairs what, and
//! why no leader is needed).
//!
//! Like the registration loop it runs a small current-thread tokio runtime
//! of its own, off the shards' executors; it reaches the shards (its own
//! and the sources') through their public listeners, like any client.

mod copy;
mod pace;
mod peer;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use trilog_meta::{MetaAddr, MetaStore};
use trilog_protocol::repair::{
    heal_task, plan, refills, LostNodes, NodeView, RepairJob, RepairTask, ScanSchedule,
    REPAIR_SCAN_INTERVAL_MS,
};
use trilog_protocol::NodeId;
use trilog_wire::meta::NodeStatus;

use crate::metrics::{RepairMetrics, RepairOutcome};
use crate::repair_board::RepairBoard;
use copy::{Env, Outcome};
use pace::Pacer;

/// What the repair loop needs to know.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub node_id: NodeId,
    pub meta: MetaAddr,
    /// Where this node's shards listen (its own copies go through them).
    pub host: IpAddr,
    pub shard_ports: Vec<u16>,
    pub grace_ms: u64,
    pub bytes_per_sec: u64,
    /// This node replaces a lost one (`--replace`): before anything else,
    /// copy back every sealed segment the records list it for.
    pub refill: bool,
    /// This node's copies that miss entries below their seal, as its
    /// shards report them: healed at every pass.
    pub board: Arc<RepairBoard>,
    /// The node's identity: the store and other nodes serve mutual TLS.
    pub tls: Option<Arc<trilog_tls::TlsIdentity>>,
    /// What repairs copied and how they ended.
    pub metrics: RepairMetrics,
}

/// Starts the repair thread; it runs for the life of the process.
pub fn spawn_repair(config: RepairConfig) {
    let spawned = std::thread::Builder::new()
        .name("trilog-repair".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(repair_loop(config)),
                Err(e) => error!("cannot start the repair runtime: {e}"),
            }
        });
    if let Err(e) = spawned {
        error!(
            "cannot start the repair thread: {e}; lost replicas will not be repaired by this node"
        );
    }
}

async fn repair_loop(config: RepairConfig) {
    let epoch = Instant::now();
    let mut lost = LostNodes::new(config.grace_ms);
    let mut pacer = Pacer::new(config.bytes_per_sec);
    let mut store: Option<Arc<dyn MetaStore>> = None;
    let mut refill_pending = config.refill;
    let mut schedule = ScanSchedule::new();
    info!(
        "repair: node {} scans every {} ms; a node is lost after {} ms; copies at {} bytes/s",
        config.node_id, REPAIR_SCAN_INTERVAL_MS, config.grace_ms, config.bytes_per_sec
    );
    loop {
        tokio::time::sleep(Duration::from_millis(REPAIR_SCAN_INTERVAL_MS)).await;
        let s = match &store {
            Some(s) => s.clone(),
            None => match config
                .meta
                .connect_tls(trilog_meta::META_CALL_TIMEOUT, config.tls.as_ref())
                .await
            {
                Ok(s) => {
                    store = Some(s.clone());
                    s
                }
                Err(e) => {
                    warn!("repair: metadata store at {}: {e}", config.meta);
                    continue;
                }
            },
        };
        // The registrations every interval (cheap); the records only
        // when the schedule says (a scan reads every log's record).
        let now_ms = epoch.elapsed().as_millis() as u64;
        match s.list_nodes(true).await {
            Ok(nodes) => lost.observe(now_ms, &views(&nodes)),
            Err(e) => {
                warn!("repair: metadata store at {}: {e}", config.meta);
                store = None;
                continue;
            }
        }
        // Heals first: a copy short of its seal serves less than it should
        // now, and it is this node's own to fix.
        if let Err(e) = heal(&config, &s, &mut lost, &mut pacer, epoch).await {
            warn!("repair: heal: {e}");
        }
        if !refill_pending && !schedule.due(now_ms, &lost) {
            continue;
        }
        let pass = if refill_pending {
            Pass::Refill
        } else {
            Pass::Repair
        };
        // Dated from its start: a node lost while it ran is caught by the
        // next one.
        let scanned = scan(&config, &s, &mut lost, &mut pacer, epoch, pass).await;
        match scanned {
            Ok(tasks) => {
                refill_pending = false;
                schedule.scanned(now_ms, tasks);
            }
            Err(e) => {
                warn!("repair: scan: {e}");
                schedule.scanned(now_ms, 1);
                store = None;
            }
        }
        pacer.idle();
    }
}

fn views(nodes: &[NodeStatus]) -> Vec<NodeView> {
    nodes.iter().map(NodeView::of).collect()
}

/// What a scan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The repairs placement gives this node.
    Repair,
    /// This node's own copies, after it replaced a lost node.
    Refill,
    /// This node's own copies that miss entries below their seal.
    Heal,
}

/// Where every node's shards are, this node's own at an address it can
/// reach whatever it advertises (its own copies go through them).
fn addresses(config: &RepairConfig, nodes: &[NodeStatus]) -> BTreeMap<NodeId, (String, Vec<u16>)> {
    let mut addrs: BTreeMap<NodeId, (String, Vec<u16>)> = nodes
        .iter()
        .map(|n| {
            (
                n.info.node_id,
                (n.info.host.clone(), n.info.shard_ports.clone()),
            )
        })
        .collect();
    let own_host = if config.host.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        config.host
    };
    addrs.insert(
        config.node_id,
        (own_host.to_string(), config.shard_ports.clone()),
    );
    addrs
}

/// One pass over every log.
async fn scan(
    config: &RepairConfig,
    store: &Arc<dyn MetaStore>,
    lost: &mut LostNodes,
    pacer: &mut Pacer,
    epoch: Instant,
    pass: Pass,
) -> Result<usize, trilog_meta::MetaError> {
    let now_ms = |_: ()| epoch.elapsed().as_millis() as u64;
    let nodes = store.list_nodes(true).await?;
    lost.observe(now_ms(()), &views(&nodes));
    let mut planned = 0;
    let addrs = addresses(config, &nodes);
    for log_id in store.list_logs().await? {
        let Some(record) = store.get_log(log_id).await?.record else {
            continue;
        };
        if record.deleted {
            continue;
        }
        let tasks: Vec<RepairTask> = match pass {
            Pass::Repair => plan(&record, config.node_id, lost, now_ms(())),
            Pass::Refill | Pass::Heal => refills(&record, config.node_id, lost),
        };
        planned += tasks.len();
        for task in tasks {
            run_task(config, store, &addrs, pacer, task, pass).await;
        }
    }
    Ok(planned)
}

/// Heals this node's copies that its shards report short of their seal,
/// each from another live replica of the segment.
async fn heal(
    config: &RepairConfig,
    store: &Arc<dyn MetaStore>,
    lost: &mut LostNodes,
    pacer: &mut Pacer,
    epoch: Instant,
) -> Result<(), trilog_meta::MetaError> {
    let keys = config.board.all();
    if keys.is_empty() {
        return Ok(());
    }
    let nodes = store.list_nodes(true).await?;
    lost.observe(epoch.elapsed().as_millis() as u64, &views(&nodes));
    let addrs = addresses(config, &nodes);
    for key in keys {
        let Some(record) = store.get_log(key.log_id).await?.record else {
            continue;
        };
        match heal_task(&record, config.node_id, key.segment, lost) {
            Some(task) => run_task(config, store, &addrs, pacer, task, Pass::Heal).await,
            None => info!(
                "repair: log {} segment {}: this node's copy misses entries, but the record lists no sealed copy here or no live replica to heal it from; asked again later",
                key.log_id, key.segment
            ),
        }
    }
    Ok(())
}

/// Runs one job to its end, and says how it went.
async fn run_task(
    config: &RepairConfig,
    store: &Arc<dyn MetaStore>,
    addrs: &BTreeMap<NodeId, (String, Vec<u16>)>,
    pacer: &mut Pacer,
    task: RepairTask,
    pass: Pass,
) {
    let (log_id, segment, lost_node) = (task.log_id, task.segment.id, task.lost);
    let job = match pass {
        Pass::Repair => {
            info!(
                "repair: copying log {log_id} segment {segment} ({} entries) in place of lost node {lost_node}, from {:?}",
                task.sealed_len, task.sources
            );
            RepairJob::new(task, config.node_id)
        }
        Pass::Refill | Pass::Heal => RepairJob::refill(task, config.node_id),
    };
    let mut env = Env {
        me: config.node_id,
        store,
        addrs,
        pacer,
        chunk_bytes: trilog_protocol::repair::repair_chunk_bytes(config.bytes_per_sec),
        tls: config.tls.clone(),
    };
    // A refill's or a heal's "lost node" is this one: never cancelled.
    let back = async || pass == Pass::Repair && lost_node_back(store, lost_node).await;
    // A new copy is unlisted until its job publishes it: the shards must
    // not sweep it meanwhile.
    let key = trilog_protocol::shard::SegmentKey { log_id, segment };
    if pass == Pass::Repair {
        config.board.repair_started(key);
    }
    let outcome = copy::run(job, &mut env, back).await;
    if pass == Pass::Repair {
        config.board.repair_ended(key);
    }
    let counted = match &outcome {
        Ok(Outcome::Published { entries, bytes, .. }) => {
            config.metrics.copied(*entries, *bytes);
            RepairOutcome::Published
        }
        Ok(Outcome::Refilled { entries, bytes, .. }) => {
            config.metrics.copied(*entries, *bytes);
            RepairOutcome::Refilled
        }
        Ok(Outcome::Abandoned { .. }) => RepairOutcome::Abandoned,
        Err(_) => RepairOutcome::Failed,
    };
    config.metrics.job_ended(counted);
    match outcome {
        Ok(Outcome::Published {
            entries,
            bytes,
            elapsed,
        }) => info!(
            "repair: log {log_id} segment {segment}: node {} replaces node {lost_node}: {entries} entries, {bytes} bytes in {} ms ({:.1} MiB/s)",
            config.node_id,
            elapsed.as_millis(),
            bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-6)
        ),
        Ok(Outcome::Refilled {
            entries,
            bytes,
            elapsed,
        }) if entries > 0 => {
            let what = if pass == Pass::Heal { "healed" } else { "refilled" };
            info!(
                "repair: log {log_id} segment {segment}: {what} this node's copy: {entries} entries, {bytes} bytes in {} ms",
                elapsed.as_millis()
            )
        }
        Ok(Outcome::Refilled { .. }) => {}
        Ok(Outcome::Abandoned { why }) => {
            info!("repair: log {log_id} segment {segment}: abandoned: {why}")
        }
        Err(e) => warn!("repair: log {log_id} segment {segment}: {e}; retried at a later scan"),
    }
}

async fn lost_node_back(store: &Arc<dyn MetaStore>, node: NodeId) -> bool {
    match store.list_nodes(false).await {
        Ok(nodes) => trilog_protocol::repair::lost_node_back(&views(&nodes), node),
        Err(e) => {
            warn!("repair: cannot check whether node {node} is back: {e}");
            false
        }
    }
}
