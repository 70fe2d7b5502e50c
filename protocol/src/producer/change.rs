//! The producer's metadata changes: the switch to a new segment and the
//! close's seal, each a round of read, decision, CAS and outcome
//! ([`crate::meta_call`]), retried after a pause until the patience runs
//! out.
//!
//! Only this producer changes the record at its epoch: a change of the
//! record at its epoch that seals its segment where it asked is its own,
//! whichever attempt applied it. That is how an unknown outcome is
//! resolved: read the record back; if the change is there, carry on from
//! it; if the record still shows the segment open, try again (both
//! attempts expect the same version, so at most one applies); if a newer
//! epoch shows, the log was taken over, truly.

use trilog_wire::meta::{LogMeta, SegmentMeta};

use super::{Action, Change, OpenSegment, Phase, Producer, StopReason};
use crate::acks::AckTracker;
use crate::actions::Actions;
use crate::meta_call::{CasAnswer, MetaRetry, RecordAnswer, Setback};
use crate::metadata::{seal_last, switch_segment};
use crate::mutant::{self, Mutant};
use crate::placement::choose_replicas;
use crate::NodeId;

/// What a record says about the change under way.
enum Verdict {
    /// The change is not there and may still be made.
    Open,
    /// The change is in the record (a switch: the next segment).
    Done(Option<SegmentMeta>),
    /// The producer must stop.
    Stop(StopReason),
}

impl Producer {
    /// Starts a switch or a seal (the phase says which) with a read; a
    /// read for the view that is out already is taken as this one.
    pub(super) fn start_change(
        &mut self,
        exclude: Vec<NodeId>,
        avoid: Vec<NodeId>,
        now_ms: u64,
    ) -> Actions<Action> {
        assert!(self.change.is_none(), "one metadata change at a time");
        let (retry, call) =
            MetaRetry::start(now_ms, self.cfg.meta_pause_ms, self.cfg.meta_patience_ms);
        self.change = Some(Change {
            retry,
            exclude,
            avoid,
            from_view: false,
        });
        if std::mem::take(&mut self.view_reading) {
            return Actions::new();
        }
        vec![Action::Meta(call)].into()
    }

    /// The answer to an [`Action::Meta`] read.
    pub fn handle_record(&mut self, answer: RecordAnswer, now_ms: u64) -> Actions<Action> {
        if let RecordAnswer::Read {
            version,
            record,
            alive,
        } = &answer
        {
            self.viewed(*version, record.as_ref(), alive, now_ms);
        }
        // A read for the view only; or stopped meanwhile (a replica's
        // refusal showed a newer epoch).
        self.view_reading = false;
        let Some(change) = &self.change else {
            return Actions::new();
        };
        assert!(change.retry.reading(), "a record answers a read");
        let RecordAnswer::Read {
            version,
            record,
            alive,
        } = answer
        else {
            return self.pause(now_ms, Setback::Unreachable);
        };
        match self.verdict(record.as_ref()) {
            Verdict::Stop(reason) => self.stop(reason),
            Verdict::Done(next) => self.done(next, now_ms),
            Verdict::Open => {
                let Some(record) = record else {
                    unreachable!("an absent record is a stop");
                };
                self.propose(version, &record, &alive, now_ms)
            }
        }
    }

    /// The answer to an [`Action::Meta`] CAS.
    pub fn handle_cas(&mut self, answer: CasAnswer, now_ms: u64) -> Actions<Action> {
        let Some(change) = &self.change else {
            return Actions::new();
        };
        let Some((_, proposed)) = change.retry.casing() else {
            panic!("a CAS answer without a CAS out");
        };
        let proposed_next = proposed.segments.last().cloned();
        let proposed = proposed.clone();
        let from_view = std::mem::take(&mut self.retry_change().from_view);
        match answer {
            CasAnswer::Applied { version } => {
                self.record_seen(version, Some(&proposed));
                self.done(proposed_next, now_ms)
            }
            CasAnswer::Conflict { version, record } => {
                self.record_seen(version, record.as_ref());
                match self.verdict(record.as_ref()) {
                    Verdict::Stop(reason) => self.stop(reason),
                    Verdict::Done(next) => self.done(next, now_ms),
                    // An old view, not contention: read it now.
                    Verdict::Open if from_view => vec![Action::Meta(self.retry().read())].into(),
                    Verdict::Open => self.pause(now_ms, Setback::Conflict),
                }
            }
            // MUTANT UnknownCasIsFence: the old driver's made-up fence.
            CasAnswer::Unknown if mutant::active(Mutant::UnknownCasIsFence) => {
                let by_epoch = self.epoch + 1;
                self.stop(StopReason::Fenced { by_epoch })
            }
            // Applied or not: the record says.
            CasAnswer::Unknown => vec![Action::Meta(self.retry().read())].into(),
            CasAnswer::Unavailable => self.pause(now_ms, Setback::Unreachable),
        }
    }

    fn retry(&mut self) -> &mut MetaRetry {
        &mut self.retry_change().retry
    }

    fn retry_change(&mut self) -> &mut Change {
        match &mut self.change {
            Some(change) => change,
            None => unreachable!("no metadata change under way"),
        }
    }

    fn pause(&mut self, now_ms: u64, setback: Setback) -> Actions<Action> {
        self.retry().pause(now_ms, setback);
        Actions::new()
    }

    /// What `record` says about the switch or seal under way.
    fn verdict(&self, record: Option<&LogMeta>) -> Verdict {
        let Some(record) = record else {
            return Verdict::Stop(StopReason::LogDeleted);
        };
        if record.epoch > self.epoch {
            return Verdict::Stop(StopReason::Fenced {
                by_epoch: record.epoch,
            });
        }
        let found = record.segments.iter().position(|s| s.id == self.segment.id);
        let Some(i) = found.filter(|_| record.epoch == self.epoch) else {
            return Verdict::Stop(StopReason::LogDeleted);
        };
        let (ours, after) = (&record.segments[i], &record.segments[i + 1..]);
        let sealed = |len| StopReason::SealedElsewhere {
            segment: ours.id,
            len,
        };
        match (self.phase.clone(), ours.sealed_len, after) {
            (_, None, []) => Verdict::Open,
            (Phase::Switching { seal_len, .. }, Some(len), [next])
                if len == seal_len && self.is_our_next(next) =>
            {
                Verdict::Done(Some(next.clone()))
            }
            (Phase::Sealing { len: ours_len, .. }, Some(len), []) if len == ours_len => {
                Verdict::Done(None)
            }
            (_, len, _) => Verdict::Stop(sealed(len)),
        }
    }

    /// Whether `next` is a segment this producer's switch created: open,
    /// at its epoch, starting at the seal.
    fn is_our_next(&self, next: &SegmentMeta) -> bool {
        next.sealed_len.is_none() && next.epoch == self.epoch && next.first_seq == self.committed
    }

    /// The record at `version` still has the segment open: place the next
    /// segment (a switch) and propose the change.
    fn propose(
        &mut self,
        version: u64,
        record: &LogMeta,
        alive: &[crate::placement::Candidate],
        now_ms: u64,
    ) -> Actions<Action> {
        let seed = self.cfg.seed.wrapping_add(self.placements);
        let Some(change) = &mut self.change else {
            unreachable!("proposing without a change");
        };
        let proposed = match self.phase {
            Phase::Switching { segment, seal_len } => {
                self.placements += 1;
                // Avoid the slow and benched nodes while enough others are
                // alive; never stop for want of them.
                let both: Vec<NodeId> = change
                    .exclude
                    .iter()
                    .chain(&change.avoid)
                    .copied()
                    .collect();
                let placed = choose_replicas(alive, &both, self.cfg.replicas, seed)
                    .or_else(|_| choose_replicas(alive, &change.exclude, self.cfg.replicas, seed));
                match placed {
                    Ok(replicas) => {
                        switch_segment(record, self.epoch, segment, seal_len, &replicas)
                    }
                    Err(e) => {
                        let setback = Setback::NoPlacement {
                            needed: e.needed,
                            available: e.available,
                        };
                        change.retry.pause(now_ms, setback);
                        return Actions::new();
                    }
                }
            }
            Phase::Sealing { segment, len } => seal_last(record, self.epoch, segment, len),
            _ => unreachable!("a change only while switching or sealing"),
        };
        // The verdict checked what these functions refuse (the epoch, the
        // open last segment), and a placement has replicas.
        let Ok(proposed) = proposed else {
            panic!("a change the verdict allowed was refused: {proposed:?}");
        };
        vec![Action::Meta(change.retry.propose(version, proposed))].into()
    }

    /// The change is in the record: a switch continues on `next` (the
    /// segment after the sealed one), a seal ends the producer.
    fn done(&mut self, next: Option<SegmentMeta>, now_ms: u64) -> Actions<Action> {
        self.change = None;
        match (self.phase.clone(), next) {
            (Phase::Switching { segment, seal_len }, Some(next)) => {
                self.switched(segment, seal_len, next, now_ms)
            }
            (Phase::Sealing { segment, len }, _) => {
                let mut out = self.tell_seal(segment, len);
                out.extend(self.stop(StopReason::Closed));
                out
            }
            (phase, next) => panic!("change done in {phase:?} with {next:?}"),
        }
    }

    /// Best effort: the replicas of the open segment learn its seal.
    fn tell_seal(&self, segment: u64, len: u64) -> Actions<Action> {
        self.segment
            .replicas
            .iter()
            .map(|node| Action::Seal {
                node: *node,
                segment,
                len,
            })
            .collect::<Vec<_>>()
            .into()
    }

    /// The old segment is sealed at `seal_len` and `next` is open: send
    /// every entry past the seal there, with the same seqs.
    fn switched(
        &mut self,
        segment: u64,
        seal_len: u64,
        next: SegmentMeta,
        now_ms: u64,
    ) -> Actions<Action> {
        assert_eq!(
            next.first_seq, self.committed,
            "the next segment starts at the seal"
        );
        assert!(next.id > segment, "segments only move forward");
        let mut out = self.tell_seal(segment, seal_len);
        let n = next.replicas.len();
        self.segment = OpenSegment {
            id: next.id,
            first_seq: next.first_seq,
            replicas: next.replicas,
        };
        self.acks = AckTracker::new(n, 0);
        self.struck = None;
        self.commit_told = vec![0; n];
        self.told_at_ms = vec![0; n];
        self.links = vec![super::Link::NEW; n];
        self.phase = if self.closing {
            Phase::Closing
        } else {
            Phase::Writing
        };
        out.push(Action::Connect {
            segment: self.segment.id,
            replicas: self.segment.replicas.clone(),
        });
        let mut sends = Actions::new();
        self.fill_windows(now_ms, &mut sends);
        out.extend(sends);
        self.maybe_seal_for_close(now_ms, &mut out);
        out
    }
}
