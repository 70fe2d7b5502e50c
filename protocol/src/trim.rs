//! Trim and delete: which segments of a log go, and the record changes that
//! make them go without ever leaving a dangling reference or an orphan.
//!
//! A trim moves the log's trim point forward and deletes every whole sealed
//! segment that ends at or before it; a delete does it for every segment
//! and marks the log deleted. Both run in three steps, each safe to stop
//! after:
//!
//! 1. **Mark** ([`trim_record`], [`delete_record`]): one CAS moves the
//!    doomed segments out of the chain into the record's `deleting` list.
//!    From then on no reader or producer is sent to them, and the record
//!    still names every node that may hold their files.
//! 2. **Unlink**: every replica node of each deleting segment is told
//!    `DeleteSegment` and answers once the unlink is durable
//!    ([`DeletionRound`] tracks the answers). A node that is down leaves
//!    its segment pending.
//! 3. **Drop** ([`drop_deleted`]): one CAS removes from `deleting` the
//!    segments whose every replica confirmed.
//!
//! A crash between 1 and 3 leaves the segments in `deleting`: whoever trims
//! next finishes them first ([`pending`]). Nothing is unlinked before the
//! record stopped naming it in the chain, and nothing leaves the record
//! before every replica confirmed, so the record never points at a missing
//! file and no file outlives the record's last mention of it.
//!
//! The trim point never moves back, and never past the end of the sealed
//! segments: that end is the one place the metadata *knows* every entry
//! below is committed (the open segment's committed end lives only in its
//! producer and replicas). A trim point past it would hide entries not yet
//! written, so it is refused, not clamped: a caller asking for more than
//! can be trimmed learns so instead of getting less in silence.
//!
//! The last segment of the chain always stays, even when it lies wholly
//! below the trim point: the next segment's id and first seq follow it
//! (`metadata::next_segment_id`), and an id must never be used twice (a
//! node may still hold a deleting segment's files under that id).

use std::collections::{BTreeMap, BTreeSet};

use trilog_wire::meta::{LogMeta, SegmentMeta};

use crate::metadata::end_of_sealed;
use crate::mutant::{self, Mutant};
use crate::NodeId;

/// Why a trim or delete was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrimRefusal {
    #[error("log {log_id}: cannot trim before seq {requested}: only sealed entries can be trimmed, and they end at seq {sealed_end}")]
    PastSealedEnd {
        log_id: u64,
        requested: u64,
        sealed_end: u64,
    },
    #[error("log {log_id} is deleted")]
    Deleted { log_id: u64 },
    #[error("log {log_id} has open segment {segment}: close its producer or take it over (`trilog takeover --log {log_id}`) before deleting it")]
    OpenSegment { log_id: u64, segment: u64 },
}

/// The first seq a reader can still read: the trim point, or the start of
/// the first segment still in the chain if that lies above it.
pub fn first_readable(record: &LogMeta) -> u64 {
    let first = record.segments.first().map_or(0, |s| s.first_seq);
    record.trim_seq.max(first)
}

/// The seq just past a sealed segment, `None` for an open one.
fn sealed_end(s: &SegmentMeta) -> Option<u64> {
    s.sealed_len.map(|len| s.first_seq + len)
}

/// Whether a trim at `trim_seq` deletes segment `s` (not the last one):
/// only when it is sealed and ends at or before the trim point, so every
/// entry at or past the point stays (the model check's `CommitDurability`
/// and `TrimKeepsCommitted`; the mutant `TrimPastPoint` breaks it).
fn doomed(s: &SegmentMeta, trim_seq: u64) -> bool {
    if mutant::active(Mutant::TrimPastPoint) {
        return s.sealed_len.is_some() && s.first_seq < trim_seq;
    }
    sealed_end(s).is_some_and(|end| end <= trim_seq)
}

/// Step 1 of a trim: the record with the trim point at `before_seq` (never
/// moved back) and every whole sealed segment ending at or before it moved
/// into `deleting`. The same record back means there is nothing to do.
pub fn trim_record(record: &LogMeta, before_seq: u64) -> Result<LogMeta, TrimRefusal> {
    let log_id = record.log_id;
    if record.deleted {
        return Err(TrimRefusal::Deleted { log_id });
    }
    let sealed_end = end_of_sealed(record);
    if before_seq > sealed_end {
        return Err(TrimRefusal::PastSealedEnd {
            log_id,
            requested: before_seq,
            sealed_end,
        });
    }
    let mut next = record.clone();
    next.trim_seq = record.trim_seq.max(before_seq);
    let keep_from = next
        .segments
        .iter()
        .take(next.segments.len().saturating_sub(1))
        .take_while(|s| doomed(s, next.trim_seq))
        .count();
    let gone: Vec<SegmentMeta> = next.segments.drain(..keep_from).collect();
    next.deleting.extend(gone);
    assert!(
        next.trim_seq >= record.trim_seq,
        "the trim point moved back"
    );
    Ok(next)
}

/// Step 1 of a delete: the log marked deleted, its trim point at its end,
/// and every segment moved into `deleting`. Refused while the last segment
/// is open (a producer may be writing it).
pub fn delete_record(record: &LogMeta) -> Result<LogMeta, TrimRefusal> {
    if let Some(last) = record.segments.last() {
        if last.sealed_len.is_none() {
            return Err(TrimRefusal::OpenSegment {
                log_id: record.log_id,
                segment: last.id,
            });
        }
    }
    let mut next = record.clone();
    next.trim_seq = record.trim_seq.max(end_of_sealed(record));
    next.deleted = true;
    let gone: Vec<SegmentMeta> = next.segments.drain(..).collect();
    next.deleting.extend(gone);
    Ok(next)
}

/// The segments a trim or delete marked and that still wait for their
/// replicas to unlink them.
pub fn pending(record: &LogMeta) -> &[SegmentMeta] {
    &record.deleting
}

/// Step 3: the record without the deleting segments in `confirmed` (each
/// one every replica confirmed).
pub fn drop_deleted(record: &LogMeta, confirmed: &BTreeSet<u64>) -> LogMeta {
    let mut next = record.clone();
    next.deleting.retain(|s| !confirmed.contains(&s.id));
    next
}

/// Step 2's bookkeeping: which replica of which deleting segment confirmed
/// its unlink.
#[derive(Debug, Clone, Default)]
pub struct DeletionRound {
    /// Per segment id, the replicas still to confirm.
    waiting: BTreeMap<u64, BTreeSet<NodeId>>,
}

impl DeletionRound {
    /// A round over `segments` (a record's `deleting` list).
    pub fn new(segments: &[SegmentMeta]) -> DeletionRound {
        let waiting = segments
            .iter()
            .map(|s| (s.id, s.replicas.iter().copied().collect()))
            .collect();
        DeletionRound { waiting }
    }

    /// Every `(segment, node)` delete request the round sends.
    pub fn requests(&self) -> Vec<(u64, NodeId)> {
        self.waiting
            .iter()
            .flat_map(|(seg, nodes)| nodes.iter().map(move |n| (*seg, *n)))
            .collect()
    }

    /// Counts every replica on `nodes` as confirmed: nodes removed from
    /// the cluster for good (`crate::decommission`), whose disks never
    /// serve it again and which can never answer.
    pub fn forget(&mut self, nodes: &BTreeSet<NodeId>) {
        for waiting in self.waiting.values_mut() {
            waiting.retain(|n| !nodes.contains(n));
        }
    }

    /// `node` confirmed that it holds no files of `segment`.
    pub fn confirmed(&mut self, segment: u64, node: NodeId) {
        if let Some(nodes) = self.waiting.get_mut(&segment) {
            nodes.remove(&node);
        }
    }

    /// The segments every replica confirmed.
    pub fn done(&self) -> BTreeSet<u64> {
        self.waiting
            .iter()
            .filter(|(_, nodes)| nodes.is_empty())
            .map(|(seg, _)| *seg)
            .collect()
    }

    /// The segments some replica has not confirmed, with those replicas.
    pub fn left(&self) -> Vec<(u64, Vec<NodeId>)> {
        self.waiting
            .iter()
            .filter(|(_, nodes)| !nodes.is_empty())
            .map(|(seg, nodes)| (*seg, nodes.iter().copied().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta_record::validate_record;
    use crate::metadata::{open_for_write, seal_last, switch_segment};

    /// Segments [0,4) [4,10) [10,10) [10, open).
    fn chain() -> LogMeta {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let r = switch_segment(&r, 1, 0, 4, &[1, 2, 3]).expect("switch");
        let r = switch_segment(&r, 1, 1, 6, &[2, 3, 4]).expect("switch");
        switch_segment(&r, 1, 2, 0, &[3, 4, 5]).expect("switch")
    }

    fn ids(segments: &[SegmentMeta]) -> Vec<u64> {
        segments.iter().map(|s| s.id).collect()
    }

    #[test]
    fn trim_deletes_only_whole_sealed_segments_below_the_point() {
        let r = chain();
        let t = trim_record(&r, 5).expect("trim");
        assert_eq!(t.trim_seq, 5);
        assert_eq!(ids(&t.deleting), vec![0], "segment 1 reaches past 5");
        assert_eq!(ids(&t.segments), vec![1, 2, 3]);
        validate_record(1, &t).expect("valid");
        assert_eq!(first_readable(&t), 5);
        let t = trim_record(&t, 10).expect("trim to the sealed end");
        assert_eq!(ids(&t.deleting), vec![0, 1, 2]);
        assert_eq!(ids(&t.segments), vec![3], "the open segment stays");
        validate_record(1, &t).expect("valid");
        assert_eq!(first_readable(&t), 10);
    }

    #[test]
    fn trim_never_moves_back_nor_past_the_sealed_end() {
        let t = trim_record(&chain(), 7).expect("trim");
        let back = trim_record(&t, 2).expect("trim below the point");
        assert_eq!(back.trim_seq, 7, "never moves back");
        assert_eq!(back, t, "nothing more to do");
        assert_eq!(
            trim_record(&t, 11),
            Err(TrimRefusal::PastSealedEnd {
                log_id: 1,
                requested: 11,
                sealed_end: 10
            })
        );
    }

    #[test]
    fn the_last_segment_stays_even_when_wholly_trimmed() {
        let r = seal_last(&chain(), 1, 3, 3).expect("close");
        let t = trim_record(&r, 13).expect("trim everything");
        assert_eq!(ids(&t.segments), vec![3]);
        assert_eq!(ids(&t.deleting), vec![0, 1, 2]);
        let reopened = open_for_write(Some(&t), 1, &[1, 2, 3]).expect("reopen");
        assert_eq!(reopened.segments.last().map(|s| s.id), Some(4));
        assert_eq!(reopened.segments.last().map(|s| s.first_seq), Some(13));
    }

    #[test]
    fn delete_takes_every_segment_once_closed() {
        let r = chain();
        assert_eq!(
            delete_record(&r),
            Err(TrimRefusal::OpenSegment {
                log_id: 1,
                segment: 3
            })
        );
        let r = seal_last(&r, 1, 3, 2).expect("close");
        let d = delete_record(&r).expect("delete");
        assert!(d.deleted && d.segments.is_empty());
        assert_eq!(ids(&d.deleting), vec![0, 1, 2, 3]);
        assert_eq!(d.trim_seq, 12);
        validate_record(1, &d).expect("valid");
        assert!(trim_record(&d, 12).is_err());
        assert!(open_for_write(Some(&d), 1, &[1]).is_err(), "never reopened");
    }

    #[test]
    fn a_segment_leaves_deleting_only_when_every_replica_confirmed() {
        let t = trim_record(&chain(), 10).expect("trim");
        let mut round = DeletionRound::new(pending(&t));
        assert_eq!(round.requests().len(), 9);
        for node in [1, 2, 3] {
            round.confirmed(0, node);
        }
        round.confirmed(1, 2);
        round.confirmed(1, 3);
        round.confirmed(2, 9); // not a replica: ignored
        assert_eq!(round.done(), BTreeSet::from([0]));
        assert_eq!(round.left(), vec![(1, vec![1]), (2, vec![2, 3, 4])]);
        let dropped = drop_deleted(&t, &round.done());
        assert_eq!(ids(&dropped.deleting), vec![1, 2]);
        validate_record(1, &dropped).expect("valid");
        // Node 1 removed from the cluster: its copy counts as unlinked.
        round.forget(&BTreeSet::from([1]));
        assert_eq!(round.done(), BTreeSet::from([0, 1]));
        assert!(round.requests().iter().all(|(_, n)| *n != 1));
    }
}
