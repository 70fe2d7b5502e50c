//! Repair: bringing a sealed segment back to its full set of replicas after
//! one of them is lost, without an operator.
//!
//! **Who repairs.** The node that placement picks as the new replica pulls
//! the copy itself ([`plan`]): every node scans the records now and then,
//! and for each sealed segment with a lost replica computes, with the same
//! deterministic choice as every other node ([`repair_target`]), which
//! healthy node should hold the new copy; if that is itself, it copies.
//! There is no repair leader and no lease to hold:
//! - the work spreads over the nodes the way placement spreads segments,
//!   and a repair never waits for a coordinator's election;
//! - the one step that changes what others see, publishing the new replica
//!   set, is a CAS on the log's record ([`RepairJob::publish`]), so two
//!   nodes that disagree about who should repair (their views of the
//!   registrations differ for a moment) cost a duplicate copy at worst:
//!   one CAS wins, the other finds the segment repaired and stops;
//! - the copier is the node that must end up holding the data durably, so
//!   "durable and complete" is something it observes of itself (the seal
//!   of its copy is answered only once every entry under it is durable),
//!   not something a third party must be told.
//!
//! **Lost.** A replica is lost when its node has not been alive (no live
//! registration) for [`REPAIR_GRACE_MS_DEFAULT`] as this node observed it
//! ([`LostNodes`]): a restart or a short partition must not cost a full
//! copy. Time is the observer's own clock, never compared across nodes.
//!
//! **Leaving.** A node an operator decommissions (`NodeMode::Leaving`) is
//! lost at once, with no grace period, but stays a source while it lives:
//! its copies are moved, not rebuilt from the others. Its coming back
//! alive cancels nothing ([`lost_node_back`]): only an active node's
//! return makes a repair pointless.
//!
//! **A job** ([`RepairJob`]) copies from a surviving replica into a new
//! replica of the segment on this node: it asks what the copy holds
//! already (a copy is resumable: it survives a restart of either side and
//! goes on from its durable length), appends the rest in chunks at the
//! segment's epoch (every entry crc-checked on the way out of the source
//! and into the copy), seals the copy at the sealed length, and publishes
//! only once that seal is answered: the seal is persisted only after every
//! entry below it is durable, so the answer proves a complete, durable
//! copy. Publishing replaces the lost node by this one in the segment's
//! replica list by CAS, and only if the record still seals the segment at
//! the same length and still lists the lost node. A job whose lost node
//! comes back before it publishes is cancelled: the segment has its three
//! replicas again.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{LogMeta, NodeMode, NodeStatus, SegmentMeta};
use crate::mutant::{self, Mutant};
use crate::placement::{shuffle, Candidate};
use crate::NodeId;

/// How long a node must have been dead before its replicas are copied.
pub const REPAIR_GRACE_MS_DEFAULT: u64 = 60_000;
/// How often a node looks at the registrations, and scans the records
/// while repairs are due or running.
pub const REPAIR_SCAN_INTERVAL_MS: u64 = 5_000;
/// How often a node scans every record when no node is lost: a scan reads
/// every log's record, so with thousands of logs it must not run every
/// few seconds on every node for nothing.
pub const REPAIR_FULL_SCAN_INTERVAL_MS: u64 = 60_000;
/// The rate a node copies at by default, in bytes per second of entries.
pub const REPAIR_BYTES_PER_SEC_DEFAULT: u64 = 64 * 1024 * 1024;
/// How often a running job asks whether its lost node came back (and
/// always right before it publishes).
pub const REPAIR_LOST_NODE_CHECK_MS: u64 = 1_000;
/// Reads per second at the configured rate: chunks small enough that the
/// pacer's sleeps stay short and a returning node is noticed between two.
pub const REPAIR_CHUNKS_PER_SEC: u64 = 8;
/// The smallest read a job makes (a record larger comes alone anyway).
pub const REPAIR_CHUNK_BYTES_MIN: u32 = 64 * 1024;
/// CAS conflicts a publish retries before leaving the job to a later scan.
pub const REPAIR_PUBLISH_ATTEMPTS_MAX: u32 = 5;
/// How often a shard drops the damage of its sealed replicas and reports
/// the ones to heal; the repair thread heals them at its next pass (every
/// [`REPAIR_SCAN_INTERVAL_MS`]).
pub const HEAL_CHECK_MS: u64 = 1_000;
const _: () = assert!(REPAIR_CHUNK_BYTES_MIN <= trilog_wire::limits::READ_BYTES_MAX);

/// How many bytes one read of a job asks for at `bytes_per_sec`.
pub fn repair_chunk_bytes(bytes_per_sec: u64) -> u32 {
    let per_chunk = bytes_per_sec / REPAIR_CHUNKS_PER_SEC;
    let max = u64::from(trilog_wire::limits::READ_BYTES_MAX);
    per_chunk.clamp(u64::from(REPAIR_CHUNK_BYTES_MIN), max) as u32
}

/// A registration as repair sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    pub zone: String,
    pub alive: bool,
    /// Alive and taking new data (not full, not leaving).
    pub writable: bool,
    /// Active, or being decommissioned (every copy it holds is to move),
    /// or removed.
    pub mode: NodeMode,
}

impl NodeView {
    /// A registration as repair sees it.
    pub fn of(n: &NodeStatus) -> NodeView {
        NodeView {
            id: n.info.node_id,
            zone: n.info.zone.clone(),
            alive: n.alive,
            // A full node turns read-only and says so: no copy goes there;
            // nor to a leaving one.
            writable: n.alive && !n.info.full && n.mode == NodeMode::Active,
            mode: n.mode,
        }
    }
}

/// Whether a repair in place of `lost` is pointless now: the node is
/// alive again and active. A leaving node alive is still to be replaced.
pub fn lost_node_back(nodes: &[NodeView], lost: NodeId) -> bool {
    nodes
        .iter()
        .any(|n| n.id == lost && n.alive && n.mode == NodeMode::Active)
}

/// Which nodes are lost, as this node observed the registrations.
#[derive(Debug, Clone)]
pub struct LostNodes {
    grace_ms: u64,
    /// When each node not alive was first seen so (or first asked about).
    dead_since: BTreeMap<NodeId, u64>,
    alive: BTreeSet<NodeId>,
    /// Nodes being decommissioned or removed: lost at once, alive or not.
    modes: BTreeMap<NodeId, NodeMode>,
    candidates: Vec<Candidate>,
    zones: BTreeMap<NodeId, String>,
}

impl LostNodes {
    pub fn new(grace_ms: u64) -> LostNodes {
        LostNodes {
            grace_ms,
            dead_since: BTreeMap::new(),
            alive: BTreeSet::new(),
            modes: BTreeMap::new(),
            candidates: Vec::new(),
            zones: BTreeMap::new(),
        }
    }

    /// The registrations as listed at `now_ms` (dead ones too where the
    /// store keeps them; a node missing from the list is dead).
    pub fn observe(&mut self, now_ms: u64, nodes: &[NodeView]) {
        self.alive = nodes.iter().filter(|n| n.alive).map(|n| n.id).collect();
        self.modes = nodes
            .iter()
            .filter(|n| n.mode != NodeMode::Active)
            .map(|n| (n.id, n.mode))
            .collect();
        self.dead_since.retain(|id, _| !self.alive.contains(id));
        for n in nodes.iter().filter(|n| !n.alive) {
            self.dead_since.entry(n.id).or_insert(now_ms);
        }
        // A store may drop a dead node's registration (etcd deletes it
        // with its lease): a node listed before and missing now is dead.
        for id in &self.zones.keys().copied().collect::<Vec<_>>() {
            if !nodes.iter().any(|n| n.id == *id) {
                self.dead_since.entry(*id).or_insert(now_ms);
            }
        }
        // Zones are kept for nodes no longer listed (a survivor's zone
        // still counts when a dead one is replaced).
        for n in nodes {
            self.zones.insert(n.id, n.zone.clone());
        }
        self.candidates = nodes
            .iter()
            .filter(|n| n.alive && n.writable)
            .map(|n| Candidate {
                id: n.id,
                zone: n.zone.clone(),
            })
            .collect();
    }

    pub fn is_alive(&self, id: NodeId) -> bool {
        self.alive.contains(&id)
    }

    /// Whether some node seen dead crossed the grace period in
    /// `(after_ms, now_ms]`, or some node is leaving and the last scan is
    /// [`REPAIR_SCAN_INTERVAL_MS`] old: a scan is due (a decommission is
    /// waited for by an operator, and ends once the node is removed).
    pub fn newly_lost(&self, after_ms: u64, now_ms: u64) -> bool {
        let leaving = self.modes.values().any(|m| *m == NodeMode::Leaving);
        leaving && now_ms.saturating_sub(after_ms) >= REPAIR_SCAN_INTERVAL_MS
            || self.newly_dead_past_grace(after_ms, now_ms)
    }

    fn newly_dead_past_grace(&self, after_ms: u64, now_ms: u64) -> bool {
        self.dead_since.values().any(|since| {
            let lost_at = since.saturating_add(self.grace_ms);
            lost_at > after_ms && lost_at <= now_ms
        })
    }

    /// Whether `id` is leaving, or has been dead for the grace period by
    /// `now_ms`. A node never listed counts as dead from the first time it
    /// is asked about.
    pub fn is_lost(&mut self, id: NodeId, now_ms: u64) -> bool {
        if self.modes.contains_key(&id) {
            return true;
        }
        if self.alive.contains(&id) {
            return false;
        }
        let since = *self.dead_since.entry(id).or_insert(now_ms);
        now_ms.saturating_sub(since) >= self.grace_ms
    }

    fn zone(&self, id: NodeId) -> Option<&str> {
        self.zones.get(&id).map(String::as_str)
    }
}

/// When a node scans the records: at once when a node crosses the grace
/// period, every [`REPAIR_SCAN_INTERVAL_MS`] while the last scan found
/// repairs to run (a failed copy is retried), and every
/// [`REPAIR_FULL_SCAN_INTERVAL_MS`] otherwise (a node never seen alive by
/// this one, or a record that names a node no store lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSchedule {
    last_ms: Option<u64>,
    found_work: bool,
}

impl ScanSchedule {
    pub fn new() -> ScanSchedule {
        ScanSchedule {
            last_ms: None,
            found_work: false,
        }
    }

    /// Whether a scan is due at `now_ms`, given the registrations seen.
    pub fn due(&self, now_ms: u64, nodes: &LostNodes) -> bool {
        let Some(last) = self.last_ms else {
            return true;
        };
        let since = now_ms.saturating_sub(last);
        nodes.newly_lost(last, now_ms)
            || (self.found_work && since >= REPAIR_SCAN_INTERVAL_MS)
            || since >= REPAIR_FULL_SCAN_INTERVAL_MS
    }

    /// A scan ended at `now_ms`; it planned `tasks` repairs (or could not
    /// finish, which counts as work left).
    pub fn scanned(&mut self, now_ms: u64, tasks: usize) {
        self.last_ms = Some(now_ms);
        self.found_work = tasks > 0;
    }
}

impl Default for ScanSchedule {
    fn default() -> ScanSchedule {
        ScanSchedule::new()
    }
}

/// One repair to run: a new copy of `segment` in place of `lost`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepairTask {
    pub log_id: u64,
    pub segment: SegmentMeta,
    pub sealed_len: u64,
    pub lost: NodeId,
    /// The replicas alive now, to copy from, in the order to try them.
    pub sources: Vec<NodeId>,
}

/// Where a new copy of `segment` goes in place of `lost`: a writable
/// node that is not a replica already, in a zone none of the surviving
/// replicas is in when there is one (so a repair keeps the three replicas
/// in three zones), picked by a seed every node computes the same way.
pub fn repair_target(
    log_id: u64,
    segment: &SegmentMeta,
    lost: NodeId,
    nodes: &LostNodes,
) -> Option<NodeId> {
    let survivors: Vec<NodeId> = segment
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != lost)
        .collect();
    let used_zones: BTreeSet<&str> = survivors.iter().filter_map(|r| nodes.zone(*r)).collect();
    let mut pool: Vec<&Candidate> = nodes
        .candidates
        .iter()
        .filter(|c| !segment.replicas.contains(&c.id))
        .collect();
    pool.sort_unstable_by_key(|c| c.id);
    pool.dedup_by_key(|c| c.id);
    shuffle(&mut pool, repair_seed(log_id, segment.id, lost));
    let fresh_zone = pool.iter().find(|c| !used_zones.contains(c.zone.as_str()));
    fresh_zone.or(pool.first()).map(|c| c.id)
}

fn repair_seed(log_id: u64, segment: u64, lost: NodeId) -> u64 {
    log_id
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(segment.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(lost)
}

/// What a sealed segment of a record lacks, as `nodes` sees it: its lost
/// replicas, and whether any replica is alive to copy from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub segment: u64,
    pub lost: Vec<NodeId>,
    pub alive: Vec<NodeId>,
}

/// The sealed segments of `record` with at least one replica lost at
/// `now_ms` (trimmed and deleting segments are not repaired; open ones are
/// the producer's to switch away from).
pub fn shortfalls(record: &LogMeta, nodes: &mut LostNodes, now_ms: u64) -> Vec<Shortfall> {
    let mut out = Vec::new();
    for seg in record.segments.iter().filter(|s| s.sealed_len.is_some()) {
        let lost: Vec<NodeId> = seg
            .replicas
            .iter()
            .copied()
            .filter(|r| nodes.is_lost(*r, now_ms))
            .collect();
        if lost.is_empty() {
            continue;
        }
        let alive = seg
            .replicas
            .iter()
            .copied()
            .filter(|r| nodes.is_alive(*r))
            .collect();
        out.push(Shortfall {
            segment: seg.id,
            lost,
            alive,
        });
    }
    out
}

/// The repairs of `record` that `me` should run now: for each sealed
/// segment with a lost replica and a live one to copy from, the first lost
/// replica, when [`repair_target`] picks `me` for it.
pub fn plan(record: &LogMeta, me: NodeId, nodes: &mut LostNodes, now_ms: u64) -> Vec<RepairTask> {
    let mut tasks = Vec::new();
    for short in shortfalls(record, nodes, now_ms) {
        let (Some(&lost), false) = (short.lost.first(), short.alive.is_empty()) else {
            continue;
        };
        let Some(seg) = record.segments.iter().find(|s| s.id == short.segment) else {
            unreachable!("a shortfall of a segment the record has");
        };
        let Some(sealed_len) = seg.sealed_len else {
            unreachable!("only sealed segments fall short");
        };
        if repair_target(record.log_id, seg, lost, nodes) != Some(me) {
            continue;
        }
        tasks.push(RepairTask {
            log_id: record.log_id,
            segment: seg.clone(),
            sealed_len,
            lost,
            sources: short.alive,
        });
    }
    tasks
}

/// The refills of `record` for `me`: every sealed segment it lists `me`
/// for, with its other live replicas as sources (see
/// [`RepairJob::refill`]; each job's probe finds whether the copy is
/// there already).
pub fn refills(record: &LogMeta, me: NodeId, nodes: &LostNodes) -> Vec<RepairTask> {
    record
        .segments
        .iter()
        .filter_map(|s| refill_of(record.log_id, s, me, nodes))
        .collect()
}

/// The heal of `me`'s copy of `segment`, which misses entries below its
/// seal (damage dropped, a file cut short): a refill of that one segment
/// ([`RepairJob::refill`]; the probe finds where the copy stops). `None`
/// when the record no longer lists `me` for a sealed `segment` (repaired
/// away, trimmed: nothing to heal) or no other replica is alive to copy
/// from (asked again later).
pub fn heal_task(
    record: &LogMeta,
    me: NodeId,
    segment: u64,
    nodes: &LostNodes,
) -> Option<RepairTask> {
    let seg = record.segments.iter().find(|s| s.id == segment)?;
    refill_of(record.log_id, seg, me, nodes)
}

fn refill_of(log_id: u64, seg: &SegmentMeta, me: NodeId, nodes: &LostNodes) -> Option<RepairTask> {
    if !seg.replicas.contains(&me) {
        return None;
    }
    let sealed_len = seg.sealed_len?;
    let sources: Vec<NodeId> = seg
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != me && nodes.is_alive(*r))
        .collect();
    (!sources.is_empty()).then(|| RepairTask {
        log_id,
        segment: seg.clone(),
        sealed_len,
        lost: me,
        sources,
    })
}

/// Where a repair job is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Asking the copy what it holds.
    Probing,
    /// Entries below `durable` are durable in the copy.
    Copying {
        durable: u64,
    },
    /// The seal of the copy was sent.
    Sealing,
    /// The copy is complete and durable: publish it.
    Publishing,
    Done,
    /// Given up: the record changed under it, or the lost node came back.
    Abandoned {
        why: String,
    },
}

/// What the driver does next for a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use]
pub enum JobAction {
    /// Read entries `[from, limit)` from a source and append them to the
    /// copy (at the segment's epoch, the commit field at `from`); report
    /// [`RepairJob::on_sent`], then [`RepairJob::on_durable`] with the ack.
    Copy { from: u64, limit: u64 },
    /// Seal the copy at `len`; report [`RepairJob::on_sealed`].
    Seal { len: u64 },
    /// Read the record, CAS in [`RepairJob::publish`]'s record, and
    /// report [`RepairJob::on_published`] (or call it again on a conflict).
    Publish,
    /// Nothing more: the job is done or abandoned.
    Stop,
}

/// Why a job's record change no longer applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error("segment {segment} is no longer in the chain (trimmed or deleted)")]
    Gone { segment: u64 },
    #[error("segment {segment} is sealed at {found:?} in the record, the copy at {copied}")]
    OtherSeal {
        segment: u64,
        found: Option<u64>,
        copied: u64,
    },
    #[error("segment {segment} no longer lists node {lost} (repaired by another node?)")]
    LostReplaced { segment: u64, lost: NodeId },
    #[error("segment {segment} already lists node {me}")]
    AlreadyReplica { segment: u64, me: NodeId },
}

/// One repair, as a pure state machine (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepairJob {
    task: RepairTask,
    me: NodeId,
    state: JobState,
    /// Refilling this node's own listed copy ([`RepairJob::refill`]):
    /// nothing to publish.
    refill: bool,
}

impl RepairJob {
    /// A job for `task` on node `me`; the first action is to probe.
    pub fn new(task: RepairTask, me: NodeId) -> RepairJob {
        assert!(
            !task.segment.replicas.contains(&me),
            "node {me} repairs a segment it holds"
        );
        assert_eq!(task.segment.sealed_len, Some(task.sealed_len));
        RepairJob {
            task,
            me,
            state: JobState::Probing,
            refill: false,
        }
    }

    /// A job that refills `me`'s own copy of a segment the record already
    /// lists it for: a node that replaces a lost one (`--replace`, an empty
    /// data directory under the lost node's id) copies back every sealed
    /// segment the record names it for. The copy is complete once its seal
    /// is answered; the record does not change.
    pub fn refill(task: RepairTask, me: NodeId) -> RepairJob {
        assert!(
            task.segment.replicas.contains(&me) && task.lost == me,
            "node {me} refills a copy the record does not list it for"
        );
        assert_eq!(task.segment.sealed_len, Some(task.sealed_len));
        RepairJob {
            task,
            me,
            state: JobState::Probing,
            refill: true,
        }
    }

    /// The seal of a refilled copy was answered, or a refill found its
    /// copy complete: there is nothing to publish.
    fn refilled(&mut self) -> JobAction {
        assert!(self.refill, "only a refill ends without publishing");
        self.state = JobState::Done;
        JobAction::Stop
    }

    pub fn task(&self) -> &RepairTask {
        &self.task
    }

    pub fn state(&self) -> &JobState {
        &self.state
    }

    /// What the copy holds: nothing yet (`None`), or `durable_len`
    /// entries durably and perhaps a seal.
    pub fn on_probed(&mut self, held: Option<(u64, Option<u64>)>) -> JobAction {
        assert_eq!(self.state, JobState::Probing, "probed twice");
        let len = self.task.sealed_len;
        match held {
            None => self.copy_from(0),
            // A copy sealed here but short of the seal (damage dropped, a
            // file cut short) is healed from where it stops; it is whole
            // only once its seal is answered after the drain.
            // MUTANT HealTakesShortCopyAsWhole: the check is skipped.
            Some((durable, Some(sealed)))
                if sealed == len
                    && durable < len
                    && !mutant::active(Mutant::HealTakesShortCopyAsWhole) =>
            {
                self.copy_from(durable)
            }
            Some((_, Some(sealed))) if sealed == len && self.refill => self.refilled(),
            Some((_, Some(sealed))) if sealed == len => {
                self.state = JobState::Publishing;
                JobAction::Publish
            }
            Some((_, Some(sealed))) => self.abandon(format!(
                "the copy here is sealed at {sealed}, the segment at {len}"
            )),
            Some((durable, None)) if durable > len => self.abandon(format!(
                "the copy here holds {durable} entries, past the seal at {len}"
            )),
            Some((durable, None)) => self.copy_from(durable),
        }
    }

    fn copy_from(&mut self, durable: u64) -> JobAction {
        let len = self.task.sealed_len;
        if durable == len {
            self.state = JobState::Sealing;
            return JobAction::Seal { len };
        }
        assert!(durable < len, "copied past the seal");
        self.state = JobState::Copying { durable };
        JobAction::Copy {
            from: durable,
            limit: len,
        }
    }

    /// Appends up to `end` were sent to the copy (not yet durable).
    pub fn on_sent(&mut self, end: u64) -> Option<JobAction> {
        assert!(end <= self.task.sealed_len, "sent past the seal");
        if mutant::active(Mutant::RepairPublishedBeforeDurable)
            && !self.refill
            && end == self.task.sealed_len
        {
            self.state = JobState::Publishing;
            return Some(JobAction::Publish);
        }
        None
    }

    /// The copy acknowledged `durable_len` entries durable.
    pub fn on_durable(&mut self, durable_len: u64) -> JobAction {
        match self.state {
            JobState::Copying { durable } => {
                assert!(
                    durable_len >= durable,
                    "the copy's durable length went back"
                );
                self.copy_from(durable_len)
            }
            // The mutant published already; the ack changes nothing.
            JobState::Publishing | JobState::Done => JobAction::Stop,
            ref other => panic!("a durable report while {other:?}"),
        }
    }

    /// The copy's seal at the sealed length was answered: every entry
    /// under it is durable in the copy.
    pub fn on_sealed(&mut self, len: u64) -> JobAction {
        assert_eq!(self.state, JobState::Sealing, "a seal answer unasked for");
        assert_eq!(
            len, self.task.sealed_len,
            "the copy sealed at another length"
        );
        if self.refill {
            return self.refilled();
        }
        self.state = JobState::Publishing;
        JobAction::Publish
    }

    /// The record with this node in place of the lost one, from `current`
    /// (the record as read just before the CAS).
    pub fn publish(&self, current: &LogMeta) -> Result<LogMeta, Stale> {
        assert!(!self.refill, "a refill publishes nothing");
        assert_eq!(
            self.state,
            JobState::Publishing,
            "published before the copy sealed"
        );
        assert_eq!(
            current.log_id, self.task.log_id,
            "the record of another log"
        );
        let id = self.task.segment.id;
        let mut next = current.clone();
        let Some(seg) = next.segments.iter_mut().find(|s| s.id == id) else {
            return Err(Stale::Gone { segment: id });
        };
        if seg.sealed_len != Some(self.task.sealed_len) {
            return Err(Stale::OtherSeal {
                segment: id,
                found: seg.sealed_len,
                copied: self.task.sealed_len,
            });
        }
        if seg.replicas.contains(&self.me) {
            return Err(Stale::AlreadyReplica {
                segment: id,
                me: self.me,
            });
        }
        let Some(slot) = seg.replicas.iter_mut().find(|r| **r == self.task.lost) else {
            return Err(Stale::LostReplaced {
                segment: id,
                lost: self.task.lost,
            });
        };
        *slot = self.me;
        Ok(next)
    }

    /// The CAS applied: the copy is a replica now.
    pub fn on_published(&mut self) {
        assert_eq!(self.state, JobState::Publishing, "published twice");
        self.state = JobState::Done;
    }

    /// The record no longer wants this copy ([`Stale`]), or the lost node
    /// came back: stop. The partial copy stays on disk (a later job of the
    /// same segment resumes from it).
    pub fn abandon(&mut self, why: String) -> JobAction {
        assert_ne!(self.state, JobState::Done, "abandoned after publishing");
        self.state = JobState::Abandoned { why };
        JobAction::Stop
    }
}

#[cfg(test)]
mod tests;
