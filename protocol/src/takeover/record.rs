//! The takeover's metadata: the epoch bump, the read of the alive nodes
//! for a placement, and the CAS that seals the segment taken over and
//! publishes the next one, each with the outcomes of
//! [`crate::meta_call`].
//!
//! An unknown outcome is resolved by reading the record back. For the
//! sealing CAS the record tells: only this takeover changes the record at
//! its epoch, so the segment sealed at the seal point and followed by the
//! very segment placed is its own change. For the bump it cannot tell (a
//! rival's bump to the same epoch looks the same), so it bumps again from
//! what it reads: an epoch skipped costs nothing.

use trilog_wire::meta::LogMeta;

use super::{Takeover, TakeoverAction, TakeoverPhase, TakeoverStop};
use crate::actions::Actions;
use crate::meta_call::{CasAnswer, MetaRetry, RecordAnswer, Setback};
use crate::metadata::{bump_epoch, switch_segment};
use crate::placement::choose_replicas;

/// What a record says about the takeover's segment, after the bump.
enum Verdict {
    /// Still open and last, at the takeover's epoch.
    Open,
    /// Sealed by this takeover's CAS.
    Sealed,
    Stop(TakeoverStop),
}

impl Takeover {
    fn retry(&mut self) -> &mut MetaRetry {
        match &mut self.retry {
            Some(retry) => retry,
            None => unreachable!("no metadata change under way"),
        }
    }

    fn pause(&mut self, now_ms: u64, setback: Setback) -> Actions<TakeoverAction> {
        self.retry().pause(now_ms, setback);
        Actions::new()
    }

    /// The answer to a [`TakeoverAction::Meta`] read.
    pub fn handle_record(&mut self, answer: RecordAnswer, now_ms: u64) -> Actions<TakeoverAction> {
        let Some(retry) = &self.retry else {
            return Actions::new();
        };
        assert!(retry.reading(), "a record answers a read");
        let RecordAnswer::Read {
            version,
            record,
            alive,
        } = answer
        else {
            return self.pause(now_ms, Setback::Unreachable);
        };
        match self.phase {
            TakeoverPhase::Bumping => self.bump(version, record),
            TakeoverPhase::Placing { seal_len } => match self.verdict(record.as_ref()) {
                Verdict::Open => self.place_on(&alive, seal_len, version, record, now_ms),
                Verdict::Sealed => unreachable!("sealed before the tail was written"),
                Verdict::Stop(reason) => self.stop(reason),
            },
            TakeoverPhase::Sealing { seal_len } => {
                self.decide_seal(version, record.as_ref(), seal_len)
            }
            ref phase => unreachable!("a metadata read in {phase:?}"),
        }
    }

    /// The answer to a [`TakeoverAction::Meta`] CAS.
    pub fn handle_cas(&mut self, answer: CasAnswer, now_ms: u64) -> Actions<TakeoverAction> {
        let Some(retry) = &self.retry else {
            return Actions::new();
        };
        let Some((_, proposed)) = retry.casing() else {
            panic!("a CAS answer without a CAS out");
        };
        let proposed = proposed.clone();
        match (answer, self.phase.clone()) {
            (CasAnswer::Applied { .. }, TakeoverPhase::Bumping) => self.bumped(proposed, now_ms),
            (CasAnswer::Applied { .. }, TakeoverPhase::Sealing { seal_len }) => {
                self.sealed(seal_len)
            }
            (CasAnswer::Conflict { record, .. }, TakeoverPhase::Sealing { seal_len }) => {
                match self.verdict(record.as_ref()) {
                    Verdict::Sealed => self.sealed(seal_len),
                    Verdict::Open => self.pause(now_ms, Setback::Conflict),
                    Verdict::Stop(reason) => self.stop(reason),
                }
            }
            // A bump that conflicted is tried again from a fresh read.
            (CasAnswer::Conflict { .. }, _) => self.pause(now_ms, Setback::Conflict),
            // Applied or not: read the record back (and, for a bump, bump
            // again from it: see the module doc).
            (CasAnswer::Unknown, _) => vec![TakeoverAction::Meta(self.retry().read())].into(),
            (CasAnswer::Unavailable, _) => self.pause(now_ms, Setback::Unreachable),
            (CasAnswer::Applied { .. }, phase) => unreachable!("a CAS applied in {phase:?}"),
        }
    }

    /// Decides on the record read before the bump.
    fn bump(&mut self, version: u64, record: Option<LogMeta>) -> Actions<TakeoverAction> {
        let open = record
            .as_ref()
            .and_then(|r| r.segments.last())
            .is_some_and(|s| s.sealed_len.is_none());
        let Some(record) = record.filter(|_| open) else {
            // No log, or its last segment sealed: no producer to fence.
            self.phase = TakeoverPhase::NothingOpen;
            self.retry = None;
            return vec![TakeoverAction::NothingOpen].into();
        };
        let call = self.retry().propose(version, bump_epoch(&record));
        vec![TakeoverAction::Meta(call)].into()
    }

    /// The bump applied: the takeover owns the log at the bumped epoch.
    fn bumped(&mut self, record: LogMeta, now_ms: u64) -> Actions<TakeoverAction> {
        let Some(last) = record.segments.last() else {
            unreachable!("only a record with an open segment is bumped");
        };
        assert!(
            last.sealed_len.is_none(),
            "only an open segment is taken over"
        );
        assert!(
            record.epoch > last.epoch,
            "a takeover moves to a newer epoch"
        );
        self.epoch = record.epoch;
        self.segment = Some(last.clone());
        self.retry = None;
        self.begin_fencing(now_ms)
    }

    /// What `record` says about the segment taken over.
    fn verdict(&self, record: Option<&LogMeta>) -> Verdict {
        let Some(record) = record else {
            return Verdict::Stop(TakeoverStop::RecordChanged);
        };
        if record.epoch > self.epoch {
            return Verdict::Stop(TakeoverStop::Superseded {
                by_epoch: record.epoch,
            });
        }
        let taken = self.taken();
        let found = record.segments.iter().position(|s| s.id == taken.id);
        let Some(i) = found.filter(|_| record.epoch == self.epoch) else {
            return Verdict::Stop(TakeoverStop::RecordChanged);
        };
        let (seg, after) = (&record.segments[i], &record.segments[i + 1..]);
        let ours = |s: &trilog_wire::meta::SegmentMeta| {
            self.next.as_ref().is_some_and(|n| {
                s.id == n.id
                    && s.replicas == n.replicas
                    && s.first_seq == n.first_seq
                    && s.epoch == self.epoch
            })
        };
        let seal_len = match self.phase {
            TakeoverPhase::Sealing { seal_len } => Some(seal_len),
            _ => None,
        };
        match (seg.sealed_len, after) {
            (None, []) if seg.first_seq == taken.first_seq => Verdict::Open,
            (Some(len), [next]) if Some(len) == seal_len && ours(next) => Verdict::Sealed,
            _ => Verdict::Stop(TakeoverStop::RecordChanged),
        }
    }

    /// The record still has the segment open: draw the next segment's
    /// replicas from the alive nodes, write the tail there (or, with no
    /// tail, propose the seal on this very read).
    fn place_on(
        &mut self,
        alive: &[crate::placement::Candidate],
        seal_len: u64,
        version: u64,
        record: Option<LogMeta>,
        now_ms: u64,
    ) -> Actions<TakeoverAction> {
        let p = &self.cfg.producer;
        let seed = p.seed.wrapping_add(self.placements);
        self.placements += 1;
        let replicas = match choose_replicas(alive, &self.exclude, p.replicas, seed) {
            Ok(r) => r,
            Err(e) => {
                let setback = Setback::NoPlacement {
                    needed: e.needed,
                    available: e.available,
                };
                return self.pause(now_ms, setback);
            }
        };
        let writes = self.placed(replicas, now_ms);
        if !self.tail.is_empty() {
            return writes;
        }
        assert!(writes.is_empty(), "no tail, nothing to write");
        // Nothing to write: seal on the record just read.
        let p = &self.cfg.producer;
        let (retry, _) = MetaRetry::start(now_ms, p.meta_pause_ms, p.meta_patience_ms);
        self.retry = Some(retry);
        self.phase = TakeoverPhase::Sealing { seal_len };
        self.decide_seal(version, record.as_ref(), seal_len)
    }

    /// Every replica of the next segment holds the tail: seal.
    pub(super) fn seal(&mut self, seal_len: u64, now_ms: u64) -> Actions<TakeoverAction> {
        self.phase = TakeoverPhase::Sealing { seal_len };
        let p = &self.cfg.producer;
        let (retry, call) = MetaRetry::start(now_ms, p.meta_pause_ms, p.meta_patience_ms);
        self.retry = Some(retry);
        vec![TakeoverAction::Meta(call)].into()
    }

    /// The record that seals the segment at `seal_len` and publishes the
    /// placed segment; `record` has the segment open at this epoch.
    fn seal_record(&self, record: &LogMeta, seal_len: u64) -> LogMeta {
        let Some(next) = &self.next else {
            unreachable!("sealing before the next segment is placed");
        };
        let sealed = switch_segment(
            record,
            self.epoch,
            self.taken().id,
            seal_len,
            &next.replicas,
        );
        match sealed {
            Ok(r) => r,
            Err(e) => panic!("a seal the verdict allowed was refused: {e}"),
        }
    }

    /// Decides on the record read before the sealing CAS.
    fn decide_seal(
        &mut self,
        version: u64,
        record: Option<&LogMeta>,
        seal_len: u64,
    ) -> Actions<TakeoverAction> {
        let Some(record) = record else {
            return self.stop(TakeoverStop::RecordChanged);
        };
        match self.verdict(Some(record)) {
            Verdict::Stop(reason) => self.stop(reason),
            Verdict::Sealed => self.sealed(seal_len),
            Verdict::Open => {
                let proposed = self.seal_record(record, seal_len);
                let would_be = proposed.segments.last().map_or(0, |s| s.id);
                let written = self.next.as_ref().map_or(0, |n| n.id);
                // Published under another id, the tail written there would
                // not be found.
                if would_be != written {
                    return self.stop(TakeoverStop::NextIdMismatch { written, would_be });
                }
                let call = self.retry().propose(version, proposed);
                vec![TakeoverAction::Meta(call)].into()
            }
        }
    }

    /// The CAS sealed the segment and published the next one: tell the old
    /// replicas and hand the log to a producer at the new epoch.
    fn sealed(&mut self, seal_len: u64) -> Actions<TakeoverAction> {
        let Some(next) = self.next.clone() else {
            unreachable!("sealed without a next segment");
        };
        let old = self.taken().clone();
        self.phase = TakeoverPhase::Done;
        self.retry = None;
        let mut out: Actions<TakeoverAction> = old
            .replicas
            .iter()
            .map(|node| TakeoverAction::Seal {
                node: *node,
                segment: old.id,
                epoch: self.epoch,
                len: seal_len,
            })
            .collect::<Vec<_>>()
            .into();
        out.push(TakeoverAction::Done {
            epoch: self.epoch,
            held: self.tail.len() as u64,
            segment: next,
        });
        out
    }
}
