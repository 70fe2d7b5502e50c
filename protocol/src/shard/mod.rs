//! The shard machine: every decision one shard of a log node makes about
//! its segments, with no IO.
//!
//! A node runs one [`ShardMachine`] per shard. Its driver reads requests
//! off connections and hands them in (`handle_append`, `handle_read`,
//! `handle_fence`, `handle_seal`, `handle_watermark`), carries out the
//! [`Action`]s it gets back (answers, segment creation, group commits,
//! control writes, disk reads), and reports how they ended
//! (`handle_created`, `handle_durable`, `handle_flush_failed`,
//! `handle_control_durable`, `handle_control_failed`, `handle_read_failed`).
//! Time enters only as the `now` of a read (its long-poll deadline) and
//! through the one timer, quinn-proto style: the driver sleeps until
//! [`ShardMachine::poll_timeout`] and then calls
//! [`ShardMachine::handle_timeout`].
//!
//! What it decides, and why:
//!
//! - **Which shard.** A request for a segment of another shard is answered
//!   `WrongShard` with the owner (`trilog_wire::message::shard_of`).
//! - **Creation.** An append at offset 0 of an unknown segment creates it
//!   (the producer's first append); so does any fence (a fence of a
//!   segment this node never saw is still recorded, so an old producer's
//!   first append finds it) and a seal at length 0. An append past offset
//!   0 of an unknown segment is a `Gap` at 0; a seal at another length is
//!   `NotFound`. While a segment is being created, every append, fence and
//!   seal for it waits; once it exists its fences and seals are queued and
//!   its appends re-offered in their order ([`Action::Reoffer`]); if its
//!   creation failed they are all answered `Internal`.
//! - **Appends** are decided by [`Replica::on_append`]. The driver stages
//!   the accepted entries at once ([`Stage::Entries`]); the ack is owed
//!   until [`ShardMachine::handle_durable`] reports a durable length that
//!   covers the append's end, and never sent before (raft-rs keeps such
//!   messages apart the same way).
//! - **Fences and seals** run one at a time per segment (`control.rs`): a
//!   fence is answered after its control write and after every entry
//!   staged before it is durable ([`Replica::control_answerable`]); a seal
//!   waits for that drain, is decided, persisted, applied to storage
//!   ([`Action::ApplySeal`]) and answered.
//! - **Reads** are answered as soon as there is something to read
//!   ([`Replica::readable_end`]), or at once when they have "ended" (from
//!   at or past the reader's limit or the replica's seal); otherwise they
//!   wait (long poll) until their deadline, when they get an empty answer,
//!   or `NotFound` if the segment still does not exist here. After every
//!   call, no parked read could be answered: whatever changed a segment
//!   re-checks the reads waiting on it.
//! - **Damage.** A replica that does not hold entries it should (a bad
//!   record found by recovery or the scrub, [`ShardMachine::mark_damaged`];
//!   a sealed replica shorter than its seal) serves the entries before
//!   them and refuses a read at or past them with `Damaged { from }` at
//!   once, so the reader goes to another replica; a read below the
//!   reader's sealed limit that this replica still lacks at the end of its
//!   poll gets the same answer. A damaged replica refuses appends with it.
//! - **Failure.** A failed flush or control write fails the segment: its
//!   state in memory may no longer match the disk, so every ack owed and
//!   every control request is answered `Internal`, and so is everything
//!   after, until the node restarts and recovers it from disk. Reads are
//!   still served up to what was durable before the failure (a failed
//!   flush never moves the durable length, and the durable records' bytes
//!   are the same in every version of the tail block); a read past that is
//!   answered `Internal` at once.
//! - **Deletes** (a trim, a log's deletion: `delete.rs`) are checked
//!   against the log's record first, when the shard can look records up:
//!   only a copy the record does not list as a live replica on this node
//!   is removed (`crate::listing`); then they take the segment
//!   out at once, answer everything it owed and every later request for it
//!   `Deleted`, and are answered once the driver unlinked the files
//!   durably ([`Action::DeleteFiles`], `handle_deleted`); reports of its
//!   IO still running are ignored.
//! - **A full disk** ([`ShardMachine::set_read_only`], the mode of
//!   `crate::space`): a read-only shard creates no segment (an append at
//!   0, a fence or a seal of a segment it does not hold is answered
//!   `Full`) and takes no append to a segment it holds unsealed (`Full`
//!   too: a full disk would fail the group commit, and the producer is
//!   better off switching now than at the next extent). `Full` is not a
//!   refusal of the protocol: for the sender it is a failed replica, which
//!   every machine already handles. Reads, fences and seals of segments it
//!   holds (control writes overwrite the control file in place) and
//!   deletes go on.
//! - **A leaving node** ([`ShardMachine::set_leaving`]: an operator
//!   decommissions it) is read-only the same way, with its own message:
//!   producers switch their open segments away from it at their next
//!   append, and nothing new is created on it, while repair copies its
//!   sealed segments elsewhere, reading them from it.
//! - **Closed connections** are forgotten: their owed acks, parked reads
//!   and waiting appends go; their fences and seals still run, unanswered.
//!
//! Deterministic: ordered maps only, and ids in arrival order, so the same
//! calls give the same actions.

mod action;
mod control;
mod delete;
mod heal;
mod learn;
mod orphans;
mod reads;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use trilog_wire::message::{shard_of, Fence, Read, ReadResponse, Seal, Watermark};
use trilog_wire::Message;

pub use learn::{SEAL_LEARN_IDLE_MS, SEAL_LOOKUPS_IN_FLIGHT_MAX};

/// How many deletes of segments it never held a shard remembers (to
/// answer later requests for them `Deleted`). A segment it held is always
/// remembered: that set grows only with the data the node was given.
pub const DELETED_UNKNOWN_MAX: usize = 4096;
/// Deletes one shard holds while it checks them against their records;
/// more are answered `Internal` (asked again later). Any peer may send
/// deletes, so their number is bounded, like everything a peer can pile up.
pub const DELETES_CHECKING_MAX: usize = 1024;

pub use action::{
    bad_request, forbidden, Action, Actions, AppendRequest, AppendStep, ConnId, SegmentKey, Stage,
};

use crate::NodeId;
use action::{deleted, full, internal, not_found, refused, wrong_shard};
use control::{ControlOp, ControlRequest};
use learn::SealLearning;
use orphans::Orphans;
pub use orphans::{sweepable, ORPHAN_LOOKUPS_PER_SWEEP, ORPHAN_SWEEP_MS, UNCONFIRMED_SEGMENTS_MAX};
use reads::{ParkedRead, ParkedReads};
use segment::Segment;

use crate::metadata::LogMeta;
use crate::replica::{Refusal, Replica};

/// A request waiting for its segment to be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Append { conn: ConnId, request_id: u64 },
    Control(ControlRequest),
}

/// The decisions of one shard of a log node: see the module doc.
#[derive(Debug)]
pub struct ShardMachine {
    shard: u32,
    shard_count: u32,
    segments: BTreeMap<SegmentKey, Segment>,
    /// Segments being created, with the requests waiting for them in
    /// arrival order.
    creating: BTreeMap<SegmentKey, Vec<Waiting>>,
    reads: ParkedReads,
    /// Present once the driver said it can look records up.
    learning: Option<SealLearning>,
    /// Segments whose files are being unlinked, with the deletes to answer
    /// once they are gone (`delete.rs`).
    deleting: BTreeMap<SegmentKey, Vec<(ConnId, u64)>>,
    /// Segments deleted since the node started: every request for them is
    /// answered `Deleted`, so nothing creates them again.
    deleted: BTreeSet<SegmentKey>,
    /// Of `deleted`, the keys this node did not hold when asked, oldest
    /// first: any peer may send deletes of made-up keys, so at most
    /// [`DELETED_UNKNOWN_MAX`] are remembered (the oldest is forgotten).
    deleted_unknown: std::collections::VecDeque<SegmentKey>,
    /// Deletes running of keys this node did not hold.
    deleting_unknown: BTreeSet<SegmentKey>,
    /// Deletes waiting for their log's record, per log (`delete.rs`).
    deletes_checking: BTreeMap<u64, Vec<(ConnId, u64, SegmentKey)>>,
    /// Logs whose record the deletes or the orphan checks asked for (the
    /// seal learning asks for its own; one lookup per log at a time serves
    /// all).
    record_lookups: BTreeSet<u64>,
    /// Copies not yet listed in their record (`orphans.rs`).
    orphans: Orphans,
    /// The node's disk is full (`crate::space`): no new data.
    read_only: bool,
    /// The node is leaving the cluster (decommissioned): no new data.
    leaving: bool,
}

impl ShardMachine {
    /// The machine of shard `shard` of a node with `shard_count` shards.
    pub fn new(shard: u32, shard_count: u32) -> ShardMachine {
        assert!(
            shard < shard_count,
            "shard {shard} of a node with {shard_count}"
        );
        ShardMachine {
            shard,
            shard_count,
            segments: BTreeMap::new(),
            creating: BTreeMap::new(),
            reads: ParkedReads::default(),
            learning: None,
            deleting: BTreeMap::new(),
            deleted: BTreeSet::new(),
            deleted_unknown: std::collections::VecDeque::new(),
            deleting_unknown: BTreeSet::new(),
            deletes_checking: BTreeMap::new(),
            record_lookups: BTreeSet::new(),
            orphans: Orphans::default(),
            read_only: false,
            leaving: false,
        }
    }

    /// The node's disk turned read-only (full) or writable again; see the
    /// module doc for what read-only refuses. Segments being created keep
    /// going: their files are being made already.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Whether the shard takes no new data (a full disk, or leaving).
    pub fn is_read_only(&self) -> bool {
        self.read_only || self.leaving
    }

    /// The node was told it is leaving the cluster (or, `false`, that the
    /// decommission was called off): read-only like a full disk.
    pub fn set_leaving(&mut self, leaving: bool) {
        self.leaving = leaving;
    }

    /// The refusal of new data by a read-only shard.
    fn refuse_new_data(&self, key: SegmentKey) -> Message {
        debug_assert!(self.is_read_only());
        full(key, self.leaving)
    }

    /// The driver can ask the metadata store for records: from now on the
    /// shard learns the seals of its idle segments from them (`learn.rs`).
    /// Without this call it never asks.
    pub fn learn_seals_from_record(&mut self, now_ms: u64, me: NodeId) {
        assert!(self.learning.is_none(), "seal learning started twice");
        self.learning = Some(SealLearning::new(now_ms, me));
        // What recovery found is unconfirmed until a sweep asks.
        self.orphans.next_sweep_ms = now_ms.saturating_add(self.orphans.sweep_ms());
        let mut none = Actions::new();
        for key in self.segments.keys().copied().collect::<Vec<_>>() {
            self.unconfirmed(key, false, &mut none);
        }
        assert!(
            none.is_empty(),
            "recovered copies are asked about at a sweep"
        );
    }

    fn touch(&mut self, key: SegmentKey) {
        if let Some(l) = &mut self.learning {
            l.touch(key);
        }
    }

    /// The record of `log_id` the machine asked for ([`Action::LookupLog`]):
    /// `None` if the log has no record, `Err` if the lookup failed (asked
    /// again at a later sweep). Every segment of the log this shard holds
    /// unsealed and the record seals is sealed at the record's length,
    /// through its control queue.
    pub fn handle_log_record(
        &mut self,
        log_id: u64,
        record: Result<Option<&LogMeta>, String>,
    ) -> Actions {
        let mut out = Actions::new();
        let Some(learning) = &mut self.learning else {
            panic!("a record for log {log_id} without seal learning");
        };
        let by_learning = learning.answered(log_id);
        let by_deletes = self.record_lookups.remove(&log_id);
        assert!(by_learning || by_deletes, "log {log_id} was not asked for");
        let me = learning.me;
        out.extend(self.decide_deletes(log_id, &record));
        if let Ok(r) = &record {
            out.extend(self.judge_copies(log_id, *r, me));
        }
        let Ok(Some(record)) = record else {
            return out;
        };
        assert_eq!(record.log_id, log_id, "the record of another log");
        for seg in &record.segments {
            let Some(len) = seg.sealed_len else { continue };
            if !seg.replicas.contains(&me) {
                continue;
            }
            let key = SegmentKey {
                log_id,
                segment: seg.id,
            };
            let Some(segment) = self.segments.get_mut(&key) else {
                continue;
            };
            let open = segment.replica.sealed_len().is_none();
            if !open || segment.failure.is_some() || segment.control.learning() {
                continue;
            }
            let request = ControlRequest {
                reply_to: None,
                op: ControlOp::Seal {
                    epoch: seg.epoch,
                    len,
                },
                learnt: true,
            };
            segment.control(key, request, &mut out);
            self.wake_reads(key, &mut out);
        }
        for a in out.iter() {
            if let (Action::LearntSealRefused { key, .. }, Some(l)) = (a, &mut self.learning) {
                l.give_up(*key);
            }
        }
        out
    }

    /// A segment found on disk at start, before any request.
    pub fn add_recovered(&mut self, key: SegmentKey, replica: Replica) {
        assert_eq!(
            self.owner(key),
            self.shard,
            "{key:?} recovered on the wrong shard"
        );
        let old = self.segments.insert(key, Segment::new(replica));
        assert!(old.is_none(), "{key:?} recovered twice");
    }

    /// An append whose entries were checked (crcs, sizes). Stage as
    /// [`AppendStep::stage`] says, then carry out its actions.
    pub fn handle_append(
        &mut self,
        conn: ConnId,
        request_id: u64,
        req: AppendRequest,
    ) -> AppendStep {
        let key = req.key;
        let mut out = Actions::new();
        self.touch(key);
        if let Some(answer) = self.misdirected(key) {
            out.send(conn, request_id, answer);
            return AppendStep {
                stage: Stage::Nothing,
                actions: out,
            };
        }
        if self.is_deleted(key) {
            out.send(conn, request_id, deleted(key));
            return AppendStep {
                stage: Stage::Nothing,
                actions: out,
            };
        }
        if self.is_read_only() && self.takes_new_data(key) {
            out.send(conn, request_id, self.refuse_new_data(key));
            return AppendStep {
                stage: Stage::Nothing,
                actions: out,
            };
        }
        let stage = match self.segments.get_mut(&key) {
            Some(segment) => segment.append(conn, request_id, &req, &mut out),
            None => self.append_unknown(conn, request_id, &req, &mut out),
        };
        // The append may have taught the replica a higher watermark.
        self.wake_reads(key, &mut out);
        AppendStep {
            stage,
            actions: out,
        }
    }

    fn append_unknown(
        &mut self,
        conn: ConnId,
        request_id: u64,
        req: &AppendRequest,
        out: &mut Actions,
    ) -> Stage {
        let key = req.key;
        let waiting = Waiting::Append { conn, request_id };
        if let Some(waiters) = self.creating.get_mut(&key) {
            waiters.push(waiting);
            return Stage::Park;
        }
        if req.first_offset == 0 {
            if !self.create(key, req.first_seq, req.epoch, waiting, out) {
                return Stage::Nothing;
            }
            return Stage::Park;
        }
        out.send(conn, request_id, refused(key, Refusal::Gap { len: 0 }));
        Stage::Nothing
    }

    /// A commit watermark sent alone. Not answered, not written down (the
    /// next record carries it; a lower watermark after a crash only delays
    /// reads from this replica).
    pub fn handle_watermark(&mut self, w: &Watermark) -> Actions {
        let key = SegmentKey {
            log_id: w.log_id,
            segment: w.segment,
        };
        let mut out = Actions::new();
        self.touch(key);
        let moved = self
            .segments
            .get_mut(&key)
            .is_some_and(|s| s.replica.on_watermark(w.epoch, w.commit));
        if moved {
            self.wake_reads(key, &mut out);
        }
        out
    }

    /// A read, at `now_ms`: answered now, or parked until there is
    /// something to read or until `now_ms + wait_ms`.
    pub fn handle_read(&mut self, now_ms: u64, conn: ConnId, request_id: u64, r: &Read) -> Actions {
        let key = SegmentKey {
            log_id: r.log_id,
            segment: r.segment,
        };
        let mut out = Actions::new();
        if let Some(answer) = self.misdirected(key) {
            out.send(conn, request_id, answer);
            return out;
        }
        let read = ParkedRead {
            conn,
            request_id,
            key,
            from: r.from_offset,
            limit: r.limit,
            max_bytes: r.max_bytes,
            deadline_ms: now_ms.saturating_add(u64::from(r.wait_ms)),
        };
        let at_deadline = read.deadline_ms <= now_ms;
        if !self.answer_read(read, at_deadline, &mut out) {
            self.reads.park(read);
        }
        out
    }

    /// A fence: queued behind the segment's other control requests, and
    /// the segment created if this node never saw it.
    pub fn handle_fence(&mut self, conn: ConnId, request_id: u64, f: &Fence) -> Actions {
        let key = SegmentKey {
            log_id: f.log_id,
            segment: f.segment,
        };
        let op = ControlOp::Fence { epoch: f.epoch };
        self.handle_control(conn, request_id, key, op, Some(f.epoch))
    }

    /// A seal: queued behind the segment's other control requests; an
    /// unknown segment is created only to be sealed empty.
    pub fn handle_seal(&mut self, conn: ConnId, request_id: u64, s: &Seal) -> Actions {
        let key = SegmentKey {
            log_id: s.log_id,
            segment: s.segment,
        };
        let op = ControlOp::Seal {
            epoch: s.epoch,
            len: s.len,
        };
        let create_at_epoch = (s.len == 0).then_some(s.epoch);
        self.handle_control(conn, request_id, key, op, create_at_epoch)
    }

    fn handle_control(
        &mut self,
        conn: ConnId,
        request_id: u64,
        key: SegmentKey,
        op: ControlOp,
        create_at_epoch: Option<u64>,
    ) -> Actions {
        let mut out = Actions::new();
        if let Some(answer) = self.misdirected(key) {
            out.send(conn, request_id, answer);
            return out;
        }
        if self.is_deleted(key) {
            out.send(conn, request_id, deleted(key));
            return out;
        }
        let request = ControlRequest {
            reply_to: Some((conn, request_id)),
            op,
            learnt: false,
        };
        self.touch(key);
        if let Some(segment) = self.segments.get_mut(&key) {
            segment.control(key, request, &mut out);
            self.wake_reads(key, &mut out);
        } else if let Some(waiters) = self.creating.get_mut(&key) {
            waiters.push(Waiting::Control(request));
        } else if self.is_read_only() && create_at_epoch.is_some() {
            out.send(conn, request_id, self.refuse_new_data(key));
        } else if let Some(epoch) = create_at_epoch {
            // Not the log's first seq: a segment created by a control
            // request never holds entries of its own before an append.
            let _created = self.create(key, 0, epoch, Waiting::Control(request), &mut out);
        } else {
            out.send(conn, request_id, not_found(key));
        }
        out
    }

    fn create(
        &mut self,
        key: SegmentKey,
        first_seq: u64,
        epoch: u64,
        first: Waiting,
        out: &mut Actions,
    ) -> bool {
        assert!(!self.segments.contains_key(&key), "{key:?} exists");
        if !self.may_create() {
            let why = "too many segments the metadata does not list here yet";
            let reply_to = match first {
                Waiting::Append { conn, request_id } => Some((conn, request_id)),
                Waiting::Control(request) => request.reply_to,
            };
            if let Some((conn, request_id)) = reply_to {
                out.send(conn, request_id, internal(key, why));
            }
            return false;
        }
        let old = self.creating.insert(key, vec![first]);
        assert!(old.is_none(), "{key:?} created twice at once");
        out.push(Action::Create {
            key,
            first_seq,
            epoch,
        });
        true
    }

    /// The segment asked for by [`Action::Create`] was created (`Ok`) or
    /// could not be (`Err` with the reason).
    pub fn handle_created(&mut self, key: SegmentKey, result: Result<(), String>) -> Actions {
        let Some(waiters) = self.creating.remove(&key) else {
            panic!("{key:?} created without being asked for");
        };
        let mut out = Actions::new();
        match result {
            Ok(()) => {
                let mut segment = Segment::new(Replica::new());
                for waiting in waiters {
                    match waiting {
                        Waiting::Append { conn, request_id } => {
                            out.push(Action::Reoffer { conn, request_id })
                        }
                        Waiting::Control(request) => segment.control(key, request, &mut out),
                    }
                }
                let old = self.segments.insert(key, segment);
                assert!(old.is_none(), "{key:?} created over a segment");
                self.wake_reads(key, &mut out);
                self.unconfirmed(key, true, &mut out);
            }
            Err(why) => {
                let why = format!("create: {why}");
                for waiting in waiters {
                    let reply_to = match waiting {
                        Waiting::Append { conn, request_id } => Some((conn, request_id)),
                        Waiting::Control(request) => request.reply_to,
                    };
                    if let Some((conn, request_id)) = reply_to {
                        out.send(conn, request_id, internal(key, &why));
                    }
                }
            }
        }
        out
    }

    /// The segment's first `len` entries are durable (a group commit
    /// ended): releases the acks they cover, answers drained control
    /// requests, wakes reads.
    pub fn handle_durable(&mut self, key: SegmentKey, len: u64) -> Actions {
        let mut out = Actions::new();
        if self.is_deleted(key) {
            return out;
        }
        self.segment_mut(key).durable(key, len, &mut out);
        self.wake_reads(key, &mut out);
        out
    }

    /// A group commit of the segment failed: the segment fails.
    pub fn handle_flush_failed(&mut self, key: SegmentKey, why: String) -> Actions {
        let mut out = Actions::new();
        if self.is_deleted(key) {
            return out;
        }
        let segment = self.segment_mut(key);
        if segment.replica.sealed_len().is_some() && segment.failure.is_none() {
            // A heal's flush (a sealed segment takes no other): what the
            // flush wrote past the durable length is unknown, and is
            // dropped as damage; the heal starts again from there at the
            // repair thread's next pass, rather than the copy staying
            // short until a restart.
            segment.abort_heal(key, &why, &mut out);
        } else {
            segment.fail(key, why, &mut out);
        }
        self.wake_reads(key, &mut out);
        out
    }

    /// The control write asked for by [`Action::PersistControl`] is
    /// durable.
    pub fn handle_control_durable(&mut self, key: SegmentKey) -> Actions {
        let mut out = Actions::new();
        if self.is_deleted(key) {
            return out;
        }
        let segment = self.segment_mut(key);
        segment
            .control
            .on_written(key, &mut segment.replica, &mut out);
        self.wake_reads(key, &mut out);
        out
    }

    /// The control write asked for by [`Action::PersistControl`] failed:
    /// the segment fails.
    pub fn handle_control_failed(&mut self, key: SegmentKey, why: String) -> Actions {
        let mut out = Actions::new();
        if self.is_deleted(key) {
            return out;
        }
        let segment = self.segment_mut(key);
        segment.control.on_write_failed(key);
        segment.fail(key, why, &mut out);
        self.wake_reads(key, &mut out);
        out
    }

    /// The disk read of an [`Action::ServeRead`] failed. The segment
    /// stays as it is (what is durable did not change); the reader is told
    /// and tries another replica.
    pub fn handle_read_failed(
        &mut self,
        conn: ConnId,
        request_id: u64,
        key: SegmentKey,
        why: &str,
    ) -> Actions {
        let mut out = Actions::new();
        out.send(conn, request_id, internal(key, why));
        out
    }

    /// `conn` closed: nothing is owed to it any more.
    pub fn handle_conn_closed(&mut self, conn: ConnId) {
        self.reads.forget_conn(conn);
        for waiters in self.deleting.values_mut() {
            waiters.retain(|(c, _)| *c != conn);
        }
        for segment in self.segments.values_mut() {
            segment.forget_conn(conn);
        }
        for waiters in self.creating.values_mut() {
            waiters.retain(|w| !matches!(w, Waiting::Append { conn: c, .. } if *c == conn));
            for w in waiters.iter_mut() {
                if let Waiting::Control(request) = w {
                    if request.reply_to.is_some_and(|(c, _)| c == conn) {
                        request.reply_to = None;
                    }
                }
            }
        }
    }

    /// When [`Self::handle_timeout`] must be called next: the earliest
    /// deadline of a parked read, or the next seal-learning sweep.
    pub fn poll_timeout(&self) -> Option<u64> {
        let orphans = self.orphans.next_sweep_ms;
        let sweep = self
            .learning
            .as_ref()
            .map(|l| l.next_sweep_ms().min(orphans));
        match (self.reads.earliest_deadline(), sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Answers every parked read whose deadline is at or before `now_ms`,
    /// and sweeps for idle unsealed segments if that is due.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Actions {
        let mut out = Actions::new();
        for read in self.reads.take_expired(now_ms) {
            let answered = self.answer_read(read, true, &mut out);
            assert!(answered, "a read at its deadline is always answered");
        }
        if let Some(learning) = &mut self.learning {
            // A log whose record the deletes asked for is asked once: its
            // answer serves the learning too.
            let record_lookups = &self.record_lookups;
            let unsealed = self
                .segments
                .iter()
                .filter(|(_, s)| s.replica.sealed_len().is_none() && s.failure.is_none())
                .map(|(k, _)| *k)
                .filter(|k| !record_lookups.contains(&k.log_id));
            for log_id in learning.sweep(now_ms, unsealed) {
                out.push(Action::LookupLog { log_id });
            }
        }
        self.orphan_sweep(now_ms, &mut out);
        out
    }

    /// The replica of `key`, if the segment exists here.
    pub fn replica(&self, key: SegmentKey) -> Option<&Replica> {
        self.segments.get(&key).map(|s| &s.replica)
    }

    /// Why `key` failed, if it did.
    pub fn failure(&self, key: SegmentKey) -> Option<&str> {
        self.segments.get(&key).and_then(|s| s.failure.as_deref())
    }

    /// Entries of `key` from `from` on were found damaged on disk (the
    /// scrub): never served again, and reads waiting on them are answered.
    pub fn mark_damaged(&mut self, key: SegmentKey, from: u64) -> Actions {
        let mut out = Actions::new();
        // The scrub reads outside the machine: the segment may have been
        // deleted (trimmed) since. Nothing is left to mark then.
        let Some(segment) = self.segments.get_mut(&key) else {
            return out;
        };
        // Its damage may have been dropped meanwhile (a heal rewound it
        // below `from`): what it holds now was not read.
        if from > segment.replica.durable_len() {
            return out;
        }
        segment.replica.mark_damaged(from);
        self.wake_reads(key, &mut out);
        out
    }

    /// A read of `key` found the durable entry `from` bad on disk: the
    /// replica is damaged from there (as if the scrub had found it), and
    /// the reader is told `Damaged`, so it goes to another replica.
    pub fn handle_read_damaged(
        &mut self,
        conn: ConnId,
        request_id: u64,
        key: SegmentKey,
        from: u64,
    ) -> Actions {
        let mut out = self.mark_damaged(key, from);
        out.send(conn, request_id, refused(key, Refusal::Damaged { from }));
        out
    }

    /// The sealed segments that hold their whole sealed length and have
    /// not failed, in key order, with that length: what the scrub re-reads
    /// (a damaged one is known damaged already).
    pub fn scrubbable(&self) -> Vec<(SegmentKey, u64)> {
        self.segments
            .iter()
            .filter(|(_, s)| s.failure.is_none() && s.replica.missing_from().is_none())
            .filter_map(|(key, s)| s.replica.sealed_len().map(|len| (*key, len)))
            .collect()
    }

    /// Reads parked on this shard.
    pub fn parked_reads(&self) -> usize {
        self.reads.len()
    }

    /// Acks `key` owes until more is durable.
    pub fn owed_acks(&self, key: SegmentKey) -> usize {
        self.segments.get(&key).map_or(0, Segment::owed_acks)
    }

    /// Whether an append to `key` would write new data here: the segment
    /// is unknown (the append would create it), being created, held open,
    /// or sealed and healing (a heal waits for room: a flush failing for
    /// space would fail the segment until a restart, while the copy is
    /// read around as it is). A whole sealed or a failed one answers as it
    /// always does.
    fn takes_new_data(&self, key: SegmentKey) -> bool {
        match self.segments.get(&key) {
            Some(s) => {
                (s.replica.sealed_len().is_none() || s.replica.healing()) && s.failure.is_none()
            }
            None => true,
        }
    }

    fn owner(&self, key: SegmentKey) -> u32 {
        shard_of(key.log_id, key.segment, self.shard_count)
    }

    /// The answer to a request for a segment of another shard.
    fn misdirected(&self, key: SegmentKey) -> Option<Message> {
        let owner = self.owner(key);
        (owner != self.shard).then(|| wrong_shard(key, owner))
    }

    /// A segment the driver reports on: it exists, since the machine asked.
    fn segment_mut(&mut self, key: SegmentKey) -> &mut Segment {
        match self.segments.get_mut(&key) {
            Some(segment) => segment,
            None => panic!("{key:?}: a report about a segment that does not exist"),
        }
    }

    /// Answers `read` if it can be answered now (always at its deadline);
    /// false if it must wait.
    fn answer_read(&self, read: ParkedRead, at_deadline: bool, out: &mut Actions) -> bool {
        let (conn, request_id, key) = (read.conn, read.request_id, read.key);
        if self.is_deleted(key) {
            out.send(conn, request_id, deleted(key));
            return true;
        }
        let Some(segment) = self.segments.get(&key) else {
            // A reader may come before the segment's first append: it
            // waits for it like for any other data.
            if at_deadline {
                out.send(conn, request_id, not_found(key));
            }
            return at_deadline;
        };
        let replica = &segment.replica;
        // A range the replica should hold but cannot serve is refused at
        // once, never answered short or left to wait: the reader goes to
        // another replica.
        if let Some(from) = replica.missing_from() {
            let below_seal = replica.sealed_len().is_none_or(|s| read.from < s);
            if read.from >= from && read.from < read.limit && below_seal {
                out.send(conn, request_id, refused(key, Refusal::Damaged { from }));
                return true;
            }
        }
        let end = replica.readable_end(read.limit);
        let (watermark, sealed_len) = (replica.watermark(), replica.sealed_len());
        if read.from < end {
            // Served even from a failed segment: what is durable is known
            // (a failed flush never moved it) and on disk.
            out.push(Action::ServeRead {
                conn,
                request_id,
                key,
                from: read.from,
                end,
                max_bytes: read.max_bytes,
                watermark,
                sealed_len,
            });
            return true;
        }
        if let Some(why) = &segment.failure {
            // A failed segment never holds more than it does now.
            out.send(conn, request_id, internal(key, why));
            return true;
        }
        let ended = read.from >= read.limit || sealed_len.is_some_and(|s| read.from >= s);
        if !ended && !at_deadline {
            return false;
        }
        if at_deadline && !ended && read.limit != u64::MAX && read.from >= replica.durable_len() {
            // The reader knows the segment sealed at `limit`, and this
            // replica still lacks entries below it after a whole poll: it
            // was left behind (a failed replica of a switch) and will not
            // catch up. Waiting on it again would hang the reader.
            let from = replica.durable_len();
            out.send(conn, request_id, refused(key, Refusal::Damaged { from }));
            return true;
        }
        let empty = ReadResponse {
            log_id: key.log_id,
            segment: key.segment,
            from_offset: read.from,
            count: 0,
            watermark,
            sealed_len,
            records: Vec::new(),
        };
        out.send(conn, request_id, Message::ReadResponse(empty));
        true
    }

    /// Re-checks the reads parked on `key` after it changed.
    fn wake_reads(&mut self, key: SegmentKey, out: &mut Actions) {
        for read in self.reads.take_key(key) {
            if !self.answer_read(read, false, out) {
                self.reads.park(read);
            }
        }
    }
}
