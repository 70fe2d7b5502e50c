//! Takeover: a new producer continues a log whose last segment is open,
//! while the old producer may be dead or only slow.
//!
//! 1. The driver bumps the log's epoch by CAS ([`crate::metadata::bump_epoch`]):
//!    from then on every CAS of the old producer fails.
//! 2. [`Takeover::start`] fences the open segment S on all its replicas.
//!    Each replica durably records the fence, refuses older appends from
//!    then on, waits until everything it accepted before is durable, and
//!    answers its durable length and known watermark.
//! 3. One answer suffices: a commit needs every replica, so once one is
//!    fenced the old producer commits nothing more in S. With answers from
//!    a set F, W = the maximum known watermark over F (every replica holds
//!    W entries), and the tail `[W, len_r)` of any answering replica r holds
//!    every entry the old producer ever committed. The machine asks for the
//!    tail of the longest answering replica.
//! 4. With the tail in hand, the driver seals S at W and opens S+1 in one
//!    CAS, and a producer at the new epoch writes the tail first, with the
//!    same seqs ([`Takeover::finish`]).
//!
//! With no answer at all the log waits: the entries may be committed and
//! nothing else holds them.

use trilog_wire::message::Entry;
use trilog_wire::meta::SegmentMeta;

use crate::NodeId;

/// A replica's answer to a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FenceAnswer {
    pub durable_len: u64,
    pub watermark: u64,
    /// Set if the replica already holds a seal of this segment.
    pub sealed_len: Option<u64>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[must_use]
pub enum TakeoverAction {
    /// Send `Fence{segment, epoch}` to replica `replica` (node `node`).
    Fence {
        replica: usize,
        node: NodeId,
        segment: u64,
        epoch: u64,
    },
    /// Read entries `[from, to)` of `segment` from `node` (limit `to`), and
    /// hand them to [`Takeover::handle_tail`].
    ReadTail {
        replica: usize,
        node: NodeId,
        segment: u64,
        from: u64,
        to: u64,
    },
    /// Seal `segment` at `seal_len` and open the next segment at the new
    /// epoch by one CAS, then call [`Takeover::finish`].
    SealAndOpen { segment: u64, seal_len: u64 },
}

/// Where the takeover is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TakeoverPhase {
    Fencing,
    /// Reading the tail `[seal_len, to)` from one replica.
    ReadingTail {
        replica: usize,
        seal_len: u64,
        to: u64,
    },
    /// Waiting for the CAS that seals at `seal_len`.
    Sealing {
        seal_len: u64,
    },
    Done,
}

/// The takeover of one open segment at a new epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Takeover {
    log_id: u64,
    epoch: u64,
    segment: SegmentMeta,
    answers: Vec<Option<FenceAnswer>>,
    /// Replicas whose tail read failed; not asked again.
    tail_failed: Vec<bool>,
    tail: Vec<Entry>,
    phase: TakeoverPhase,
}

impl Takeover {
    /// Starts the takeover of `segment` (the open last segment, as read
    /// after the epoch bump) at `epoch`. Returns the fences to send.
    pub fn start(log_id: u64, epoch: u64, segment: SegmentMeta) -> (Takeover, Vec<TakeoverAction>) {
        assert!(
            segment.sealed_len.is_none(),
            "only an open segment is taken over"
        );
        assert!(epoch > segment.epoch, "a takeover moves to a newer epoch");
        let n = segment.replicas.len();
        let t = Takeover {
            log_id,
            epoch,
            answers: vec![None; n],
            tail_failed: vec![false; n],
            tail: Vec::new(),
            phase: TakeoverPhase::Fencing,
            segment,
        };
        let actions = t.fences();
        (t, actions)
    }

    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn segment(&self) -> &SegmentMeta {
        &self.segment
    }

    pub fn phase(&self) -> &TakeoverPhase {
        &self.phase
    }

    /// The fences still unanswered (to resend after a timeout).
    pub fn fences(&self) -> Vec<TakeoverAction> {
        self.segment
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| self.answers[*i].is_none())
            .map(|(replica, node)| TakeoverAction::Fence {
                replica,
                node: *node,
                segment: self.segment.id,
                epoch: self.epoch,
            })
            .collect()
    }

    /// Replica `replica` answered the fence.
    pub fn handle_fence_answer(
        &mut self,
        replica: usize,
        answer: FenceAnswer,
    ) -> Vec<TakeoverAction> {
        if self.answers[replica].is_none() {
            self.answers[replica] = Some(answer);
        }
        match self.phase {
            TakeoverPhase::Fencing => self.plan_tail(),
            _ => Vec::new(),
        }
    }

    /// The seal point and the replica to copy the tail from, given the
    /// answers so far.
    fn plan_tail(&mut self) -> Vec<TakeoverAction> {
        let answered = || {
            self.answers
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| (i, a)))
        };
        // A replica that holds a seal of this segment already knows its
        // final length: the seal was at a commit watermark.
        let sealed = answered().find_map(|(_, a)| a.sealed_len);
        let seal_len = match sealed {
            Some(s) => s,
            None => match answered().map(|(_, a)| a.watermark).max() {
                Some(w) => w,
                None => return Vec::new(),
            },
        };
        let source = answered()
            .filter(|(i, a)| !self.tail_failed[*i] && a.durable_len >= seal_len)
            .max_by_key(|(_, a)| a.durable_len);
        let Some((replica, a)) = source else {
            return Vec::new();
        };
        let to = match sealed {
            Some(s) => s,
            None => a.durable_len,
        };
        if to == seal_len {
            self.phase = TakeoverPhase::Sealing { seal_len };
            return vec![TakeoverAction::SealAndOpen {
                segment: self.segment.id,
                seal_len,
            }];
        }
        self.phase = TakeoverPhase::ReadingTail {
            replica,
            seal_len,
            to,
        };
        vec![TakeoverAction::ReadTail {
            replica,
            node: self.segment.replicas[replica],
            segment: self.segment.id,
            from: seal_len,
            to,
        }]
    }

    /// The tail read returned `entries` from offset `from` on. A short
    /// read is fine: the driver calls again from where it ended.
    pub fn handle_tail(&mut self, from: u64, entries: Vec<Entry>) -> Vec<TakeoverAction> {
        let TakeoverPhase::ReadingTail {
            replica,
            seal_len,
            to,
        } = self.phase
        else {
            return Vec::new();
        };
        let expected = seal_len + self.tail.len() as u64;
        if from != expected {
            return Vec::new();
        }
        let room = (to - expected) as usize;
        self.tail.extend(entries.into_iter().take(room));
        let got = seal_len + self.tail.len() as u64;
        if got < to {
            return vec![TakeoverAction::ReadTail {
                replica,
                node: self.segment.replicas[replica],
                segment: self.segment.id,
                from: got,
                to,
            }];
        }
        // Every entry of the tail becomes the first of the next segment.
        // The seal stays at the watermark: the tail past it may never have
        // been committed, so it is written again rather than kept in S.
        self.phase = TakeoverPhase::Sealing { seal_len };
        vec![TakeoverAction::SealAndOpen {
            segment: self.segment.id,
            seal_len,
        }]
    }

    /// The tail read from replica `replica` failed: try another answering
    /// replica (or wait for more answers).
    pub fn handle_tail_failure(&mut self, replica: usize) -> Vec<TakeoverAction> {
        if !matches!(self.phase, TakeoverPhase::ReadingTail { replica: r, .. } if r == replica) {
            return Vec::new();
        }
        self.tail_failed[replica] = true;
        self.tail.clear();
        self.phase = TakeoverPhase::Fencing;
        self.plan_tail()
    }

    /// The CAS sealed the segment and opened the next one: returns the
    /// entries the new producer writes first, in seq order from the seal.
    pub fn finish(&mut self) -> Vec<Entry> {
        assert!(
            matches!(self.phase, TakeoverPhase::Sealing { .. }),
            "finish before the seal"
        );
        self.phase = TakeoverPhase::Done;
        std::mem::take(&mut self.tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg() -> SegmentMeta {
        SegmentMeta {
            id: 3,
            replicas: vec![1, 2, 3],
            first_seq: 100,
            epoch: 1,
            sealed_len: None,
        }
    }

    fn e(b: u8) -> Entry {
        Entry::new(vec![b])
    }

    #[test]
    fn one_answer_suffices_and_the_longest_tail_is_copied() {
        let (mut t, fences) = Takeover::start(9, 2, seg());
        assert_eq!(fences.len(), 3);
        let out = t.handle_fence_answer(
            1,
            FenceAnswer {
                durable_len: 5,
                watermark: 3,
                sealed_len: None,
            },
        );
        assert_eq!(
            out,
            vec![TakeoverAction::ReadTail {
                replica: 1,
                node: 2,
                segment: 3,
                from: 3,
                to: 5
            }]
        );
        // A later answer with a longer log does not restart the read.
        assert!(t
            .handle_fence_answer(
                0,
                FenceAnswer {
                    durable_len: 6,
                    watermark: 4,
                    sealed_len: None
                }
            )
            .is_empty());
        let out = t.handle_tail(3, vec![e(3)]);
        assert_eq!(
            out,
            vec![TakeoverAction::ReadTail {
                replica: 1,
                node: 2,
                segment: 3,
                from: 4,
                to: 5
            }]
        );
        let out = t.handle_tail(4, vec![e(4), e(99)]);
        assert_eq!(
            out,
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 3
            }]
        );
        assert_eq!(t.finish(), vec![e(3), e(4)]);
    }

    #[test]
    fn a_failed_tail_read_moves_to_another_replica() {
        let (mut t, _) = Takeover::start(9, 2, seg());
        let _ = t.handle_fence_answer(
            0,
            FenceAnswer {
                durable_len: 4,
                watermark: 2,
                sealed_len: None,
            },
        );
        let _ = t.handle_fence_answer(
            2,
            FenceAnswer {
                durable_len: 3,
                watermark: 2,
                sealed_len: None,
            },
        );
        let out = t.handle_tail_failure(0);
        assert_eq!(
            out,
            vec![TakeoverAction::ReadTail {
                replica: 2,
                node: 3,
                segment: 3,
                from: 2,
                to: 3
            }]
        );
    }

    #[test]
    fn nothing_past_the_watermark_seals_at_once_and_a_known_seal_wins() {
        let (mut t, _) = Takeover::start(9, 2, seg());
        let out = t.handle_fence_answer(
            2,
            FenceAnswer {
                durable_len: 4,
                watermark: 4,
                sealed_len: None,
            },
        );
        assert_eq!(
            out,
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 4
            }]
        );
        assert!(t.finish().is_empty());
        let (mut t, _) = Takeover::start(9, 2, seg());
        let out = t.handle_fence_answer(
            0,
            FenceAnswer {
                durable_len: 2,
                watermark: 1,
                sealed_len: Some(2),
            },
        );
        assert_eq!(
            out,
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 2
            }]
        );
    }
}
