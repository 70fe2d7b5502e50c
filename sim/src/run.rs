//! One seeded run of a simulated cluster: nodes running the node's shard
//! code on simulated disks, producers and a consumer running the client
//! library, a metadata store running the embedded store's state, all on
//! the simulated network, through the faults the seed draws; the
//! invariants judged after every step; then a heal, and Progress judged:
//! every entry a live producer took has an outcome and the consumer read
//! every committed entry.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trilog_client::ConnPool;
use trilog_meta::MetaStore;
use trilog_protocol::producer::StopReason;

use crate::actors::{self, Event, ProducerPlan, SharedWorld, World, LOG_ID};
use crate::check::{Checker, NodeDisk, Violation};
use crate::client::SimClientRuntime;
use crate::disk::SimDisk;
use crate::executor::{ProcessId, Sim, SimHandle, Step};
use crate::faults::{self, Fault, FaultBounds, Planned};
use crate::meta::{MetaFaults, SimMeta};
use crate::net::{Net, NetConfig};
use crate::node::{node_ip, start_node, NodeSpec};
use crate::rng::Rng;

/// The shape of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub entries: u32,
    pub faults_max: u32,
    pub window: Duration,
    /// How long, after the heal, the cluster has to settle.
    pub settle: Duration,
    /// Steps a run may take: past it, the cluster spins without settling
    /// (a livelock at one virtual instant, say).
    pub steps_max: u64,
}

impl RunConfig {
    pub fn new(seed: u64) -> RunConfig {
        RunConfig {
            seed,
            nodes: 5,
            entries: 40,
            faults_max: 8,
            window: Duration::from_secs(3),
            settle: Duration::from_secs(60),
            steps_max: 2_000_000,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub steps: u64,
    pub faults: u32,
    pub acked: usize,
    pub read: u64,
    pub virtual_time: Duration,
    pub failure: Option<Violation>,
    pub trace: Vec<String>,
}

struct NodeSlot {
    spec: NodeSpec,
    disk: SimDisk,
    process: Option<ProcessId>,
    restart_at: Option<Duration>,
}

struct ProducerSlot {
    process: ProcessId,
    plan: ProducerPlan,
    killed: bool,
    epoch: Option<u64>,
    submitted: u32,
    resolved: u32,
    done: bool,
    stopped: Option<Option<StopReason>>,
    closed: Option<bool>,
}

/// Everything a run holds.
struct Run {
    cfg: RunConfig,
    sim: Sim,
    net: Net,
    meta: SimMeta,
    rng: Rng,
    world: SharedWorld,
    nodes: BTreeMap<u64, NodeSlot>,
    producers: BTreeMap<u32, ProducerSlot>,
    checker: Checker,
    next_process: ProcessId,
    /// Undo actions of faults that last: (when, what).
    undo: Vec<(Duration, Undo)>,
    faults_done: u32,
    takeover_at_epoch: Option<u64>,
    /// Faults that a fault set off for later (a crash after a takeover).
    later: Vec<Planned>,
}

#[derive(Debug, Clone, Copy)]
enum Undo {
    Heal,
    Unslow(u64),
    Room(u64),
    MetaCalm,
}

const CLIENT_HOST: [u8; 4] = [10, 0, 1, 1];
const CONSUMER_ID: u32 = 1;

fn client_ip(n: u8) -> IpAddr {
    let mut ip = CLIENT_HOST;
    ip[3] = n;
    IpAddr::from(ip)
}

impl Run {
    fn new(cfg: RunConfig) -> Run {
        let mut rng = Rng::new(cfg.seed);
        let sim = Sim::new(rng.fork());
        let net = Net::new(sim.handle().clone(), NetConfig::default(), rng.fork());
        let meta = SimMeta::new(sim.handle().clone(), MetaFaults::none(), rng.fork());
        let mut run = Run {
            cfg,
            sim,
            net,
            meta,
            rng,
            world: SharedWorld::default(),
            nodes: BTreeMap::new(),
            producers: BTreeMap::new(),
            checker: Checker::new(),
            next_process: 1,
            undo: Vec::new(),
            faults_done: 0,
            takeover_at_epoch: None,
            later: Vec::new(),
        };
        for id in 1..=cfg.nodes {
            let shards = 1 + u32::from(run.rng.chance(1, 3));
            let spec = NodeSpec {
                id,
                shards,
                data_dir: PathBuf::from(format!("/node{id}")),
            };
            run.nodes.insert(
                id,
                NodeSlot {
                    spec,
                    disk: SimDisk::new(),
                    process: None,
                    restart_at: None,
                },
            );
            run.start_node(id);
        }
        run
    }

    fn handle(&self) -> SimHandle {
        self.sim.handle().clone()
    }

    fn process(&mut self) -> ProcessId {
        let p = self.next_process;
        self.next_process += 1;
        p
    }

    fn note(&self, line: String) {
        actors::note(&self.world, self.sim.handle(), line);
    }

    fn start_node(&mut self, id: u64) {
        let process = self.process();
        let Some(slot) = self.nodes.get_mut(&id) else {
            return;
        };
        slot.process = Some(process);
        slot.restart_at = None;
        let meta: Arc<dyn MetaStore> = Arc::new(self.meta.clone());
        start_node(
            self.sim.handle(),
            &self.net,
            meta,
            slot.disk.clone(),
            slot.spec.clone(),
            process,
        );
        self.note(format!("node {id} starts (process {process})"));
    }

    fn pool(&mut self, process: ProcessId, host: IpAddr) -> ConnPool {
        let rt = SimClientRuntime::new(
            self.handle(),
            self.net.clone(),
            process,
            host,
            self.rng.fork(),
        );
        let meta: Arc<dyn MetaStore> = Arc::new(self.meta.clone());
        ConnPool::with_runtime(meta, rt)
    }

    fn start_producer(&mut self, takeover: bool) {
        let id = self.producers.len() as u32 + 1;
        let process = self.process();
        let pool = self.pool(process, client_ip(10 + id as u8));
        let plan = ProducerPlan {
            id,
            takeover,
            entries: self.cfg.entries,
            close: self.rng.chance(1, 2),
            seed: self.rng.next_u64(),
            pause_max: self.cfg.window * 3 / self.cfg.entries.max(1),
        };
        let pace = self.rng.fork();
        let h = self.handle();
        self.sim.handle().spawn_in(
            process,
            actors::producer(pool, h, self.world.clone(), plan, pace),
        );
        self.producers.insert(
            id,
            ProducerSlot {
                process,
                plan,
                killed: false,
                epoch: None,
                submitted: 0,
                resolved: 0,
                done: false,
                stopped: None,
                closed: None,
            },
        );
        self.note(format!("producer {id} starts (takeover: {takeover})"));
    }

    fn start_consumer(&mut self) {
        let process = self.process();
        let pool = self.pool(process, client_ip(200));
        let h = self.handle();
        self.sim.handle().spawn_in(
            process,
            actors::consumer(pool, h, self.world.clone(), CONSUMER_ID),
        );
    }

    fn node_disks(&self) -> BTreeMap<u64, NodeDisk> {
        self.nodes
            .iter()
            .map(|(id, n)| {
                (
                    *id,
                    NodeDisk {
                        disk: n.disk.clone(),
                        data_dir: n.spec.data_dir.clone(),
                        shards: n.spec.shards,
                    },
                )
            })
            .collect()
    }

    fn kill_process(&mut self, process: ProcessId) {
        self.sim.kill(process);
        self.net.kill_process(process);
    }
}

/// Runs one seed; see the module doc.
pub fn run(cfg: RunConfig) -> Outcome {
    let mut run = Run::new(cfg);
    let schedule = faults::plan(
        &mut run.rng,
        &FaultBounds {
            nodes: cfg.nodes,
            faults_max: cfg.faults_max,
            window: cfg.window,
            takeovers_max: 2,
        },
    );
    crate::logs::begin(run.handle());
    run.start_producer(false);
    run.start_consumer();
    // An assertion of the shipped code that fails is a failure of the seed
    // like any other invariant, with its trace.
    let driven =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&mut run, schedule)));
    let failure = match driven {
        Ok(result) => result.err(),
        Err(payload) => Some(Violation {
            property: "Assertion",
            detail: panic_message(payload.as_ref()),
        }),
    };
    let read = run.checker.next_read(CONSUMER_ID).unwrap_or(0);
    let logged = crate::logs::end();
    let world = run.world.borrow();
    let mut trace = world.trace.clone();
    if !logged.is_empty() {
        trace.extend(logged);
        // Both are stamped "<ms> ms": by time, the harness's first.
        trace.sort_by(|a, b| stamp(a).total_cmp(&stamp(b)));
    }
    Outcome {
        seed: cfg.seed,
        steps: run.sim.steps(),
        faults: run.faults_done,
        acked: run.checker.committed().len(),
        read,
        virtual_time: run.sim.now(),
        failure,
        trace,
    }
}

fn stamp(line: &str) -> f64 {
    line.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

/// The message of a panic, as `panic!` or `assert!` wrote it.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

fn drive(run: &mut Run, schedule: Vec<Planned>) -> Result<(), Violation> {
    let mut pending = schedule.into_iter().peekable();
    let healed_at = run.cfg.window + Duration::from_millis(500);
    let mut healed = false;
    loop {
        let now = run.sim.now();
        while let Some(p) = pending.next_if(|p| p.at <= now) {
            inject(run, p.fault);
        }
        let (due, later): (Vec<_>, Vec<_>) = run.later.drain(..).partition(|p| p.at <= now);
        run.later = later;
        for p in due {
            inject(run, p.fault);
        }
        undo_due(run, now);
        restart_due(run, now);
        if !healed && now >= healed_at {
            heal_all(run);
            healed = true;
        }
        if run.sim.step() == Step::Idle && !healed {
            // Nothing runs before the next fault: move on to it.
            heal_all(run);
            healed = true;
        }
        absorb_events(run)?;
        let (version, record) = run.meta.record(LOG_ID);
        run.checker
            .check_durable(version, record.as_ref(), &run.node_disks())?;
        if run.sim.steps() > run.cfg.steps_max {
            return Err(Violation {
                property: "Progress",
                detail: format!(
                    "{} steps without settling, at {:?} virtual",
                    run.cfg.steps_max,
                    run.sim.now()
                ),
            });
        }
        if healed {
            if settled(run) {
                return Ok(());
            }
            if run.sim.now() > healed_at + run.cfg.settle {
                return Err(stuck(run));
            }
        }
    }
}

fn inject(run: &mut Run, fault: Fault) {
    run.faults_done += 1;
    let now = run.sim.now();
    run.note(format!("fault: {fault:?}"));
    match fault {
        Fault::ResetConnection => {
            let pipes = run.net.pipes();
            if !pipes.is_empty() {
                let pipe = pipes[run.rng.index(pipes.len())];
                run.net.reset_pipe(pipe);
            }
        }
        Fault::Partition { node, lasting } => {
            let ip = node_ip(node);
            for other in run.nodes.keys().copied().filter(|n| *n != node) {
                run.net.cut(ip, node_ip(other));
            }
            for c in [200u8].into_iter().chain(11..20) {
                run.net.cut(ip, client_ip(c));
            }
            run.undo.push((now + lasting, Undo::Heal));
        }
        Fault::CrashNode { node, down } => crash_node(run, node, down),
        Fault::SlowNode {
            node,
            extra,
            lasting,
        } => {
            run.net.set_slow(node_ip(node), extra);
            run.undo.push((now + lasting, Undo::Unslow(node)));
        }
        Fault::FullDisk { node, lasting } => {
            if let Some(slot) = run.nodes.get(&node) {
                slot.disk.set_capacity(Some(slot.disk.used_bytes()));
                run.undo.push((now + lasting, Undo::Room(node)));
            }
        }
        Fault::MetaLossy { lasting } => {
            run.meta.set_faults(MetaFaults {
                lost_before_per_mille: 150,
                lost_after_per_mille: 150,
                ..MetaFaults::none()
            });
            run.undo.push((now + lasting, Undo::MetaCalm));
        }
        Fault::MetaDown { lasting } => run.meta.go_down(lasting),
        Fault::KillProducerAndTakeOver => {
            kill_newest_producer(run);
            run.start_producer(true);
        }
        Fault::RacingTakeover => run.start_producer(true),
        Fault::CutLink { node, lasting } => {
            let newest = run.producers.len() as u8;
            run.net.cut(node_ip(node), client_ip(10 + newest.max(1)));
            run.undo.push((now + lasting, Undo::Heal));
        }
        Fault::IsolatedTakeover {
            lasting,
            crash_after,
            down,
        } => isolated_takeover(run, lasting, crash_after, down),
        Fault::RogueSeal { node } => rogue_seal(run, node),
    }
}

/// See [`Fault::RogueSeal`]: one segment of the record that `node` holds a
/// replica of, picked by the run's rng; nothing if it holds none.
fn rogue_seal(run: &mut Run, node: u64) {
    let (_, record) = run.meta.record(LOG_ID);
    let held: Vec<u64> = record
        .map(|r| {
            r.segments
                .iter()
                .filter(|s| s.replicas.contains(&node))
                .map(|s| s.id)
                .collect()
        })
        .unwrap_or_default();
    if held.is_empty() {
        return;
    }
    let segment = held[run.rng.index(held.len())];
    let process = run.process();
    let pool = run.pool(process, client_ip(199));
    let h = run.handle();
    run.sim.handle().spawn_in(
        process,
        crate::rogue::rogue_seal(pool, h, run.world.clone(), node, segment),
    );
}

/// Kills node `node` (its disk crashes) and schedules its restart after
/// `down`.
fn crash_node(run: &mut Run, node: u64, down: Duration) {
    let now = run.sim.now();
    let Some(process) = run.nodes.get_mut(&node).and_then(|n| n.process.take()) else {
        return;
    };
    run.kill_process(process);
    let mut rng = run.rng.fork();
    let Some(slot) = run.nodes.get_mut(&node) else {
        return;
    };
    // Half the time a bit of a write in flight went bad on its way to the
    // medium: recovery must see its crc fail.
    if rng.chance(1, 2) && slot.disk.garble_unsynced(&mut rng) {
        run.world.borrow_mut().trace.push(format!(
            "{:>10.3} ms  node {node}: a bit flipped in an unsynced write",
            now.as_secs_f64() * 1e3
        ));
    }
    let report = slot.disk.crash(&mut rng);
    slot.restart_at = Some(now + down);
    run.note(format!("node {node} crashed: {report:?}"));
}

/// Kills the newest producer still running (its process dies).
fn kill_newest_producer(run: &mut Run) {
    let newest = run.producers.values_mut().rev().find(|p| !p.killed);
    if let Some(p) = newest {
        p.killed = true;
        let process = p.process;
        run.kill_process(process);
    }
}

/// See [`Fault::IsolatedTakeover`].
fn isolated_takeover(run: &mut Run, lasting: Duration, crash_after: Duration, down: Duration) {
    let now = run.sim.now();
    let (_, record) = run.meta.record(LOG_ID);
    let open = record
        .and_then(|r| r.segments.last().cloned())
        .filter(|s| s.sealed_len.is_none());
    let Some(open) = open else {
        run.start_producer(true);
        return;
    };
    let reached = open.replicas[run.rng.index(open.replicas.len())];
    let host = client_ip(10 + run.producers.len() as u8 + 1);
    for node in open.replicas.iter().filter(|n| **n != reached) {
        run.net.cut(node_ip(*node), host);
    }
    run.undo.push((now + lasting, Undo::Heal));
    run.start_producer(true);
    run.later.push(Planned {
        at: now + crash_after,
        fault: Fault::CrashNode {
            node: reached,
            down,
        },
    });
}

fn undo_due(run: &mut Run, now: Duration) {
    let (due, later): (Vec<_>, Vec<_>) = run.undo.drain(..).partition(|(at, _)| *at <= now);
    run.undo = later;
    for (_, u) in due {
        run.note(format!("undo: {u:?}"));
        match u {
            Undo::Heal => run.net.heal(),
            Undo::Unslow(node) => run.net.set_slow(node_ip(node), Duration::ZERO),
            Undo::Room(node) => {
                if let Some(slot) = run.nodes.get(&node) {
                    slot.disk.set_capacity(None);
                }
            }
            Undo::MetaCalm => run.meta.set_faults(MetaFaults::none()),
        }
    }
}

fn restart_due(run: &mut Run, now: Duration) {
    let due: Vec<u64> = run
        .nodes
        .iter()
        .filter(|(_, n)| n.restart_at.is_some_and(|at| at <= now))
        .map(|(id, _)| *id)
        .collect();
    for id in due {
        run.start_node(id);
    }
}

/// The end of the faults: everything heals, dead nodes come back.
fn heal_all(run: &mut Run) {
    run.note("heal: every fault ends".into());
    let undo: Vec<_> = run.undo.drain(..).collect();
    for (_, u) in undo {
        match u {
            Undo::Heal => run.net.heal(),
            Undo::Unslow(node) => run.net.set_slow(node_ip(node), Duration::ZERO),
            Undo::Room(node) => {
                if let Some(slot) = run.nodes.get(&node) {
                    slot.disk.set_capacity(None);
                }
            }
            Undo::MetaCalm => run.meta.set_faults(MetaFaults::none()),
        }
    }
    run.net.heal();
    run.meta.set_faults(MetaFaults::none());
    let dead: Vec<u64> = run
        .nodes
        .iter()
        .filter(|(_, n)| n.process.is_none())
        .map(|(id, _)| *id)
        .collect();
    for id in dead {
        run.start_node(id);
    }
}

fn absorb_events(run: &mut Run) -> Result<(), Violation> {
    let events: Vec<Event> = std::mem::take(&mut run.world.borrow_mut().events);
    for e in events {
        absorb(run, e)?;
    }
    Ok(())
}

fn absorb(run: &mut Run, e: Event) -> Result<(), Violation> {
    match e {
        Event::Ready { p, epoch } => {
            if let Some(slot) = run.producers.get_mut(&p) {
                slot.epoch = Some(epoch);
                if slot.plan.takeover {
                    run.takeover_at_epoch = Some(run.takeover_at_epoch.unwrap_or(0).max(epoch));
                }
            }
        }
        Event::Submitted { p, count } => {
            if let Some(slot) = run.producers.get_mut(&p) {
                slot.submitted = count;
            }
        }
        Event::Acked { p, seq, payload } => {
            if let Some(slot) = run.producers.get_mut(&p) {
                slot.resolved += 1;
            }
            run.checker
                .on_committed(&format!("producer {p}"), seq, &payload)?;
        }
        Event::Failed { p, error } => {
            if let Some(slot) = run.producers.get_mut(&p) {
                slot.resolved += 1;
            }
            run.note(format!("producer {p}: append failed: {error}"));
        }
        Event::Stopped { p, reason } => stopped(run, p, reason)?,
        Event::Done { p } => {
            if let Some(slot) = run.producers.get_mut(&p) {
                slot.done = true;
            }
        }
        Event::Closed { p, ok, why } => {
            if let Some(slot) = run.producers.get_mut(&p) {
                slot.closed = Some(ok);
            }
            if !ok && !superseded(run, p) {
                return Err(Violation {
                    property: "Progress",
                    detail: format!("producer {p}, the log's owner, failed to close: {why}"),
                });
            }
        }
        Event::Read {
            c,
            start,
            seq,
            payload,
        } => {
            let (_, record) = run.meta.record(LOG_ID);
            let disks = run.node_disks();
            run.checker
                .on_read(c, start, seq, &payload, record.as_ref(), &disks)?;
        }
    }
    Ok(())
}

/// Whether a newer epoch owns the log than producer `p`'s (a takeover
/// done or under way).
fn superseded(run: &Run, p: u32) -> bool {
    let epoch = run.producers.get(&p).and_then(|s| s.epoch).unwrap_or(0);
    let (_, record) = run.meta.record(LOG_ID);
    record.is_some_and(|r| r.epoch > epoch)
}

/// RealFence, and no stop without a reason it may have.
fn stopped(run: &mut Run, p: u32, reason: Option<StopReason>) -> Result<(), Violation> {
    let Some(slot) = run.producers.get_mut(&p) else {
        return Ok(());
    };
    if slot.stopped.is_some() {
        return Ok(());
    }
    slot.stopped = Some(reason);
    let epoch = slot.epoch.unwrap_or(0);
    let (_, record) = run.meta.record(LOG_ID);
    let record_epoch = record.as_ref().map_or(0, |r| r.epoch);
    run.note(format!("producer {p} stopped: {reason:?}"));
    match reason {
        Some(StopReason::Fenced { by_epoch }) if by_epoch > epoch && record_epoch >= by_epoch => {
            Ok(())
        }
        Some(StopReason::Fenced { by_epoch }) => Err(Violation {
            property: "RealFence",
            detail: format!(
                "producer {p} at epoch {epoch} stopped as fenced by epoch {by_epoch}; the record is at epoch {record_epoch}"
            ),
        }),
        Some(StopReason::SealedElsewhere { .. }) if record_epoch > epoch => Ok(()),
        Some(StopReason::Closed) => Ok(()),
        other => Err(Violation {
            property: "Progress",
            detail: format!(
                "producer {p} at epoch {epoch}, the log's owner (record at epoch {record_epoch}), stopped: {other:?}"
            ),
        }),
    }
}

/// Every live producer saw every outcome (and closed, if it meant to), and
/// the consumer read every committed entry.
fn settled(run: &Run) -> bool {
    let producers_done = run.producers.values().all(|p| {
        p.killed || p.stopped.is_some() || (p.done && (!p.plan.close || p.closed.is_some()))
    });
    if !producers_done {
        return false;
    }
    let last = run.checker.committed().keys().next_back().copied();
    match last {
        None => true,
        Some(last) => run.checker.next_read(CONSUMER_ID).is_some_and(|n| n > last),
    }
}

fn stuck(run: &Run) -> Violation {
    let waiting: Vec<String> = run
        .producers
        .iter()
        .filter(|(_, p)| !(p.killed || p.stopped.is_some() || p.done))
        .map(|(id, p)| {
            format!(
                "producer {id} took {} of {} entries, {} resolved",
                p.submitted, p.plan.entries, p.resolved
            )
        })
        .collect();
    Violation {
        property: "Progress",
        detail: format!(
            "not settled {:?} after the heal: {waiting:?}; consumer at {:?}, last committed {:?}",
            run.cfg.settle,
            run.checker.next_read(CONSUMER_ID),
            run.checker.committed().keys().next_back()
        ),
    }
}

/// `World` is the actors' shared state; re-exported for the binary's use.
pub type Shared = World;
