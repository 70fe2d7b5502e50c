//! The changes a producer makes to a log's metadata record.
//!
//! Each function takes the record as read (with its version, held by the
//! caller) and returns the record to write by compare-and-swap, or why the
//! change is not allowed. The conditions (docs/protocol.md): only the owner
//! epoch changes the chain, only the last segment may be
//! open, and a sealed segment's length never changes.

pub use trilog_wire::meta::{LogMeta, NodeMode, NodeStatus, SegmentMeta};

use crate::NodeId;

/// Why a metadata change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaRefusal {
    #[error("log {log_id} is owned by epoch {current}, not {mine}")]
    NotOwner {
        log_id: u64,
        mine: u64,
        current: u64,
    },
    #[error("log {log_id} has open segment {segment}: its producer may be alive; take it over (`trilog takeover --log {log_id}`)")]
    OpenSegment { log_id: u64, segment: u64 },
    #[error("log {log_id}: segment {segment} is not the open last segment")]
    NotOpenLast { log_id: u64, segment: u64 },
    #[error("log {log_id}: no replicas given for the new segment")]
    NoReplicas { log_id: u64 },
    #[error("log {log_id} is deleted")]
    LogDeleted { log_id: u64 },
}

/// Where a seq lies in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// In segment `index` (of `segments`) at `offset`; `sealed_len` is that
    /// segment's length if it is sealed.
    At {
        index: usize,
        offset: u64,
        sealed_len: Option<u64>,
    },
    /// Past the end of a log whose last segment is sealed (or that has no
    /// segment yet): a new segment will hold it.
    PastEnd,
    /// Before the trim point: gone.
    Trimmed,
}

fn new_segment(id: u64, first_seq: u64, epoch: u64, replicas: &[NodeId]) -> SegmentMeta {
    SegmentMeta {
        id,
        replicas: replicas.to_vec(),
        first_seq,
        epoch,
        sealed_len: None,
    }
}

/// The id of the segment that a producer at `epoch` creates after `last`.
///
/// Ids grow along the chain, and no two segments that producers of
/// different epochs may ever write share an id: a takeover writes the
/// tail it carries into its new segment *before* the CAS that publishes it
/// (see `takeover.rs`), so two racing takeovers (or a takeover that lost
/// the race and a later one) each write a segment that may never be
/// published, on nodes that may overlap. A producer at `epoch` creates
/// `last.id + (epoch - last.epoch)` when it follows an older epoch's
/// segment, and `last.id + 1` when it follows its own (a switch; one
/// producer owns an epoch). Every producer that follows `last` has a
/// distinct epoch, so their ids differ; and the winner, whose epoch is the
/// highest of them, numbers everything after it above all the losers.
pub fn next_segment_id(last: &SegmentMeta, epoch: u64) -> u64 {
    assert!(
        epoch >= last.epoch,
        "a segment is created at its predecessor's epoch or later"
    );
    last.id + (epoch - last.epoch).max(1)
}

/// The next segment's id and first seq after the (sealed) last one, for a
/// producer at `epoch`.
fn next_position(record: &LogMeta, epoch: u64) -> (u64, u64) {
    match record.segments.last() {
        None => (0, record.trim_seq),
        Some(last) => {
            let len = last.sealed_len.unwrap_or(0);
            (next_segment_id(last, epoch), last.first_seq + len)
        }
    }
}

/// Opens a log for writing by a new producer: creates it (epoch 1), or, if
/// its last segment is sealed, takes the next epoch and appends a new open
/// segment on `replicas`. A log whose last segment is open may still have a
/// live producer: that needs a takeover, which fences it first.
pub fn open_for_write(
    current: Option<&LogMeta>,
    log_id: u64,
    replicas: &[NodeId],
) -> Result<LogMeta, MetaRefusal> {
    if replicas.is_empty() {
        return Err(MetaRefusal::NoReplicas { log_id });
    }
    let Some(record) = current else {
        return Ok(LogMeta {
            log_id,
            epoch: 1,
            trim_seq: 0,
            segments: vec![new_segment(0, 0, 1, replicas)],
            deleting: Vec::new(),
            deleted: false,
        });
    };
    assert_eq!(record.log_id, log_id, "record of another log");
    if record.deleted {
        return Err(MetaRefusal::LogDeleted { log_id });
    }
    if let Some(last) = record.segments.last() {
        if last.sealed_len.is_none() {
            return Err(MetaRefusal::OpenSegment {
                log_id,
                segment: last.id,
            });
        }
    }
    let epoch = record.epoch + 1;
    let (id, first_seq) = next_position(record, epoch);
    let mut next = record.clone();
    next.epoch = epoch;
    next.segments
        .push(new_segment(id, first_seq, epoch, replicas));
    Ok(next)
}

fn open_last(
    record: &mut LogMeta,
    epoch: u64,
    segment: u64,
) -> Result<&mut SegmentMeta, MetaRefusal> {
    let log_id = record.log_id;
    if record.epoch != epoch {
        return Err(MetaRefusal::NotOwner {
            log_id,
            mine: epoch,
            current: record.epoch,
        });
    }
    match record.segments.last_mut() {
        Some(last) if last.id == segment && last.sealed_len.is_none() => Ok(last),
        _ => Err(MetaRefusal::NotOpenLast { log_id, segment }),
    }
}

/// Seals the open last segment at `len` and appends a new open segment on
/// `replicas` starting right after it (a segment switch).
pub fn switch_segment(
    record: &LogMeta,
    epoch: u64,
    segment: u64,
    len: u64,
    replicas: &[NodeId],
) -> Result<LogMeta, MetaRefusal> {
    if replicas.is_empty() {
        return Err(MetaRefusal::NoReplicas {
            log_id: record.log_id,
        });
    }
    let mut next = record.clone();
    open_last(&mut next, epoch, segment)?.sealed_len = Some(len);
    let (id, first_seq) = next_position(&next, epoch);
    next.segments
        .push(new_segment(id, first_seq, epoch, replicas));
    Ok(next)
}

/// The first step of a takeover: the next epoch, nothing else changed.
/// Every later CAS of the old producer fails its epoch condition.
pub fn bump_epoch(record: &LogMeta) -> LogMeta {
    let mut next = record.clone();
    next.epoch += 1;
    next
}

/// Seals the open last segment at `len` (a producer closing cleanly).
pub fn seal_last(
    record: &LogMeta,
    epoch: u64,
    segment: u64,
    len: u64,
) -> Result<LogMeta, MetaRefusal> {
    let mut next = record.clone();
    open_last(&mut next, epoch, segment)?.sealed_len = Some(len);
    Ok(next)
}

/// Finds `seq` in the chain of segments.
pub fn locate(record: &LogMeta, seq: u64) -> Location {
    if seq < record.trim_seq || record.deleted {
        return Location::Trimmed;
    }
    for (index, s) in record.segments.iter().enumerate() {
        if seq < s.first_seq {
            // Segments before the trim point may be gone from the record.
            return Location::Trimmed;
        }
        let offset = seq - s.first_seq;
        match s.sealed_len {
            Some(len) if offset >= len => continue,
            sealed_len => {
                return Location::At {
                    index,
                    offset,
                    sealed_len,
                }
            }
        }
    }
    Location::PastEnd
}

/// The seq after the last entry of sealed segments: where the open segment
/// (or the next one) starts.
pub fn end_of_sealed(record: &LogMeta) -> u64 {
    next_position(record, record.epoch).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_switch_close_reopen() {
        let r = open_for_write(None, 7, &[1, 2, 3]).expect("create");
        assert_eq!(r.epoch, 1);
        assert_eq!(r.segments.len(), 1);
        assert_eq!(
            open_for_write(Some(&r), 7, &[1, 2, 3]),
            Err(MetaRefusal::OpenSegment {
                log_id: 7,
                segment: 0
            })
        );
        let r = switch_segment(&r, 1, 0, 10, &[2, 3, 4]).expect("switch");
        assert_eq!(r.segments[1].first_seq, 10);
        assert!(
            switch_segment(&r, 1, 0, 10, &[2, 3, 4]).is_err(),
            "segment 0 is sealed now"
        );
        assert!(matches!(
            seal_last(&r, 2, 1, 5),
            Err(MetaRefusal::NotOwner { .. })
        ));
        let r = seal_last(&r, 1, 1, 5).expect("close");
        let r = open_for_write(Some(&r), 7, &[5, 6, 7]).expect("reopen");
        assert_eq!(r.epoch, 2);
        assert_eq!(r.segments[2].first_seq, 15);
        assert_eq!(r.segments[2].epoch, 2);
    }

    #[test]
    fn racing_takeovers_never_share_a_segment_id() {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let r = switch_segment(&r, 1, 0, 4, &[1, 2, 3]).expect("switch");
        assert_eq!(r.segments[1].id, 1, "a switch takes the next id");
        // Takeovers at epochs 2 and 3 both follow open segment 1.
        let at2 = bump_epoch(&r);
        let at3 = bump_epoch(&at2);
        let lost = switch_segment(&at2, 2, 1, 0, &[1, 2, 3]).expect("epoch 2");
        let won = switch_segment(&at3, 3, 1, 0, &[1, 2, 3]).expect("epoch 3");
        assert_eq!(lost.segments[2].id, 2);
        assert_eq!(won.segments[2].id, 3);
        // The winner's own switches number above every loser.
        let won = switch_segment(&won, 3, 3, 0, &[1, 2, 3]).expect("switch");
        assert_eq!(won.segments[3].id, 4);
        let reopened = open_for_write(Some(&seal_last(&won, 3, 4, 0).expect("close")), 1, &[1])
            .expect("reopen");
        assert_eq!(reopened.segments[4].id, 5);
    }

    #[test]
    fn locate_walks_the_chain() {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let r = switch_segment(&r, 1, 0, 4, &[1, 2, 3]).expect("switch");
        let r = switch_segment(&r, 1, 1, 0, &[1, 2, 3]).expect("empty segment");
        assert_eq!(
            locate(&r, 0),
            Location::At {
                index: 0,
                offset: 0,
                sealed_len: Some(4)
            }
        );
        assert_eq!(
            locate(&r, 3),
            Location::At {
                index: 0,
                offset: 3,
                sealed_len: Some(4)
            }
        );
        assert_eq!(
            locate(&r, 4),
            Location::At {
                index: 2,
                offset: 0,
                sealed_len: None
            }
        );
        assert_eq!(
            locate(&r, 100),
            Location::At {
                index: 2,
                offset: 96,
                sealed_len: None
            }
        );
        let r = seal_last(&r, 1, 2, 2).expect("seal");
        assert_eq!(locate(&r, 6), Location::PastEnd);
        assert_eq!(end_of_sealed(&r), 6);
        let mut t = r.clone();
        t.trim_seq = 2;
        assert_eq!(locate(&t, 1), Location::Trimmed);
    }
}
