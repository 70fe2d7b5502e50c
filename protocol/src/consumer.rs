//! The consumer's cursor: a position (a seq, never an offset alone) and
//! the next read to make along the chain of segments.
//!
//! A read goes to one replica of the segment holding the position. An open
//! segment is read up to what that replica knows is committed; a sealed one
//! up to its sealed length, passed as the read's limit because a replica
//! that missed the seal may hold an abandoned tail past it. When a replica
//! fails, the cursor moves on to the next replica of the same segment, from
//! the same seq.
//!
//! A replica that answers `Damaged` (it does not hold the entry at the
//! position, though it should) is left at once for the next one, like a
//! failed one. If every replica of the segment answered `Damaged` at the
//! same seq, nothing can read it: the cursor says so ([`Step::Damaged`])
//! instead of going round them for ever.

use crate::metadata::{locate, Location, LogMeta};
use crate::trim::first_readable;
use crate::NodeId;

/// The next thing a consumer should do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Read `segment` from `from_offset` on `node`, never past `limit`.
    Read {
        segment: u64,
        node: NodeId,
        from_offset: u64,
        limit: u64,
    },
    /// The position is past every segment: wait for the metadata to change
    /// (a new segment) and ask again.
    WaitForMetadata,
    /// The position is before the trim point (or the log is deleted): the
    /// entries are gone; `first_readable` is the first seq still there.
    Trimmed { first_readable: u64, deleted: bool },
    /// Every replica of the segment holding `seq` answered that its copy
    /// of it is damaged or missing: it cannot be read from any.
    Damaged { seq: u64 },
}

/// Why entries returned by a replica were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("read answered from offset {got}, expected {expected}")]
    WrongOffset { expected: u64, got: u64 },
    #[error("read of segment {got}, expected {expected}")]
    WrongSegment { expected: u64, got: u64 },
    #[error("replica returned {count} entries past the limit {limit} of segment {segment}")]
    PastLimit {
        segment: u64,
        limit: u64,
        count: u64,
    },
}

/// A reader's position in one log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    next_seq: u64,
    /// Which replica of a segment to read from; moves on a failure.
    replica_turn: usize,
    /// The read in flight, if any: (segment, first_seq, from_offset, limit).
    pending: Option<(u64, u64, u64, u64)>,
    /// Replicas that answered `Damaged` at `next_seq`, in a row.
    damaged_here: usize,
}

impl Cursor {
    /// A cursor at `seq`; `replica_turn` spreads readers over replicas.
    pub fn new(seq: u64, replica_turn: usize) -> Cursor {
        Cursor {
            next_seq: seq,
            replica_turn,
            pending: None,
            damaged_here: 0,
        }
    }

    /// The seq of the next entry to be read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// What to do next, given the log's current record.
    pub fn next_step(&mut self, record: &LogMeta) -> Step {
        match locate(record, self.next_seq) {
            Location::Trimmed => Step::Trimmed {
                first_readable: first_readable(record),
                deleted: record.deleted,
            },
            Location::PastEnd => Step::WaitForMetadata,
            Location::At {
                index,
                offset,
                sealed_len,
            } => {
                let s = &record.segments[index];
                assert!(!s.replicas.is_empty(), "a segment has replicas");
                if self.damaged_here >= s.replicas.len() {
                    return Step::Damaged { seq: self.next_seq };
                }
                let node = s.replicas[self.replica_turn % s.replicas.len()];
                let limit = sealed_len.unwrap_or(u64::MAX);
                self.pending = Some((s.id, s.first_seq, offset, limit));
                Step::Read {
                    segment: s.id,
                    node,
                    from_offset: offset,
                    limit,
                }
            }
        }
    }

    /// The read made by the last [`Step::Read`] returned `count` entries
    /// from `from_offset` of `segment`. Returns the seq of the first.
    pub fn on_read(
        &mut self,
        segment: u64,
        from_offset: u64,
        count: u64,
    ) -> Result<u64, CursorError> {
        let Some((seg, first_seq, offset, limit)) = self.pending else {
            panic!("a read result without a read");
        };
        if segment != seg {
            return Err(CursorError::WrongSegment {
                expected: seg,
                got: segment,
            });
        }
        if from_offset != offset {
            return Err(CursorError::WrongOffset {
                expected: offset,
                got: from_offset,
            });
        }
        if from_offset.saturating_add(count) > limit {
            return Err(CursorError::PastLimit {
                segment,
                limit,
                count,
            });
        }
        let seq = first_seq + from_offset;
        assert_eq!(seq, self.next_seq, "reads start at the position");
        self.next_seq += count;
        self.pending = None;
        if count > 0 {
            self.damaged_here = 0;
        }
        Ok(seq)
    }

    /// The replica of the last read failed: use the next one.
    pub fn on_replica_failed(&mut self) {
        self.pending = None;
        self.replica_turn = self.replica_turn.wrapping_add(1);
    }

    /// The replica of the last read does not know the segment (`NotFound`).
    /// Of an open segment that is no failure: a replica creates its copy
    /// at the segment's first append, so a segment the record opened may
    /// not exist there yet (a tail that reaches a new segment before its
    /// first entry). The next read goes to the next replica (one that lost
    /// its copy must not hold the reader), and `true` says it is not to be
    /// counted as a failure. Of a sealed segment it is one (`false`): the
    /// caller fails the replica ([`Self::on_replica_failed`]).
    pub fn on_replica_missing(&mut self) -> bool {
        let Some((_, _, _, limit)) = self.pending else {
            panic!("a read result without a read");
        };
        if limit != u64::MAX {
            return false;
        }
        self.pending = None;
        self.replica_turn = self.replica_turn.wrapping_add(1);
        true
    }

    /// The replica of the last read answered that it does not hold the
    /// entries from `from_offset` on (damaged, or cut short): use the next
    /// one at once. Returns whether the answer was about the read made
    /// (an answer about another offset is not this cursor's).
    pub fn on_replica_damaged(&mut self, segment: u64, from_offset: u64) -> bool {
        let Some((seg, _, offset, _)) = self.pending else {
            panic!("a read result without a read");
        };
        // The replica refuses from its first missing entry, at or before
        // the read's offset.
        if segment != seg || from_offset > offset {
            return false;
        }
        self.damaged_here += 1;
        self.on_replica_failed();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{open_for_write, seal_last, switch_segment};

    #[test]
    fn a_missing_copy_of_an_open_segment_is_no_failure_of_a_sealed_one_is() {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let mut c = Cursor::new(0, 0);
        assert!(matches!(c.next_step(&r), Step::Read { node: 1, .. }));
        assert!(c.on_replica_missing(), "open: not yet created there");
        assert!(
            matches!(c.next_step(&r), Step::Read { node: 2, .. }),
            "the next read goes to the next replica"
        );
        let mut c = Cursor::new(0, 0);
        let sealed = crate::metadata::LogMeta {
            segments: vec![crate::metadata::SegmentMeta {
                sealed_len: Some(5),
                ..r.segments[0].clone()
            }],
            ..r
        };
        assert!(matches!(c.next_step(&sealed), Step::Read { limit: 5, .. }));
        assert!(!c.on_replica_missing(), "sealed: a failure");
    }

    #[test]
    fn follows_the_chain_and_fails_over() {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let mut c = Cursor::new(0, 0);
        assert_eq!(
            c.next_step(&r),
            Step::Read {
                segment: 0,
                node: 1,
                from_offset: 0,
                limit: u64::MAX
            }
        );
        assert_eq!(c.on_read(0, 0, 2), Ok(0));
        let _ = c.next_step(&r);
        c.on_replica_failed();
        assert!(matches!(
            c.next_step(&r),
            Step::Read {
                node: 2,
                from_offset: 2,
                ..
            }
        ));
        let r = switch_segment(&r, 1, 0, 3, &[4, 5, 6]).expect("switch");
        assert!(matches!(
            c.next_step(&r),
            Step::Read {
                segment: 0,
                limit: 3,
                ..
            }
        ));
        assert_eq!(
            c.on_read(0, 2, 2),
            Err(CursorError::PastLimit {
                segment: 0,
                limit: 3,
                count: 2
            })
        );
        assert_eq!(c.on_read(0, 2, 1), Ok(2));
        assert!(matches!(
            c.next_step(&r),
            Step::Read {
                segment: 1,
                from_offset: 0,
                node: 5,
                ..
            }
        ));
        assert_eq!(c.on_read(1, 0, 1), Ok(3));
        let r = seal_last(&r, 1, 1, 1).expect("seal");
        assert_eq!(c.next_step(&r), Step::WaitForMetadata);
    }

    #[test]
    fn a_damaged_replica_is_left_at_once_and_all_damaged_is_an_error() {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let r = seal_last(&r, 1, 0, 10).expect("seal");
        let mut c = Cursor::new(0, 0);
        let _ = c.next_step(&r);
        assert_eq!(c.on_read(0, 0, 4), Ok(0));
        // Node 1 is damaged from offset 4: the next read goes to node 2,
        // from the same seq.
        let _ = c.next_step(&r);
        assert!(!c.on_replica_damaged(0, 5), "an answer about another read");
        assert!(c.on_replica_damaged(0, 4));
        assert!(matches!(
            c.next_step(&r),
            Step::Read {
                node: 2,
                from_offset: 4,
                ..
            }
        ));
        assert_eq!(c.on_read(0, 4, 2), Ok(4));
        // Reading on resets the count: two damaged replicas of three at seq
        // 6, then a good one.
        let _ = c.next_step(&r);
        assert!(c.on_replica_damaged(0, 6));
        let _ = c.next_step(&r);
        assert!(c.on_replica_damaged(0, 3));
        assert!(matches!(c.next_step(&r), Step::Read { node: 1, .. }));
        // The third is damaged too: no replica can give seq 6.
        assert!(c.on_replica_damaged(0, 6));
        assert_eq!(c.next_step(&r), Step::Damaged { seq: 6 });
        assert_eq!(c.next_seq(), 6);
    }

    #[test]
    fn refuses_answers_to_another_read() {
        let r = open_for_write(None, 1, &[1, 2, 3]).expect("create");
        let mut c = Cursor::new(5, 0);
        let _ = c.next_step(&r);
        assert_eq!(
            c.on_read(0, 4, 1),
            Err(CursorError::WrongOffset {
                expected: 5,
                got: 4
            })
        );
        assert_eq!(
            c.on_read(1, 5, 1),
            Err(CursorError::WrongSegment {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(c.on_read(0, 5, 1), Ok(5));
    }
}
