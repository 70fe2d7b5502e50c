//! The invariants of docs/verification.md ("Properties") as predicates on a model state,
//! and the discoveries that show the interesting states are reached.

use stateright::Property;
use trilog_protocol::metadata::{end_of_sealed, locate, Location};
use trilog_protocol::producer::Phase;

use crate::model::net::{Tag, TAKER};
use crate::model::writers::Taker;
use crate::model::{State, Trilog};

/// The payload that `node` holds durably at `offset` of `seg`, if any
/// (none once it unlinked `seg`).
fn durable_tag(s: &State, node: u64, seg: u64, offset: u64) -> Option<Tag> {
    let g = s.nodes[node as usize - 1].seg(seg);
    if g.gone {
        return None;
    }
    g.durable().get(offset as usize).map(|(t, _)| *t)
}

/// The replicas of `seg` the properties hold to their data: all but a
/// node lost for good (its disk is gone; replacing it is repair's job, and
/// `RepairedDurable` judges the replacement) and a copy damaged and not
/// yet healed (healing it is its node's job, and `RepairedDurable` judges
/// the healed copy).
fn kept<'a>(s: &'a State, seg: u64, replicas: &'a [u64]) -> impl Iterator<Item = &'a u64> + 'a {
    replicas
        .iter()
        .filter(move |n| s.lost != Some(**n) && s.ghost.healing != Some((seg, **n)))
}

/// Whether the log itself holds `tag` at `seq`: the segment the record
/// places `seq` in has it on disk on every replica (but a lost one).
fn in_log(s: &State, seq: u64, tag: Tag) -> bool {
    let Location::At { index, offset, .. } = locate(&s.meta, seq) else {
        return false;
    };
    let seg = &s.meta.segments[index];
    kept(s, seg.id, &seg.replicas).all(|n| durable_tag(s, *n, seg.id, offset) == Some(tag))
}

/// 1. An entry reported committed at or past the trim point is, at every
///    moment, on disk on every replica of the segment that the metadata
///    record places its seq in, with its payload. (A takeover writes the
///    tail it carries into the next segment before the CAS that seals
///    below it: in between, the record still places those seqs in the old
///    segment.) Entries below the trim point are gone on purpose.
pub fn commit_durability(_: &Trilog, s: &State) -> bool {
    s.ghost
        .committed
        .range(s.meta.trim_seq..)
        .all(|(seq, tag)| in_log(s, *seq, *tag))
}

/// 2. The consumer is never given an entry that is not committed.
pub fn read_committed(_: &Trilog, s: &State) -> bool {
    s.consumer
        .reads
        .iter()
        .all(|(seq, tag)| s.ghost.committed.get(seq) == Some(tag))
}

/// 3. The consumer sees seqs dense from the trim point (0), without gap or
///    duplicate, and one payload per seq: the one every producer that
///    reported that seq committed reported.
pub fn log_order(_: &Trilog, s: &State) -> bool {
    !s.ghost.conflict
        && s.consumer.reads.iter().enumerate().all(|(i, (seq, tag))| {
            *seq == i as u64 && s.ghost.committed.get(seq).is_none_or(|t| t == tag)
        })
}

/// 4. Once the takeover is done, producer 1 commits nothing past what the
///    takeover fenced and carried over.
pub fn single_writer(_: &Trilog, s: &State) -> bool {
    s.ghost
        .takeover_end
        .is_none_or(|end| s.ghost.reported[0] <= end)
}

/// 5. Every replica of a sealed segment holds its sealed prefix on disk,
///    and all of them the same entries.
pub fn sealed_complete(_: &Trilog, s: &State) -> bool {
    s.meta.segments.iter().all(|seg| {
        let Some(len) = seg.sealed_len else {
            return true;
        };
        let Some(&first) = kept(s, seg.id, &seg.replicas).next() else {
            return true;
        };
        (0..len).all(|off| {
            let tag = durable_tag(s, first, seg.id, off);
            tag.is_some()
                && kept(s, seg.id, &seg.replicas).all(|n| durable_tag(s, *n, seg.id, off) == tag)
        })
    })
}

/// 6. A producer stops because of another producer (fenced, or its
///    segment sealed by someone else) only if the record's epoch really is
///    newer than its own (and, for a fence, at least the epoch it names):
///    an unknown metadata outcome is never taken for a fence.
pub fn real_fence(_: &Trilog, s: &State) -> bool {
    !s.ghost.false_fence
}

/// 7. Sealed segments never shrink: the record never changes the length it
///    sealed a segment at, and a replica holds a seal only at the length
///    the record seals its segment at (seals are told after the CAS), with
///    exactly that many entries on disk (a damaged copy being healed
///    fills up under its seal). A seal from any sender below that, or a
///    second seal at another length, would break it.
pub fn sealed_never_shrinks(_: &Trilog, s: &State) -> bool {
    let record_kept = s.ghost.record_seals.iter().all(|(id, len)| {
        s.meta
            .segments
            .iter()
            .find(|g| g.id == *id)
            .is_none_or(|g| g.sealed_len == Some(*len))
    });
    // A copy being healed holds its seal with fewer entries on disk: the
    // seal stays, the copy fills up under it.
    let replicas_agree = s.nodes.iter().all(|n| {
        n.segs
            .iter()
            .enumerate()
            .all(|(id, g)| match g.rep.sealed_len() {
                None => true,
                Some(len) => {
                    s.ghost.record_seals.get(&(id as u64)) == Some(&len)
                        && (g.rep.durable_len() == len
                            || s.ghost.healing == Some((id as u64, n.id)))
                }
            })
    });
    record_kept && replicas_agree
}

/// 9. A replica a repair published (or a damaged copy its heal ended)
///    holds, from the moment it is published (healed) and as long as the
///    record lists it, the whole sealed prefix of its segment on disk, the
///    same entries as the segment's other replicas.
pub fn repaired_durable(_: &Trilog, s: &State) -> bool {
    s.ghost.repaired.iter().all(|(id, node)| {
        let Some(seg) = s.meta.segments.iter().find(|g| g.id == *id) else {
            return true;
        };
        if !seg.replicas.contains(node) {
            return true;
        }
        let Some(len) = seg.sealed_len else {
            return false;
        };
        let source = kept(s, seg.id, &seg.replicas).find(|n| *n != node);
        (0..len).all(|off| {
            let tag = durable_tag(s, *node, *id, off);
            tag.is_some() && source.is_none_or(|src| durable_tag(s, *src, *id, off) == tag)
        })
    })
}

/// A repair published a new replica.
pub fn repair_published(_: &Trilog, s: &State) -> bool {
    !s.ghost.repaired.is_empty()
}

/// A node swept a copy as an orphan.
pub fn copy_swept(_: &Trilog, s: &State) -> bool {
    s.ghost.swept
}

/// A producer left a replica for being slow, and carries on writing on
/// the next segment.
pub fn slow_replica_left(_: &Trilog, s: &State) -> bool {
    s.ghost.slow_left
        && s.p1
            .as_ref()
            .is_some_and(|w| w.m.segment().id > 0 && *w.m.phase() == Phase::Writing)
}

/// A damaged copy was healed by its node.
pub fn copy_healed(_: &Trilog, s: &State) -> bool {
    s.ghost.healed
}

/// 8. A trim deletes only what lies wholly below its point: every
///    segment the record lists as deleting is sealed and ends at or before
///    the trim point, the trim point is at most the end of the sealed
///    segments (past it lie entries the metadata does not know are
///    committed), and no replica of a segment still in the chain has
///    unlinked it.
pub fn trim_keeps_committed(_: &Trilog, s: &State) -> bool {
    let m = &s.meta;
    let deleting_below = m.deleting.iter().all(|g| {
        g.sealed_len
            .is_some_and(|len| g.first_seq + len <= m.trim_seq)
    });
    let chain_kept = m.segments.iter().all(|g| {
        g.replicas
            .iter()
            .all(|n| !s.nodes[*n as usize - 1].seg(g.id).gone)
    });
    deleting_below && m.trim_seq <= end_of_sealed(m) && chain_kept
}

/// 10. Every entry taken is committed, and every committed entry was read.
///     Judged at the terminal states of an acyclic configuration without a
///     takeover: there, no producer has anything left to do.
pub fn progress_reached(_: &Trilog, s: &State) -> bool {
    let writers = [s.p1.as_ref(), s.writer(TAKER)];
    writers.iter().flatten().all(|w| w.m.pending() == 0)
        && s.consumer.reads.len() == s.ghost.committed.len()
}

/// A producer was fenced by a takeover (and stopped).
pub fn producer_fenced(_: &Trilog, s: &State) -> bool {
    s.ghost.fenced
}

/// A machine told that a CAS's outcome was unknown carried on: producer 1
/// writes the segment its switch opened, or producer 2 finished its
/// takeover.
pub fn unknown_resolved(_: &Trilog, s: &State) -> bool {
    let switched =
        s.p1.as_ref()
            .is_some_and(|w| w.m.segment().id > 0 && *w.m.phase() == Phase::Writing);
    s.ghost.unknown_told && (switched || matches!(s.p2, Taker::Writing(_)))
}

/// A trim's segment was unlinked everywhere and dropped from the record
/// while producer 1 still writes the segment after it.
pub fn trim_dropped(_: &Trilog, s: &State) -> bool {
    s.ghost.dropped
        && s.p1
            .as_ref()
            .is_some_and(|w| w.m.segment().id > 0 && *w.m.phase() == Phase::Writing)
}

/// A trim's CAS applied while producer 1's switch CAS was pending (so
/// that one conflicted), and producer 1 carried on writing a segment its
/// switch opened.
pub fn trim_raced_switch(_: &Trilog, s: &State) -> bool {
    s.ghost.trim_raced
        && s.p1
            .as_ref()
            .is_some_and(|w| w.m.segment().id as usize > 1 && *w.m.phase() == Phase::Writing)
}

/// The consumer met the trim point: a trim moved it past the consumer's
/// position.
pub fn consumer_met_trim(_: &Trilog, s: &State) -> bool {
    s.ghost.met_trim
}

pub fn segment_sealed(_: &Trilog, s: &State) -> bool {
    s.meta.segments.iter().any(|seg| seg.sealed_len.is_some())
}

pub fn takeover_done(_: &Trilog, s: &State) -> bool {
    matches!(s.p2, Taker::Writing(_))
}

pub fn tail_carried_over(_: &Trilog, s: &State) -> bool {
    s.ghost.carried > 0
}

pub fn read_after_crash(_: &Trilog, s: &State) -> bool {
    s.ghost.read_after_crash
}

/// Producer 1 made a lost connection again and had every entry it took
/// committed without leaving its first segment.
pub fn resent_after_reconnect(m: &Trilog, s: &State) -> bool {
    let taken = u64::from(m.cfg.p1_entries);
    s.ghost.reconnected
        && s.ghost.reported[0] == taken
        && s.p1.as_ref().is_some_and(|w| w.m.segment().id == 0)
}

/// A takeover whose tail write failed placed the next segment elsewhere
/// and then published it.
pub fn tail_replaced(_: &Trilog, s: &State) -> bool {
    s.ghost.tail_replaced && matches!(s.p2, Taker::Writing(_))
}

/// A rogue seal reached a replica of a segment the record seals, and the
/// replica still holds the sealed prefix.
/// A replica took the record's seal below the watermark it knew.
pub fn learnt_below_watermark(_: &Trilog, s: &State) -> bool {
    s.ghost.learnt_below_watermark
}

pub fn rogue_seal_refused(_: &Trilog, s: &State) -> bool {
    s.ghost.rogue_sealed
        && s.meta
            .segments
            .iter()
            .any(|g| g.sealed_len.is_some_and(|l| l > 0))
}

pub const COMMIT_DURABILITY: &str = "CommitDurability";
pub const READ_COMMITTED: &str = "ReadCommitted";
pub const LOG_ORDER: &str = "LogOrder";
pub const SINGLE_WRITER: &str = "SingleWriter";
pub const SEALED_COMPLETE: &str = "SealedComplete";
pub const REAL_FENCE: &str = "RealFence";
pub const SEALED_NEVER_SHRINKS: &str = "SealedNeverShrinks";
pub const REPAIRED_DURABLE: &str = "RepairedDurable";
pub const PROGRESS: &str = "Progress";
pub const TRIM_KEEPS_COMMITTED: &str = "TrimKeepsCommitted";

/// The safety invariant called `name`.
pub fn invariant(name: &'static str) -> Property<Trilog> {
    let f = match name {
        COMMIT_DURABILITY => commit_durability,
        READ_COMMITTED => read_committed,
        LOG_ORDER => log_order,
        SINGLE_WRITER => single_writer,
        SEALED_COMPLETE => sealed_complete,
        REAL_FENCE => real_fence,
        SEALED_NEVER_SHRINKS => sealed_never_shrinks,
        REPAIRED_DURABLE => repaired_durable,
        TRIM_KEEPS_COMMITTED => trim_keeps_committed,
        _ => panic!("no invariant {name}"),
    };
    Property::always(name, f)
}

pub const INVARIANTS: [&str; 9] = [
    COMMIT_DURABILITY,
    READ_COMMITTED,
    LOG_ORDER,
    SINGLE_WRITER,
    SEALED_COMPLETE,
    REAL_FENCE,
    SEALED_NEVER_SHRINKS,
    REPAIRED_DURABLE,
    TRIM_KEEPS_COMMITTED,
];

pub fn progress() -> Property<Trilog> {
    Property::eventually(PROGRESS, progress_reached)
}

pub const SEGMENT_SEALED: &str = "SegmentSealed";
pub const TAKEOVER_DONE: &str = "TakeoverDone";
pub const TAIL_CARRIED_OVER: &str = "TailCarriedOver";
pub const READ_AFTER_CRASH: &str = "ReadAfterCrash";
pub const TAIL_REPLACED: &str = "TailReplaced";
pub const PRODUCER_FENCED: &str = "ProducerFenced";
pub const UNKNOWN_RESOLVED: &str = "UnknownResolved";
pub const RESENT_AFTER_RECONNECT: &str = "ResentAfterReconnect";
pub const ROGUE_SEAL_REFUSED: &str = "RogueSealRefused";
pub const REPAIR_PUBLISHED: &str = "RepairPublished";
pub const TRIM_DROPPED: &str = "TrimDropped";
pub const TRIM_RACED_SWITCH: &str = "TrimRacedSwitch";
pub const CONSUMER_MET_TRIM: &str = "ConsumerMetTrim";
pub const COPY_HEALED: &str = "CopyHealed";
pub const COPY_SWEPT: &str = "CopySwept";
pub const LEARNT_BELOW_WATERMARK: &str = "LearntBelowWatermark";
pub const SLOW_REPLICA_LEFT: &str = "SlowReplicaLeft";

/// The discovery called `name`: a state the model must reach.
pub fn discovery(name: &'static str) -> Property<Trilog> {
    let f = match name {
        SEGMENT_SEALED => segment_sealed,
        TAKEOVER_DONE => takeover_done,
        TAIL_CARRIED_OVER => tail_carried_over,
        READ_AFTER_CRASH => read_after_crash,
        TAIL_REPLACED => tail_replaced,
        PRODUCER_FENCED => producer_fenced,
        UNKNOWN_RESOLVED => unknown_resolved,
        RESENT_AFTER_RECONNECT => resent_after_reconnect,
        ROGUE_SEAL_REFUSED => rogue_seal_refused,
        REPAIR_PUBLISHED => repair_published,
        TRIM_DROPPED => trim_dropped,
        TRIM_RACED_SWITCH => trim_raced_switch,
        CONSUMER_MET_TRIM => consumer_met_trim,
        COPY_HEALED => copy_healed,
        COPY_SWEPT => copy_swept,
        LEARNT_BELOW_WATERMARK => learnt_below_watermark,
        SLOW_REPLICA_LEFT => slow_replica_left,
        _ => panic!("no discovery {name}"),
    };
    Property::sometimes(name, f)
}
