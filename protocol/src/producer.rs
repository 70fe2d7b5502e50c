//! The producer: the single writer of a log at one epoch.
//!
//! It sends every entry of the open segment to all of the segment's
//! replicas at once, keeps up to `window` appends in flight per replica
//! (pipelining, no stop-and-wait), and reports entries committed, in seq
//! order, once every replica acknowledged them as durable. The commit
//! watermark rides on later appends, or goes alone when the producer has
//! nothing more to send, so replicas learn what they may serve to readers.
//!
//! When a replica fails (error or timeout) the producer freezes the commit
//! watermark W of the segment and asks its driver to seal the segment at W
//! and open a new one on other nodes; it then sends every entry past W to
//! the new segment with the same seqs. A refusal that shows a newer epoch
//! (fenced, sealed by someone else) ends the producer: what it had not seen
//! committed has an unknown outcome.

use std::collections::VecDeque;

use trilog_wire::message::Entry;

use crate::acks::AckTracker;
use crate::mutant::{self, Mutant};
use crate::replica::Refusal;
use crate::NodeId;

/// Tuning of a producer. All of it is a limit, so none of it changes what
/// is committed, only how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerConfig {
    /// Appends in flight per replica.
    pub window: usize,
    /// Entries in one append.
    pub batch_entries_max: u32,
    /// Payload bytes in one append (one entry may exceed it alone).
    pub batch_bytes_max: u32,
    /// An append unanswered this long fails its replica.
    pub ack_timeout_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            window: 8,
            batch_entries_max: 1024,
            batch_bytes_max: 1024 * 1024,
            ack_timeout_ms: 2_000,
        }
    }
}

/// The segment a producer writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenSegment {
    pub id: u64,
    pub first_seq: u64,
    pub replicas: Vec<NodeId>,
}

/// Where the producer is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Writing,
    /// Waiting for the driver to seal `segment` at `seal_len` and open the
    /// next segment.
    Switching {
        segment: u64,
        seal_len: u64,
    },
    /// Waiting for every entry to commit, then for the seal.
    Closing,
    Closed,
    /// A newer epoch owns the log.
    Fenced {
        by_epoch: u64,
    },
}

/// What the driver must do. The order of a returned list matters:
/// `Committed` before sends, so completions are never held up by IO.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[must_use]
pub enum Action {
    /// Entries with seq below `through` are committed.
    Committed { through: u64 },
    /// Send `Append` with entries `[first_offset, first_offset + count)` of
    /// `segment` (see [`Producer::entries`]) to replica `replica`.
    Append {
        replica: usize,
        node: NodeId,
        segment: u64,
        first_seq: u64,
        first_offset: u64,
        count: u32,
        commit: u64,
    },
    /// Send the commit watermark alone.
    Watermark {
        replica: usize,
        node: NodeId,
        segment: u64,
        commit: u64,
    },
    /// Seal `segment` at `seal_len` and open the next segment on healthy
    /// nodes other than `exclude`, by one metadata CAS; then call
    /// [`Producer::handle_switched`] (or [`Producer::handle_fenced`]).
    SwitchSegment {
        segment: u64,
        seal_len: u64,
        exclude: Vec<NodeId>,
    },
    /// Every entry is committed: seal `segment` at `len` by CAS, then call
    /// [`Producer::handle_closed`].
    SealForClose { segment: u64, len: u64 },
    /// Tell a replica of a sealed segment (best effort).
    Seal {
        node: NodeId,
        segment: u64,
        len: u64,
    },
    /// A newer producer owns the log. Entries below `committed` are
    /// committed; the outcome of the others is unknown.
    Fenced { by_epoch: u64, committed: u64 },
}

/// Why an entry could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefused {
    #[error("the producer is closing or closed")]
    Closed,
    #[error("the log was taken over by epoch {by_epoch}")]
    Fenced { by_epoch: u64 },
}

/// The producer state machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Producer {
    log_id: u64,
    epoch: u64,
    cfg: ProducerConfig,
    segment: OpenSegment,
    acks: AckTracker,
    /// Entries not committed yet; the front has seq `committed`.
    entries: VecDeque<Entry>,
    committed: u64,
    /// Per replica, the last commit watermark it was told.
    commit_told: Vec<u64>,
    phase: Phase,
    /// A close was asked: it survives a segment switch.
    closing: bool,
}

impl Producer {
    /// A producer of `log_id` at `epoch` writing `segment`, whose first
    /// `held` entries are already durable on every replica (a takeover's
    /// tail, written before the segment was published; 0 for a new
    /// segment). They count as committed; the replicas learn so from the
    /// watermark the producer sends.
    pub fn new(
        log_id: u64,
        epoch: u64,
        segment: OpenSegment,
        held: u64,
        cfg: ProducerConfig,
    ) -> Producer {
        assert!(
            cfg.window > 0 && cfg.batch_entries_max > 0,
            "limits must allow progress"
        );
        assert!(!segment.replicas.is_empty(), "a segment has replicas");
        let n = segment.replicas.len();
        Producer {
            log_id,
            epoch,
            cfg,
            committed: segment.first_seq + held,
            acks: AckTracker::new(n, held),
            commit_told: vec![0; n],
            segment,
            entries: VecDeque::new(),
            phase: Phase::Writing,
            closing: false,
        }
    }

    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn segment(&self) -> &OpenSegment {
        &self.segment
    }

    /// Every seq below this is committed.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The seq the next appended entry gets.
    pub fn next_seq(&self) -> u64 {
        self.committed + self.entries.len() as u64
    }

    /// Entries taken but not committed.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// Takes one entry; returns its seq. It is sent by a later
    /// [`poll`](Self::poll).
    pub fn append(&mut self, entry: Entry) -> Result<u64, AppendRefused> {
        match self.phase {
            Phase::Writing | Phase::Switching { .. } if !self.closing => {}
            Phase::Writing | Phase::Switching { .. } | Phase::Closing | Phase::Closed => {
                return Err(AppendRefused::Closed)
            }
            Phase::Fenced { by_epoch } => return Err(AppendRefused::Fenced { by_epoch }),
        }
        let seq = self.next_seq();
        self.entries.push_back(entry);
        Ok(seq)
    }

    /// The entries `[first_offset, first_offset + count)` of the open
    /// segment, for an `Append` action.
    pub fn entries(&self, first_offset: u64, count: u32) -> impl Iterator<Item = &Entry> {
        let first_seq = self.segment.first_seq + first_offset;
        assert!(first_seq >= self.committed, "committed entries are gone");
        let start = (first_seq - self.committed) as usize;
        assert!(
            start + count as usize <= self.entries.len(),
            "entries past the end"
        );
        self.entries.range(start..start + count as usize)
    }

    /// Offset in the open segment of the entry after the last one taken.
    fn end_offset(&self) -> u64 {
        self.next_seq() - self.segment.first_seq
    }

    /// The sends that the window allows now.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.fill_windows(now_ms, &mut out);
        out
    }

    fn fill_windows(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Writing | Phase::Closing) {
            return;
        }
        let end = self.end_offset();
        let commit = self.acks.commit();
        for i in 0..self.segment.replicas.len() {
            loop {
                let r = self.acks.replica(i);
                if r.sent >= end || r.in_flight.len() >= self.cfg.window {
                    break;
                }
                let first_offset = r.sent;
                let count = self.batch_len(first_offset, end);
                self.acks
                    .on_sent(i, first_offset + u64::from(count), now_ms);
                self.commit_told[i] = commit;
                out.push(Action::Append {
                    replica: i,
                    node: self.segment.replicas[i],
                    segment: self.segment.id,
                    first_seq: self.segment.first_seq,
                    first_offset,
                    count,
                    commit,
                });
            }
            let r = self.acks.replica(i);
            // MUTANT WatermarkNotSent: an idle producer stays silent.
            let idle_watermark = !mutant::active(Mutant::WatermarkNotSent);
            if idle_watermark && r.sent == end && commit > self.commit_told[i] {
                self.commit_told[i] = commit;
                out.push(Action::Watermark {
                    replica: i,
                    node: self.segment.replicas[i],
                    segment: self.segment.id,
                    commit,
                });
            }
        }
    }

    /// How many entries from `first_offset` go in one append.
    fn batch_len(&self, first_offset: u64, end: u64) -> u32 {
        let first_seq = self.segment.first_seq + first_offset;
        let start = (first_seq - self.committed) as usize;
        let max = (end - first_offset).min(u64::from(self.cfg.batch_entries_max)) as usize;
        let mut bytes = 0u64;
        let mut count = 0u32;
        for e in self.entries.range(start..start + max) {
            bytes += e.payload.len() as u64;
            if count > 0 && bytes > u64::from(self.cfg.batch_bytes_max) {
                break;
            }
            count += 1;
        }
        assert!(count > 0, "a batch holds at least one entry");
        count
    }

    /// Replica `replica` of `segment` acknowledged `durable_len` entries.
    pub fn handle_ack(
        &mut self,
        replica: usize,
        segment: u64,
        durable_len: u64,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        // Acks of an older segment, or of this one after the switch froze
        // its watermark, must not commit anything: the entries past the
        // frozen watermark are being resent to the next segment.
        if segment != self.segment.id || !matches!(self.phase, Phase::Writing | Phase::Closing) {
            return out;
        }
        if let Some(commit) = self.acks.on_ack(replica, durable_len) {
            self.advance_commit(commit, &mut out);
        }
        self.fill_windows(now_ms, &mut out);
        self.maybe_finish_close(&mut out);
        out
    }

    fn advance_commit(&mut self, commit_offset: u64, out: &mut Vec<Action>) {
        let through = self.segment.first_seq + commit_offset;
        assert!(through >= self.committed, "commit never moves back");
        let n = (through - self.committed) as usize;
        assert!(
            n <= self.entries.len(),
            "committed entries that were never taken"
        );
        self.entries.drain(..n);
        self.committed = through;
        out.push(Action::Committed { through });
    }

    fn maybe_finish_close(&mut self, out: &mut Vec<Action>) {
        if self.phase == Phase::Closing && self.entries.is_empty() {
            out.push(Action::SealForClose {
                segment: self.segment.id,
                len: self.acks.commit(),
            });
        }
    }

    /// Replica `replica` of `segment` refused an append.
    pub fn handle_refusal(
        &mut self,
        replica: usize,
        segment: u64,
        refusal: Refusal,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if segment != self.segment.id || !matches!(self.phase, Phase::Writing | Phase::Closing) {
            return out;
        }
        match refusal {
            Refusal::Gap { len } => {
                // The replica lost appends in flight (a reconnect): resend.
                self.acks.rewind(replica, len);
                self.fill_windows(now_ms, &mut out);
            }
            Refusal::Fenced { epoch } => self.fence(epoch, &mut out),
            // Someone else sealed our open segment: only a takeover does.
            Refusal::Sealed { .. } => self.fence(self.epoch + 1, &mut out),
            Refusal::SealConflict { .. } => self.fail_replica(replica, &mut out),
        }
        out
    }

    fn fence(&mut self, by_epoch: u64, out: &mut Vec<Action>) {
        self.phase = Phase::Fenced { by_epoch };
        out.push(Action::Fenced {
            by_epoch,
            committed: self.committed,
        });
    }

    /// Replica `replica` of `segment` failed (connection error).
    pub fn handle_replica_failure(&mut self, replica: usize, segment: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if segment == self.segment.id && matches!(self.phase, Phase::Writing | Phase::Closing) {
            self.fail_replica(replica, &mut out);
        }
        out
    }

    fn fail_replica(&mut self, replica: usize, out: &mut Vec<Action>) {
        let seal_len = self.acks.commit();
        assert_eq!(
            self.segment.first_seq + seal_len,
            self.committed,
            "seal exactly at the commit"
        );
        self.phase = Phase::Switching {
            segment: self.segment.id,
            seal_len,
        };
        out.push(Action::SwitchSegment {
            segment: self.segment.id,
            seal_len,
            exclude: vec![self.segment.replicas[replica]],
        });
    }

    /// Time passed: fails a replica whose oldest append is overdue.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(self.phase, Phase::Writing | Phase::Closing) {
            return out;
        }
        for i in 0..self.segment.replicas.len() {
            if let Some(sent_at) = self.acks.oldest_in_flight_ms(i) {
                if now_ms.saturating_sub(sent_at) >= self.cfg.ack_timeout_ms {
                    self.fail_replica(i, &mut out);
                    break;
                }
            }
        }
        out
    }

    /// The driver sealed the old segment and opened `next`, by CAS.
    pub fn handle_switched(&mut self, next: OpenSegment, now_ms: u64) -> Vec<Action> {
        let Phase::Switching { segment, seal_len } = self.phase else {
            panic!("switched while not switching: {:?}", self.phase);
        };
        assert_eq!(
            next.first_seq, self.committed,
            "the next segment starts at the seal"
        );
        assert!(next.id > segment, "segments only move forward");
        let mut out: Vec<Action> = self
            .segment
            .replicas
            .iter()
            .map(|node| Action::Seal {
                node: *node,
                segment,
                len: seal_len,
            })
            .collect();
        let n = next.replicas.len();
        self.segment = next;
        self.acks = AckTracker::new(n, 0);
        self.commit_told = vec![0; n];
        self.phase = if self.closing {
            Phase::Closing
        } else {
            Phase::Writing
        };
        self.fill_windows(now_ms, &mut out);
        self.maybe_finish_close(&mut out);
        out
    }

    /// A metadata CAS showed that epoch `by_epoch` owns the log now.
    pub fn handle_fenced(&mut self, by_epoch: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(self.phase, Phase::Fenced { .. }) {
            self.fence(by_epoch, &mut out);
        }
        out
    }

    /// Stop taking entries; seal the segment once every entry is committed.
    pub fn close(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.closing = true;
        if self.phase == Phase::Writing {
            self.phase = Phase::Closing;
            self.maybe_finish_close(&mut out);
        }
        out
    }

    /// The driver sealed the segment for the close.
    pub fn handle_closed(&mut self) -> Vec<Action> {
        assert_eq!(self.phase, Phase::Closing, "closed while not closing");
        assert!(self.entries.is_empty(), "closed with entries pending");
        self.phase = Phase::Closed;
        let len = self.acks.commit();
        self.segment
            .replicas
            .iter()
            .map(|node| Action::Seal {
                node: *node,
                segment: self.segment.id,
                len,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(window: usize, batch: u32) -> ProducerConfig {
        ProducerConfig {
            window,
            batch_entries_max: batch,
            batch_bytes_max: 1 << 20,
            ack_timeout_ms: 100,
        }
    }

    fn producer(window: usize, batch: u32) -> Producer {
        let seg = OpenSegment {
            id: 0,
            first_seq: 0,
            replicas: vec![10, 11, 12],
        };
        Producer::new(1, 1, seg, 0, cfg(window, batch))
    }

    fn entry(i: u8) -> Entry {
        Entry::new(vec![i])
    }

    fn appends(actions: &[Action]) -> Vec<(usize, u64, u32)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Append {
                    replica,
                    first_offset,
                    count,
                    ..
                } => Some((*replica, *first_offset, *count)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_held_tail_counts_as_committed_and_is_not_sent_again() {
        let seg = OpenSegment {
            id: 4,
            first_seq: 100,
            replicas: vec![10, 11, 12],
        };
        let mut p = Producer::new(1, 2, seg, 3, cfg(2, 1));
        assert_eq!(p.committed(), 103);
        let out = p.poll(0);
        assert!(appends(&out).is_empty(), "{out:?}");
        let told = out
            .iter()
            .filter(|a| matches!(a, Action::Watermark { commit: 3, .. }))
            .count();
        assert_eq!(told, 3, "every replica learns the tail is committed");
        assert_eq!(p.append(entry(7)), Ok(103));
        assert_eq!(appends(&p.poll(0))[0], (0, 3, 1));
    }

    #[test]
    fn pipelines_up_to_the_window_and_commits_in_order() {
        let mut p = producer(2, 1);
        for i in 0..3 {
            assert_eq!(p.append(entry(i)), Ok(u64::from(i)));
        }
        let sent = appends(&p.poll(0));
        // Window 2, batch 1: two appends per replica.
        assert_eq!(sent.len(), 6);
        assert!(sent.iter().all(|(_, off, n)| *n == 1 && *off < 2));
        assert!(p
            .handle_ack(0, 0, 1, 1)
            .iter()
            .all(|a| !matches!(a, Action::Committed { .. })));
        let _ = p.handle_ack(1, 0, 1, 1);
        let out = p.handle_ack(2, 0, 2, 1);
        assert!(out.contains(&Action::Committed { through: 1 }), "{out:?}");
        assert_eq!(p.committed(), 1);
        // Replica 2 freed a slot and got entry 2.
        assert!(appends(&out).contains(&(2, 2, 1)));
    }

    #[test]
    fn batches_when_the_window_is_full_and_sends_the_watermark_when_idle() {
        let mut p = producer(1, 100);
        let _ = p.append(entry(0));
        assert_eq!(appends(&p.poll(0)).len(), 3);
        for i in 1..5 {
            let _ = p.append(entry(i));
        }
        assert!(p.poll(0).is_empty(), "window full");
        let mut out = Vec::new();
        for r in 0..3 {
            out.extend(p.handle_ack(r, 0, 1, 1));
        }
        let sent = appends(&out);
        assert_eq!(
            sent,
            vec![(0, 1, 4), (1, 1, 4), (2, 1, 4)],
            "one batch of 4"
        );
        let mut out = Vec::new();
        for r in 0..3 {
            out.extend(p.handle_ack(r, 0, 5, 2));
        }
        assert!(out.contains(&Action::Committed { through: 5 }));
        let watermarks = out
            .iter()
            .filter(|a| matches!(a, Action::Watermark { commit: 5, .. }))
            .count();
        assert_eq!(watermarks, 3, "idle: the watermark goes alone");
    }

    #[test]
    fn timeout_switches_at_the_frozen_watermark_and_resends() {
        let mut p = producer(4, 1);
        for i in 0..3 {
            let _ = p.append(entry(i));
        }
        let _ = p.poll(0);
        for r in 0..3 {
            let _ = p.handle_ack(r, 0, 1, 5);
        }
        let _ = p.handle_ack(0, 0, 3, 5);
        let _ = p.handle_ack(1, 0, 3, 5);
        let out = p.tick(500);
        assert_eq!(
            out,
            vec![Action::SwitchSegment {
                segment: 0,
                seal_len: 1,
                exclude: vec![12]
            }]
        );
        // A late ack of the old segment commits nothing.
        assert!(p.handle_ack(2, 0, 3, 501).is_empty());
        let next = OpenSegment {
            id: 1,
            first_seq: 1,
            replicas: vec![10, 11, 13],
        };
        let out = p.handle_switched(next, 502);
        assert_eq!(
            out.iter()
                .filter(|a| matches!(
                    a,
                    Action::Seal {
                        segment: 0,
                        len: 1,
                        ..
                    }
                ))
                .count(),
            3
        );
        let sent = appends(&out);
        assert_eq!(
            sent.len(),
            6,
            "entries 1 and 2 go to the new segment: {sent:?}"
        );
        assert!(p.entries(0, 2).map(|e| e.payload[0]).eq([1u8, 2]));
        let mut committed = None;
        for r in 0..3 {
            for a in p.handle_ack(r, 1, 2, 503) {
                if let Action::Committed { through } = a {
                    committed = Some(through);
                }
            }
        }
        assert_eq!(committed, Some(3));
    }

    #[test]
    fn gap_rewinds_and_fence_ends_the_producer() {
        let mut p = producer(4, 1);
        for i in 0..3 {
            let _ = p.append(entry(i));
        }
        let _ = p.poll(0);
        let out = p.handle_refusal(1, 0, Refusal::Gap { len: 0 }, 1);
        assert_eq!(appends(&out), vec![(1, 0, 1), (1, 1, 1), (1, 2, 1)]);
        let out = p.handle_refusal(0, 0, Refusal::Fenced { epoch: 2 }, 1);
        assert_eq!(
            out,
            vec![Action::Fenced {
                by_epoch: 2,
                committed: 0
            }]
        );
        assert_eq!(
            p.append(entry(9)),
            Err(AppendRefused::Fenced { by_epoch: 2 })
        );
    }

    #[test]
    fn close_waits_for_commit_then_seals() {
        let mut p = producer(4, 8);
        let _ = p.append(entry(0));
        let _ = p.poll(0);
        assert!(p.close().is_empty(), "entry 0 not committed yet");
        assert_eq!(p.append(entry(1)), Err(AppendRefused::Closed));
        let _ = p.handle_ack(0, 0, 1, 1);
        let _ = p.handle_ack(1, 0, 1, 1);
        let out = p.handle_ack(2, 0, 1, 1);
        assert!(out.contains(&Action::SealForClose { segment: 0, len: 1 }));
        assert_eq!(p.handle_closed().len(), 3);
        assert_eq!(p.phase(), &Phase::Closed);
    }
}
