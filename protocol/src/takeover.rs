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
//! 4. The driver places the next segment S' (id from
//!    [`crate::metadata::next_segment_id`]) and the machine writes the tail
//!    to every replica of S' *before* S' is in the metadata, and waits
//!    until every replica has it durably. A replica that fails is replaced
//!    by another node and the tail written again.
//! 5. Only then does the driver seal S at W and publish S' in one CAS, and
//!    a producer at the new epoch continues S' after the tail
//!    ([`Takeover::finish`]), counting the tail as committed: it is durable
//!    on every replica already (`Producer::new` with `held`).
//!
//! Step 4 comes before step 5 because of a counterexample of the model
//! check: with the tail written after the CAS, a new producer that
//! crashed between the CAS and the tail's commit left entries the old
//! producer had reported committed in no segment of the log (S was sealed
//! below them and S' did not hold them), and no later takeover could find
//! them. Now every committed entry is at every moment on every replica of
//! the segment the metadata places it in.
//!
//! With no answer at all the log waits: the entries may be committed and
//! nothing else holds them.

use trilog_wire::message::Entry;
use trilog_wire::meta::SegmentMeta;

use crate::metadata::next_segment_id;
use crate::mutant::{self, Mutant};
use crate::producer::OpenSegment;
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
    /// Choose the replicas of the next segment among the live nodes,
    /// leaving out `exclude` (nodes that failed to take the tail), and hand
    /// them to [`Takeover::placed`].
    PlaceNext { exclude: Vec<NodeId> },
    /// Append the whole tail ([`Takeover::tail`]) at offset 0 of `segment`
    /// (not yet in the metadata) on replica `replica` (node `node`), at the
    /// takeover's epoch with seqs from `first_seq` and commit watermark 0,
    /// and hand the acks to [`Takeover::handle_tail_ack`] (an error or a
    /// timeout to [`Takeover::handle_tail_write_failure`]).
    WriteTail {
        replica: usize,
        node: NodeId,
        segment: u64,
        first_seq: u64,
    },
    /// Seal `segment` at `seal_len` and append the next segment on
    /// `replicas` (which hold the tail durably) by one CAS, then call
    /// [`Takeover::finish`].
    SealAndOpen {
        segment: u64,
        seal_len: u64,
        replicas: Vec<NodeId>,
    },
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
    /// Waiting for the driver to place the next segment.
    Placing {
        seal_len: u64,
    },
    /// Writing the tail to the next segment's replicas.
    WritingTail {
        seal_len: u64,
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
    /// The next segment, once placed.
    next: Option<OpenSegment>,
    /// Per replica of `next`, the durable length it acknowledged.
    next_durable: Vec<u64>,
    /// Nodes that failed to take the tail: never placed again.
    exclude: Vec<NodeId>,
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
            next: None,
            next_durable: Vec::new(),
            exclude: Vec::new(),
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

    /// The entries carried over, in seq order from the seal point.
    pub fn tail(&self) -> &[Entry] {
        &self.tail
    }

    /// The id the next segment gets: the one the sealing CAS will create.
    pub fn next_id(&self) -> u64 {
        next_segment_id(&self.segment, self.epoch)
    }

    /// The next segment, once placed.
    pub fn next(&self) -> Option<&OpenSegment> {
        self.next.as_ref()
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
            // MUTANT SealAtLongest: the longest answering replica's length.
            None if mutant::active(Mutant::SealAtLongest) => {
                match answered().map(|(_, a)| a.durable_len).max() {
                    Some(len) => len,
                    None => return Vec::new(),
                }
            }
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
            return self.place(seal_len);
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
        // The seal stays at the watermark: the tail past it may not be on
        // every replica of S, so it is written again rather than kept in S.
        self.place(seal_len)
    }

    /// Asks for the next segment's replicas.
    fn place(&mut self, seal_len: u64) -> Vec<TakeoverAction> {
        if mutant::active(Mutant::NoTailCopy) {
            // MUTANT NoTailCopy: the tail past the seal is dropped.
            self.tail.clear();
        }
        self.phase = TakeoverPhase::Placing { seal_len };
        self.next = None;
        self.next_durable.clear();
        vec![TakeoverAction::PlaceNext {
            exclude: self.exclude.clone(),
        }]
    }

    /// The driver chose `replicas` for the next segment: write the tail
    /// there (or, with no tail, seal at once).
    pub fn placed(&mut self, replicas: Vec<NodeId>) -> Vec<TakeoverAction> {
        let TakeoverPhase::Placing { seal_len } = self.phase else {
            return Vec::new();
        };
        assert!(!replicas.is_empty(), "a segment has replicas");
        assert!(
            replicas.iter().all(|n| !self.exclude.contains(n)),
            "a node that failed to take the tail is not placed again"
        );
        let next = OpenSegment {
            id: self.next_id(),
            first_seq: self.segment.first_seq + seal_len,
            replicas,
        };
        self.next_durable = vec![0; next.replicas.len()];
        let writes = next
            .replicas
            .iter()
            .enumerate()
            .map(|(replica, node)| TakeoverAction::WriteTail {
                replica,
                node: *node,
                segment: next.id,
                first_seq: next.first_seq,
            })
            .collect();
        self.next = Some(next);
        if self.tail.is_empty() {
            return self.seal(seal_len);
        }
        self.phase = TakeoverPhase::WritingTail { seal_len };
        writes
    }

    fn seal(&mut self, seal_len: u64) -> Vec<TakeoverAction> {
        let Some(next) = &self.next else {
            panic!("sealing before the next segment is placed");
        };
        self.phase = TakeoverPhase::Sealing { seal_len };
        vec![TakeoverAction::SealAndOpen {
            segment: self.segment.id,
            seal_len,
            replicas: next.replicas.clone(),
        }]
    }

    /// Node `node` acknowledged `durable_len` entries of `segment`. Acks of
    /// nodes or segments other than the placed ones are ignored.
    pub fn handle_tail_ack(
        &mut self,
        node: NodeId,
        segment: u64,
        durable_len: u64,
    ) -> Vec<TakeoverAction> {
        let TakeoverPhase::WritingTail { seal_len } = self.phase else {
            return Vec::new();
        };
        let Some(next) = &self.next else {
            return Vec::new();
        };
        if segment != next.id {
            return Vec::new();
        }
        let Some(i) = next.replicas.iter().position(|n| *n == node) else {
            return Vec::new();
        };
        self.next_durable[i] = self.next_durable[i].max(durable_len);
        let len = self.tail.len() as u64;
        let durable = if mutant::active(Mutant::SealBeforeTailDurable) {
            // MUTANT SealBeforeTailDurable: one replica holding the tail
            // is taken for all of them.
            self.next_durable.iter().any(|d| *d >= len)
        } else {
            self.next_durable.iter().all(|d| *d >= len)
        };
        if durable {
            return self.seal(seal_len);
        }
        Vec::new()
    }

    /// Writing the tail to node `node` failed (an error, a refusal or a
    /// timeout): place the next segment again without it. What the node
    /// may hold of the segment is never read: the node is not among the
    /// replicas the CAS publishes.
    pub fn handle_tail_write_failure(&mut self, node: NodeId, segment: u64) -> Vec<TakeoverAction> {
        let TakeoverPhase::WritingTail { seal_len } = self.phase else {
            return Vec::new();
        };
        let placed = self
            .next
            .as_ref()
            .is_some_and(|n| n.id == segment && n.replicas.contains(&node));
        if !placed {
            return Vec::new();
        }
        self.exclude.push(node);
        self.place(seal_len)
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

    /// The CAS sealed the segment and published the next one: returns
    /// the next segment and the entries the new producer starts with (the
    /// tail, already durable on every replica), in seq order from the seal.
    pub fn finish(&mut self) -> (OpenSegment, Vec<Entry>) {
        assert!(
            matches!(self.phase, TakeoverPhase::Sealing { .. }),
            "finish before the seal"
        );
        let Some(next) = self.next.take() else {
            panic!("sealed without a next segment");
        };
        self.phase = TakeoverPhase::Done;
        (next, std::mem::take(&mut self.tail))
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

    fn ans(durable_len: u64, watermark: u64, sealed_len: Option<u64>) -> FenceAnswer {
        FenceAnswer {
            durable_len,
            watermark,
            sealed_len,
        }
    }

    #[test]
    fn one_answer_suffices_and_the_longest_tail_is_copied() {
        let (mut t, fences) = Takeover::start(9, 2, seg());
        assert_eq!(fences.len(), 3);
        let out = t.handle_fence_answer(1, ans(5, 3, None));
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
        assert!(t.handle_fence_answer(0, ans(6, 4, None)).is_empty());
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
        assert_eq!(out, vec![TakeoverAction::PlaceNext { exclude: vec![] }]);
        assert_eq!(t.tail(), &[e(3), e(4)]);
    }

    /// Runs `t` (which asked for a placement) through placing on `nodes`
    /// and every replica acknowledging the tail; returns the CAS asked for.
    fn write_tail(t: &mut Takeover, nodes: &[u64]) -> Vec<TakeoverAction> {
        let writes = t.placed(nodes.to_vec());
        assert_eq!(writes.len(), nodes.len());
        let len = t.tail().len() as u64;
        let id = t.next_id();
        let mut out = Vec::new();
        for n in nodes {
            assert!(out.is_empty(), "sealed before every replica has the tail");
            out = t.handle_tail_ack(*n, id, len);
        }
        out
    }

    #[test]
    fn the_tail_is_durable_on_every_new_replica_before_the_seal() {
        let (mut t, _) = Takeover::start(9, 2, seg());
        let _ = t.handle_fence_answer(0, ans(5, 3, None));
        let _ = t.handle_tail(3, vec![e(3), e(4)]);
        // Segment 3 was created at epoch 1: epoch 2 skips no id.
        assert_eq!(t.next_id(), 4);
        let writes = t.placed(vec![4, 5, 6]);
        assert_eq!(
            writes[1],
            TakeoverAction::WriteTail {
                replica: 1,
                node: 5,
                segment: 4,
                first_seq: 103
            }
        );
        assert!(t.handle_tail_ack(4, 4, 2).is_empty());
        assert!(t.handle_tail_ack(5, 4, 1).is_empty(), "a short ack");
        assert!(t.handle_tail_ack(9, 4, 2).is_empty(), "not a replica");
        assert!(t.handle_tail_ack(5, 7, 2).is_empty(), "another segment");
        assert!(t.handle_tail_ack(5, 4, 2).is_empty());
        assert_eq!(
            t.handle_tail_ack(6, 4, 2),
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 3,
                replicas: vec![4, 5, 6]
            }]
        );
        let (next, tail) = t.finish();
        assert_eq!((next.id, next.first_seq), (4, 103));
        assert_eq!(tail, vec![e(3), e(4)]);
    }

    #[test]
    fn a_node_that_fails_to_take_the_tail_is_replaced() {
        let (mut t, _) = Takeover::start(9, 4, seg());
        let _ = t.handle_fence_answer(2, ans(2, 1, None));
        let _ = t.handle_tail(1, vec![e(1)]);
        // Epoch 4 follows a segment of epoch 1: ids 4 and 5 belong to
        // takeovers at epochs 2 and 3 that may have written them.
        assert_eq!(t.next_id(), 6);
        let _ = t.placed(vec![4, 5, 6]);
        assert!(t.handle_tail_ack(4, 6, 1).is_empty());
        assert_eq!(
            t.handle_tail_write_failure(5, 6),
            vec![TakeoverAction::PlaceNext { exclude: vec![5] }]
        );
        assert!(
            t.handle_tail_ack(6, 6, 1).is_empty(),
            "acks of the abandoned placement count for nothing"
        );
        let out = write_tail(&mut t, &[4, 6, 7]);
        assert_eq!(
            out,
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 1,
                replicas: vec![4, 6, 7]
            }]
        );
    }

    #[test]
    fn a_failed_tail_read_moves_to_another_replica() {
        let (mut t, _) = Takeover::start(9, 2, seg());
        let _ = t.handle_fence_answer(0, ans(4, 2, None));
        let _ = t.handle_fence_answer(2, ans(3, 2, None));
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
        let out = t.handle_fence_answer(2, ans(4, 4, None));
        assert_eq!(out, vec![TakeoverAction::PlaceNext { exclude: vec![] }]);
        assert_eq!(
            t.placed(vec![1, 2, 3]),
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 4,
                replicas: vec![1, 2, 3]
            }]
        );
        assert!(t.finish().1.is_empty());
        let (mut t, _) = Takeover::start(9, 2, seg());
        // A replica holding a seal at 2 (past its watermark of 1): no tail.
        let _ = t.handle_fence_answer(0, ans(4, 1, Some(2)));
        assert_eq!(
            t.placed(vec![1, 2, 3]),
            vec![TakeoverAction::SealAndOpen {
                segment: 3,
                seal_len: 2,
                replicas: vec![1, 2, 3]
            }]
        );
    }
}
