//! The takeover's data path: the fences and their answers, the seal point,
//! the tail read from one answering replica, and the tail written to every
//! replica of the next segment in appends that fit a frame.

use trilog_wire::message::Entry;

use super::{FenceAnswer, TailWrite, Takeover, TakeoverAction, TakeoverPhase, TakeoverStop};
use crate::actions::Actions;
use crate::meta_call::MetaRetry;
use crate::mutant::{self, Mutant};
use crate::producer::OpenSegment;
use crate::NodeId;

impl Takeover {
    /// The epoch is bumped: fence the segment taken over.
    pub(super) fn begin_fencing(&mut self, now_ms: u64) -> Actions<TakeoverAction> {
        let n = self.taken().replicas.len();
        self.answers = vec![None; n];
        self.tail_failed = vec![false; n];
        self.phase = TakeoverPhase::Fencing;
        self.fencing_since_ms = now_ms;
        self.fences_sent_ms = now_ms;
        self.fences()
    }

    /// The fences still unanswered.
    fn fences(&self) -> Actions<TakeoverAction> {
        let segment = self.taken();
        segment
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| self.answers[*i].is_none())
            .map(|(replica, node)| TakeoverAction::Fence {
                replica,
                node: *node,
                segment: segment.id,
                epoch: self.epoch,
            })
            .collect::<Vec<_>>()
            .into()
    }

    /// Whether some replica of the segment taken over has not answered
    /// its fence.
    pub fn fences_unanswered(&self) -> bool {
        self.answers.iter().any(Option::is_none)
    }

    /// The fence timer: resend the unanswered fences, or give up.
    pub(super) fn fence_timeout(&mut self, now_ms: u64) -> Actions<TakeoverAction> {
        let waited_ms = now_ms.saturating_sub(self.fencing_since_ms);
        if waited_ms >= self.cfg.fence_wait_ms_max {
            let segment = self.taken().id;
            return self.stop(TakeoverStop::NoFenceAnswer { segment, waited_ms });
        }
        if now_ms < self.fences_sent_ms.saturating_add(self.cfg.fence_resend_ms) {
            return Actions::new();
        }
        self.fences_sent_ms = now_ms;
        self.fences()
    }

    /// Replica `replica` answered the fence.
    pub fn handle_fence_answer(
        &mut self,
        replica: usize,
        answer: FenceAnswer,
        now_ms: u64,
    ) -> Actions<TakeoverAction> {
        if self.ended() || self.segment.is_none() {
            return Actions::new();
        }
        if answer.epoch > self.epoch {
            return self.stop(TakeoverStop::Superseded {
                by_epoch: answer.epoch,
            });
        }
        if self.answers[replica].is_none() {
            self.answers[replica] = Some(answer);
        }
        match self.phase {
            TakeoverPhase::Fencing => self.plan_tail(now_ms),
            _ => Actions::new(),
        }
    }

    /// The seal point and the replica to copy the tail from, given the
    /// answers so far.
    fn plan_tail(&mut self, now_ms: u64) -> Actions<TakeoverAction> {
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
                    None => return Actions::new(),
                }
            }
            None => match answered().map(|(_, a)| a.watermark).max() {
                Some(w) => w,
                None => return Actions::new(),
            },
        };
        let source = answered()
            .filter(|(i, a)| !self.tail_failed[*i] && a.durable_len >= seal_len)
            .max_by_key(|(_, a)| a.durable_len);
        let Some((replica, a)) = source else {
            return Actions::new();
        };
        let to = sealed.unwrap_or(a.durable_len);
        if to == seal_len {
            return self.place(seal_len, now_ms);
        }
        self.phase = TakeoverPhase::ReadingTail {
            replica,
            seal_len,
            to,
        };
        self.read_tail(replica, seal_len, to, now_ms)
    }

    fn read_tail(
        &mut self,
        replica: usize,
        from: u64,
        to: u64,
        now_ms: u64,
    ) -> Actions<TakeoverAction> {
        self.read_sent_ms = now_ms;
        let segment = self.taken();
        vec![TakeoverAction::ReadTail {
            replica,
            node: segment.replicas[replica],
            segment: segment.id,
            from,
            to,
        }]
        .into()
    }

    /// Replica `replica` served `entries` from offset `from` of the tail
    /// read. A short read is fine: the machine reads on from where it
    /// ended. An answer to a read abandoned since is ignored; one that
    /// serves nothing, or not from where it was asked, fails the read.
    pub fn handle_tail(
        &mut self,
        replica: usize,
        from: u64,
        entries: Vec<Entry>,
        now_ms: u64,
    ) -> Actions<TakeoverAction> {
        let TakeoverPhase::ReadingTail {
            replica: reading,
            seal_len,
            to,
        } = self.phase
        else {
            return Actions::new();
        };
        if reading != replica {
            return Actions::new();
        }
        let expected = seal_len + self.tail.len() as u64;
        if from != expected || entries.is_empty() {
            return self.handle_tail_failure(replica, now_ms);
        }
        let room = (to - expected) as usize;
        self.tail.extend(entries.into_iter().take(room));
        let got = seal_len + self.tail.len() as u64;
        if got < to {
            return self.read_tail(replica, got, to, now_ms);
        }
        // Every entry of the tail becomes the first of the next segment.
        // The seal stays at the watermark: the tail past it may not be on
        // every replica of S, so it is written again rather than kept in S.
        self.place(seal_len, now_ms)
    }

    /// The tail read from replica `replica` failed: try another answering
    /// replica (or wait for more answers).
    pub fn handle_tail_failure(&mut self, replica: usize, now_ms: u64) -> Actions<TakeoverAction> {
        if !matches!(self.phase, TakeoverPhase::ReadingTail { replica: r, .. } if r == replica) {
            return Actions::new();
        }
        self.tail_failed[replica] = true;
        self.tail.clear();
        self.phase = TakeoverPhase::Fencing;
        self.plan_tail(now_ms)
    }

    /// Asks for the alive nodes, to place the next segment.
    pub(super) fn place(&mut self, seal_len: u64, now_ms: u64) -> Actions<TakeoverAction> {
        if mutant::active(Mutant::NoTailCopy) {
            // MUTANT NoTailCopy: the tail past the seal is dropped.
            self.tail.clear();
        }
        self.phase = TakeoverPhase::Placing { seal_len };
        self.next = None;
        self.writes.clear();
        let p = &self.cfg.producer;
        let (retry, call) = MetaRetry::start(now_ms, p.meta_pause_ms, p.meta_patience_ms);
        self.retry = Some(retry);
        vec![TakeoverAction::Meta(call)].into()
    }

    /// The next segment goes on `replicas`: write the tail there (with no
    /// tail, the caller seals at once).
    pub(super) fn placed(&mut self, replicas: Vec<NodeId>, now_ms: u64) -> Actions<TakeoverAction> {
        let TakeoverPhase::Placing { seal_len } = self.phase else {
            unreachable!("placed while not placing");
        };
        assert!(!replicas.is_empty(), "a segment has replicas");
        assert!(
            replicas.iter().all(|n| !self.exclude.contains(n)),
            "a node that failed to take the tail is not placed again"
        );
        let Some(id) = self.next_id() else {
            unreachable!("placing before the epoch bump");
        };
        let next = OpenSegment {
            id,
            first_seq: self.taken().first_seq + seal_len,
            replicas,
        };
        self.writes = vec![
            TailWrite {
                sent: 0,
                in_flight: Vec::new(),
                durable: 0,
                progress_ms: now_ms,
            };
            next.replicas.len()
        ];
        self.next = Some(next);
        self.retry = None;
        self.phase = TakeoverPhase::WritingTail { seal_len };
        let mut out = Actions::new();
        for i in 0..self.writes.len() {
            out.extend(self.send_tail(i));
        }
        out
    }

    /// The appends of the tail that replica `i` of the next segment has
    /// room for: each within the producer's batch limits (so within a
    /// frame), at most `window` in flight.
    fn send_tail(&mut self, i: usize) -> Actions<TakeoverAction> {
        let Some(next) = &self.next else {
            unreachable!("tail writes go to a placed segment");
        };
        let p = &self.cfg.producer;
        let len = self.tail.len() as u64;
        let w = &mut self.writes[i];
        let mut out = Actions::new();
        while w.sent < len && w.in_flight.len() < p.window {
            let first = w.sent as usize;
            let mut count = 0usize;
            let mut bytes = 0u64;
            for e in &self.tail[first..] {
                bytes += e.payload.len() as u64;
                let full = count as u64 >= u64::from(p.batch_entries_max)
                    || bytes > u64::from(p.batch_bytes_max);
                if count > 0 && full {
                    break;
                }
                count += 1;
            }
            assert!(count > 0, "an append holds at least one entry");
            w.sent += count as u64;
            w.in_flight.push(w.sent);
            out.push(TakeoverAction::WriteTail {
                node: next.replicas[i],
                segment: next.id,
                epoch: self.epoch,
                first_seq: next.first_seq,
                first_offset: first as u64,
                count: count as u32,
            });
        }
        out
    }

    /// Node `node` acknowledged `durable_len` entries of `segment`. Acks of
    /// nodes or segments other than the placed ones are ignored.
    pub fn handle_tail_ack(
        &mut self,
        node: NodeId,
        segment: u64,
        durable_len: u64,
        now_ms: u64,
    ) -> Actions<TakeoverAction> {
        let TakeoverPhase::WritingTail { seal_len } = self.phase else {
            return Actions::new();
        };
        let Some(i) = self.placed_index(node, segment) else {
            return Actions::new();
        };
        let w = &mut self.writes[i];
        // An ack past what was sent would count entries the node never got.
        let durable_len = durable_len.min(w.sent);
        if durable_len > w.durable {
            w.durable = durable_len;
            w.progress_ms = now_ms;
        }
        w.in_flight.retain(|end| *end > durable_len);
        let mut out = self.send_tail(i);
        let len = self.tail.len() as u64;
        let durable = if mutant::active(Mutant::SealBeforeTailDurable) {
            // MUTANT SealBeforeTailDurable: one replica holding the tail
            // is taken for all of them.
            self.writes.iter().any(|w| w.durable >= len)
        } else {
            self.writes.iter().all(|w| w.durable >= len)
        };
        if durable {
            out.extend(self.seal(seal_len, now_ms));
        }
        out
    }

    fn placed_index(&self, node: NodeId, segment: u64) -> Option<usize> {
        let next = self.next.as_ref().filter(|n| n.id == segment)?;
        next.replicas.iter().position(|n| *n == node)
    }

    /// Writing the tail to node `node` failed (an error, a refusal): place
    /// the next segment again without it. What the node may hold of the
    /// segment is never read: the node is not among the replicas the CAS
    /// publishes.
    pub fn handle_tail_write_failure(
        &mut self,
        node: NodeId,
        segment: u64,
        now_ms: u64,
    ) -> Actions<TakeoverAction> {
        let TakeoverPhase::WritingTail { seal_len } = self.phase else {
            return Actions::new();
        };
        if self.placed_index(node, segment).is_none() {
            return Actions::new();
        }
        self.exclude.push(node);
        self.place(seal_len, now_ms)
    }

    /// The tail write timer: every new replica that made no progress for
    /// `tail_write_timeout_ms` is left out, and the segment placed again.
    pub(super) fn tail_write_timeout(&mut self, now_ms: u64) -> Actions<TakeoverAction> {
        let TakeoverPhase::WritingTail { seal_len } = self.phase else {
            return Actions::new();
        };
        let Some(next) = &self.next else {
            unreachable!("writing the tail to a placed segment");
        };
        let len = self.tail.len() as u64;
        let timeout = self.cfg.tail_write_timeout_ms;
        let stalled: Vec<NodeId> = next
            .replicas
            .iter()
            .zip(&self.writes)
            .filter(|(_, w)| w.durable < len && now_ms >= w.progress_ms.saturating_add(timeout))
            .map(|(node, _)| *node)
            .collect();
        if stalled.is_empty() {
            return Actions::new();
        }
        self.exclude.extend(stalled);
        self.place(seal_len, now_ms)
    }
}
