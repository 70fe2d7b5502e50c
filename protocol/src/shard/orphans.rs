//! Copies the record does not list: confirmed, bounded, and swept.
//!
//! A fence or an append at offset 0 of a segment this node does not hold
//! creates it, and any peer may send one. So a shard that can look records
//! up (the one that learns seals) keeps the segments it created since it
//! started *unconfirmed* until their log's record lists them on this node
//! (it asks for the record right after creating one, off the append's
//! path), and creates at most [`UNCONFIRMED_SEGMENTS_MAX`] unconfirmed
//! ones: past that a creation is answered `Internal` (for the sender, a
//! failed replica), so made-up segments cannot fill the disk.
//!
//! Every [`ORPHAN_SWEEP_MS`] it asks again for the records of logs with
//! copies not yet confirmed (the recovered ones too: copies repaired away
//! while the node was down, segments trimmed meanwhile, a cancelled
//! repair's). A copy is **swept** (unlinked, like a delete that answers
//! nobody) when two answers at least a whole sweep period apart (two
//! sweep rounds) both find it [`sweepable`]: unlisted for good. A copy unlisted *for now* is kept: a
//! takeover writes its tail into the next segment before the CAS that
//! publishes it, so a segment past the record's last one may still be
//! published; such copies are only bounded. A repair's copy is unlisted
//! until its job publishes it: the driver names the segments under repair
//! ([`ShardMachine::set_repairing`]) and those are never swept.

use std::collections::BTreeSet;

use super::{Action, Actions, SegmentKey, ShardMachine};
use crate::listing::{listing, Listing, Unlisted};
use crate::metadata::LogMeta;
use crate::mutant::{self, Mutant};
use crate::NodeId;

/// Segments created since the start and not yet listed, per shard.
pub const UNCONFIRMED_SEGMENTS_MAX: usize = 256;
/// How often the records of unconfirmed copies are asked for again, by
/// default (`--orphan-sweep-secs`); a copy is swept after two answers a
/// sweep apart.
pub const ORPHAN_SWEEP_MS: u64 = 60_000;
/// Logs asked about per sweep (a node with many orphans clears them over
/// several sweeps rather than flooding the store).
pub const ORPHAN_LOOKUPS_PER_SWEEP: usize = 16;

/// Whether a copy unlisted in `record` is unlisted for good: no log, a
/// deleting segment, or a segment the record has decided on without this
/// node (below its first segment: trimmed; or up to its last one, on
/// other nodes). A segment past the record's last one is not: a takeover
/// may still publish it.
pub fn sweepable(record: Option<&LogMeta>, segment: u64, me: NodeId) -> bool {
    match listing(record, segment, me) {
        Listing::Listed => false,
        Listing::Unlisted(Unlisted::NoLog | Unlisted::Deleting | Unlisted::NotAReplica) => true,
        // MUTANT SweepPastLast: a segment past the last one is swept too.
        Listing::Unlisted(Unlisted::NoSegment) => {
            mutant::active(Mutant::SweepPastLast)
                || record
                    .and_then(|r| r.segments.last())
                    .is_some_and(|last| segment <= last.id)
        }
    }
}

/// What the shard knows of its unconfirmed copies.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    /// Copies not (yet) listed on this node, and whether each was created
    /// since the start (only those count against the bound).
    pub unconfirmed: std::collections::BTreeMap<SegmentKey, bool>,
    /// Of those, the ones an answer found sweepable, with the sweep round
    /// it came in.
    pub suspects: std::collections::BTreeMap<SegmentKey, u64>,
    /// Sweeps started so far: a copy is swept when found sweepable again
    /// two rounds after it was first (so at least a whole sweep period
    /// apart, whatever asked for the records in between).
    pub round: u64,
    /// Segments the node's repair is writing (never swept).
    pub repairing: BTreeSet<SegmentKey>,
    pub next_sweep_ms: u64,
    /// The sweep period; [`ORPHAN_SWEEP_MS`] unless set.
    pub sweep_ms: Option<u64>,
}

impl Orphans {
    pub fn sweep_ms(&self) -> u64 {
        self.sweep_ms.unwrap_or(ORPHAN_SWEEP_MS)
    }

    pub fn fresh(&self) -> usize {
        self.unconfirmed.values().filter(|fresh| **fresh).count()
    }
}

impl ShardMachine {
    /// The segments the node's repair is writing now (the driver keeps
    /// this up to date): their copies are never swept.
    pub fn set_repairing(&mut self, keys: BTreeSet<SegmentKey>) {
        self.orphans.repairing = keys;
    }

    /// Sets the sweep period (from the next sweep on).
    pub fn set_orphan_sweep_ms(&mut self, ms: u64) {
        assert!(ms > 0, "a sweep period of 0");
        self.orphans.sweep_ms = Some(ms);
        self.orphans.next_sweep_ms = self.orphans.next_sweep_ms.min(ms);
    }

    /// Whether a new segment may be created now (see the module doc).
    pub(super) fn may_create(&self) -> bool {
        self.learning.is_none() || self.orphans.fresh() < UNCONFIRMED_SEGMENTS_MAX
    }

    /// A segment was created (`fresh`) or recovered: unconfirmed until its
    /// record lists it; a new one has its record asked for at once.
    pub(super) fn unconfirmed(&mut self, key: SegmentKey, fresh: bool, out: &mut Actions) {
        if self.learning.is_none() {
            return;
        }
        self.orphans.unconfirmed.insert(key, fresh);
        if fresh {
            self.ask_record(key.log_id, out);
        }
    }

    /// Asks for `log_id`'s record unless a lookup of it is in flight.
    pub(super) fn ask_record(&mut self, log_id: u64, out: &mut Actions) {
        let Some(learning) = &self.learning else {
            return;
        };
        if learning.asking(log_id) || self.record_lookups.contains(&log_id) {
            return;
        }
        self.record_lookups.insert(log_id);
        out.push(Action::LookupLog { log_id });
    }

    /// A sweep, if due at `now_ms`: the records of logs with unconfirmed
    /// copies are asked for again.
    pub(super) fn orphan_sweep(&mut self, now_ms: u64, out: &mut Actions) {
        if self.learning.is_none() || now_ms < self.orphans.next_sweep_ms {
            return;
        }
        self.orphans.next_sweep_ms = now_ms.saturating_add(self.orphans.sweep_ms());
        self.orphans.round += 1;
        let logs: BTreeSet<u64> = self
            .orphans
            .unconfirmed
            .keys()
            .map(|k| k.log_id)
            .take(ORPHAN_LOOKUPS_PER_SWEEP)
            .collect();
        for log_id in logs {
            self.ask_record(log_id, out);
        }
    }

    /// `log_id`'s record came back: its copies listed here are confirmed,
    /// and those found unlisted for good twice in a row are swept.
    pub(super) fn judge_copies(
        &mut self,
        log_id: u64,
        record: Option<&LogMeta>,
        me: NodeId,
    ) -> Actions {
        let mut out = Actions::new();
        let keys: Vec<SegmentKey> = self
            .orphans
            .unconfirmed
            .range(
                SegmentKey { log_id, segment: 0 }..=SegmentKey {
                    log_id,
                    segment: u64::MAX,
                },
            )
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if listing(record, key.segment, me) == Listing::Listed {
                self.orphans.unconfirmed.remove(&key);
                self.orphans.suspects.remove(&key);
                continue;
            }
            let sweep = sweepable(record, key.segment, me)
                && !self.orphans.repairing.contains(&key)
                && !self.creating.contains_key(&key);
            let round = self.orphans.round;
            if !sweep {
                self.orphans.suspects.remove(&key);
            } else if let Some(first) = self.orphans.suspects.get(&key) {
                if round >= first + 2 {
                    // Unlisted for good at two answers a sweep apart.
                    self.orphans.unconfirmed.remove(&key);
                    self.orphans.suspects.remove(&key);
                    out.extend(self.sweep_copy(key));
                }
            } else {
                self.orphans.suspects.insert(key, round);
            }
        }
        out
    }

    /// Unlinks `key`, a copy no record lists, as a delete that answers
    /// nobody.
    fn sweep_copy(&mut self, key: SegmentKey) -> Actions {
        let mut out = Actions::new();
        if self.is_deleted(key) {
            return out;
        }
        if let Some(mut segment) = self.segments.remove(&key) {
            segment.fail(
                key,
                "segment swept: no record lists it here".into(),
                &mut out,
            );
        }
        for read in self.reads.take_key(key) {
            out.send(read.conn, read.request_id, super::action::deleted(key));
        }
        // Remembered among the deletes of segments nobody should ask for
        // again, which are bounded (`DELETED_UNKNOWN_MAX`).
        self.deleting_unknown.insert(key);
        self.deleting.insert(key, Vec::new());
        out.push(Action::DeleteFiles { key });
        out
    }
}

#[cfg(test)]
mod tests {
    use trilog_wire::meta::SegmentMeta;

    use super::*;

    #[test]
    fn only_what_the_record_decided_without_this_node_is_sweepable() {
        let seg = |id, replicas: &[NodeId]| SegmentMeta {
            id,
            replicas: replicas.to_vec(),
            first_seq: id * 10,
            epoch: 1,
            sealed_len: None,
        };
        let r = LogMeta {
            log_id: 1,
            epoch: 2,
            trim_seq: 10,
            segments: vec![seg(1, &[1, 2, 3]), seg(2, &[2, 3, 4])],
            deleting: vec![seg(0, &[1, 2, 3])],
            deleted: false,
        };
        assert!(!sweepable(Some(&r), 1, 1), "listed");
        assert!(sweepable(Some(&r), 2, 1), "on other nodes");
        assert!(sweepable(Some(&r), 0, 1), "deleting");
        assert!(
            !sweepable(Some(&r), 3, 1),
            "past the last: a takeover's, maybe"
        );
        assert!(sweepable(None, 3, 1), "no log");
    }
}
