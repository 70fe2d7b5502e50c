//! The producer: the single writer of a log at one epoch.
//!
//! It sends every entry of the open segment to all of the segment's
//! replicas at once, keeps up to `window` appends in flight per replica
//! (pipelining, no stop-and-wait), and reports entries committed, in seq
//! order, once every replica acknowledged them as durable. The commit
//! watermark rides on later appends, or goes alone when the producer has
//! nothing more to send, so replicas learn what they may serve to readers.
//!
//! When a replica fails (an error, or an append unanswered for
//! `ack_timeout_ms`) the producer freezes the commit watermark W of the
//! segment and switches: it reads the log's record, places the next
//! segment, and asks for one CAS that seals the segment at W and appends
//! the next one; it then sends every entry past W to the new segment with
//! the same seqs. A close seals the segment the same way once every entry
//! is committed. Each outcome of those metadata calls is an event the
//! machine decides on ([`crate::meta_call`]): an unknown CAS outcome is
//! resolved by reading the record back, never guessed.
//!
//! The producer stops only in [`Phase::Stopped`], with a reason it can
//! name ([`StopReason`]): a newer epoch seen in a refusal or in the
//! record, its open segment sealed by someone else, the log deleted, a
//! switch or seal that found no placement or no metadata store within its
//! patience, or a clean close. What it had not seen committed when it
//! stops for another reason than a close has an unknown outcome.

mod change;
mod config;
mod link;
mod slow;
#[cfg(test)]
mod slow_tests;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use trilog_wire::message::Entry;

use crate::acks::AckTracker;
use crate::actions::Actions;
use crate::meta_call::{MetaCall, MetaRetry, Setback};
use crate::mutant::{self, Mutant};
use crate::replica::Refusal;
use crate::NodeId;

pub use config::{ConfigError, ProducerConfig, SLOW_STRIKE_WINDOW_MS};
pub use link::{Link, RECONNECT_PAUSE_MS};
pub use slow::{View, SLOW_LAG_FACTOR};

/// The segment a producer writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenSegment {
    pub id: u64,
    pub first_seq: u64,
    pub replicas: Vec<NodeId>,
}

/// Why a producer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StopReason {
    /// Epoch `by_epoch`, newer than the producer's, owns the log: a
    /// replica refused an append with it, or the record showed it.
    Fenced { by_epoch: u64 },
    /// Someone else sealed the open segment (a takeover's seal reached a
    /// replica, or the record shows it sealed where this producer did not).
    SealedElsewhere { segment: u64, len: Option<u64> },
    /// The log's record is gone, or is not the one this producer wrote
    /// (a lower epoch, its open segment missing).
    LogDeleted,
    /// A switch away from `segment`, or the close's seal of it, did not go
    /// through within the patience; `setback` is what stood in the way.
    GaveUp { segment: u64, setback: Setback },
    /// Closed cleanly: every entry committed, the segment sealed.
    Closed,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Fenced { by_epoch } => write!(f, "the log was taken over by epoch {by_epoch}"),
            StopReason::SealedElsewhere { segment, len } => match len {
                Some(len) => write!(f, "segment {segment} was sealed at {len} by another producer"),
                None => write!(f, "segment {segment} was sealed by another producer"),
            },
            StopReason::LogDeleted => write!(f, "the log's metadata record is gone or was replaced"),
            StopReason::GaveUp { segment, setback } => write!(
                f,
                "no new metadata for segment {segment} within the producer's patience ({setback}); the producer stopped"
            ),
            StopReason::Closed => write!(f, "the producer is closed"),
        }
    }
}

/// Where the producer is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Writing,
    /// Sealing `segment` at `seal_len` and opening the next segment, by
    /// metadata calls.
    Switching {
        segment: u64,
        seal_len: u64,
    },
    /// Waiting for every entry to commit.
    Closing,
    /// Every entry is committed: sealing `segment` at `len` by CAS.
    Sealing {
        segment: u64,
        len: u64,
    },
    Stopped(StopReason),
}

/// What the driver must do. The order of a returned list matters:
/// `Committed` before sends, so completions are never held up by IO, and
/// `Connect` before the sends to a new segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// `segment` on `replicas` is the open segment now: connect to them
    /// (a failure is [`Producer::handle_replica_failure`]).
    Connect { segment: u64, replicas: Vec<NodeId> },
    /// The connection to replica `replica` (node `node`) of `segment` was
    /// lost: connect again, then [`Producer::handle_reconnected`] (or
    /// [`Producer::handle_reconnect_failed`]).
    Reconnect {
        replica: usize,
        node: NodeId,
        segment: u64,
    },
    /// Tell a replica of a sealed segment (best effort).
    Seal {
        node: NodeId,
        segment: u64,
        len: u64,
    },
    /// Make a metadata call and hand its answer to
    /// [`Producer::handle_record`] or [`Producer::handle_cas`].
    Meta(MetaCall),
    /// The producer stopped. Entries below `committed` are committed; the
    /// outcome of the others is unknown unless `reason` is `Closed` (then
    /// there are none).
    Stopped { reason: StopReason, committed: u64 },
}

/// Why an entry could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefused {
    #[error("the producer is closing or closed")]
    Closed,
    #[error("the producer stopped: {reason}")]
    Stopped { reason: StopReason },
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
    /// Per replica, when it was last sent anything (an append or the
    /// watermark): an idle replica is told again after the refresh time.
    told_at_ms: Vec<u64>,
    /// Per replica, its connection (see the `link` module).
    links: Vec<Link>,
    phase: Phase,
    /// A close was asked: it survives a segment switch.
    closing: bool,
    /// The metadata change under way: present exactly while switching or
    /// sealing.
    change: Option<Change>,
    /// Placements drawn so far; the next draws from `cfg.seed + placements`.
    placements: u64,
    /// The record and nodes a switch for a slow replica places from (see
    /// the `slow` module).
    view: Option<View>,
    /// A read for the view is out (no change is under way).
    view_reading: bool,
    /// When the view was last read, or asked for.
    view_read_at_ms: Option<u64>,
    /// Nodes left for being slow, and until when they stay out of
    /// placements; at most one entry per node.
    benched: Vec<(NodeId, u64)>,
    /// The last node found past the lag limit: (node, when, how many
    /// times in a row, each within the strike window of the last).
    strike: Option<(NodeId, u64, u8)>,
    /// The lag episode that strike was for, (replica, its acked length):
    /// its timer does not fire again.
    struck: Option<(usize, u64)>,
}

/// A switch or a seal under way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Change {
    retry: MetaRetry,
    /// Nodes the next segment must not be placed on (the failed replica).
    exclude: Vec<NodeId>,
    /// Nodes it should not be placed on while others are alive (a slow
    /// replica, the benched nodes).
    avoid: Vec<NodeId>,
    /// The CAS out was proposed from the view, without a read: a conflict
    /// only means the view was old, so it is read again at once.
    from_view: bool,
}

impl Producer {
    /// A producer of `log_id` at `epoch` writing `segment`, whose first
    /// `held` entries are already durable on every replica (a takeover's
    /// tail, written before the segment was published; 0 for a new
    /// segment). They count as committed; the replicas learn so from the
    /// watermark the producer sends. `cfg` must be valid
    /// ([`ProducerConfig::validate`]).
    pub fn new(
        log_id: u64,
        epoch: u64,
        segment: OpenSegment,
        held: u64,
        cfg: ProducerConfig,
    ) -> Producer {
        assert_eq!(
            cfg.validate(),
            Ok(()),
            "a producer's limits are checked first"
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
            told_at_ms: vec![0; n],
            links: vec![Link::NEW; n],
            segment,
            entries: VecDeque::new(),
            phase: Phase::Writing,
            closing: false,
            change: None,
            placements: 0,
            view: None,
            view_reading: false,
            view_read_at_ms: None,
            benched: Vec::new(),
            strike: None,
            struck: None,
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

    fn sending(&self) -> bool {
        matches!(self.phase, Phase::Writing | Phase::Closing)
    }

    /// Takes one entry; returns its seq. It is sent by a later
    /// [`poll`](Self::poll).
    pub fn append(&mut self, entry: Entry) -> Result<u64, AppendRefused> {
        match self.phase {
            Phase::Stopped(StopReason::Closed) => return Err(AppendRefused::Closed),
            Phase::Stopped(reason) => return Err(AppendRefused::Stopped { reason }),
            _ if self.closing => return Err(AppendRefused::Closed),
            Phase::Writing | Phase::Switching { .. } => {}
            Phase::Closing | Phase::Sealing { .. } => {
                unreachable!("closing is set before these phases")
            }
        }
        let seq = self.next_seq();
        self.entries.push_back(entry);
        Ok(seq)
    }

    /// The entries `[first_offset, first_offset + count)` of the open
    /// segment, for an `Append` action.
    pub fn entries(
        &self,
        first_offset: u64,
        count: u32,
    ) -> impl ExactSizeIterator<Item = &Entry> + Clone {
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

    /// The first actions of a new producer: connect to the segment's
    /// replicas, then what [`poll`](Self::poll) sends (the watermark of a
    /// held tail).
    pub fn begin(&mut self, now_ms: u64) -> Actions<Action> {
        let mut out: Actions<Action> = vec![Action::Connect {
            segment: self.segment.id,
            replicas: self.segment.replicas.clone(),
        }]
        .into();
        self.fill_windows(now_ms, &mut out);
        self.refresh_view(now_ms, &mut out);
        out
    }

    /// The sends that the window allows now.
    pub fn poll(&mut self, now_ms: u64) -> Actions<Action> {
        let mut out = Actions::new();
        self.fill_windows(now_ms, &mut out);
        out
    }

    fn fill_windows(&mut self, now_ms: u64, out: &mut Actions<Action>) {
        if !self.sending() {
            return;
        }
        let end = self.end_offset();
        let commit = self.acks.commit();
        for i in 0..self.segment.replicas.len() {
            if !self.links[i].is_up() {
                continue;
            }
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
                self.told_at_ms[i] = now_ms;
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
                self.told_at_ms[i] = now_ms;
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
    ) -> Actions<Action> {
        let mut out = Actions::new();
        // Acks of an older segment, or of this one after the switch froze
        // its watermark, must not commit anything: the entries past the
        // frozen watermark are being resent to the next segment.
        if segment != self.segment.id || !self.sending() {
            return out;
        }
        if let Some(commit) = self.acks.on_ack(replica, durable_len, now_ms) {
            self.advance_commit(commit, &mut out);
        }
        self.fill_windows(now_ms, &mut out);
        self.maybe_seal_for_close(now_ms, &mut out);
        out
    }

    fn advance_commit(&mut self, commit_offset: u64, out: &mut Actions<Action>) {
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

    /// Replica `replica` of `segment` refused an append.
    pub fn handle_refusal(
        &mut self,
        replica: usize,
        segment: u64,
        refusal: Refusal,
        now_ms: u64,
    ) -> Actions<Action> {
        let mut out = Actions::new();
        if segment != self.segment.id || matches!(self.phase, Phase::Stopped(_)) {
            return out;
        }
        match refusal {
            // Another producer owns the log, whatever this one is doing.
            Refusal::Fenced { epoch } if epoch > self.epoch => {
                return self.stop(StopReason::Fenced { by_epoch: epoch });
            }
            // Only a takeover seals the open segment of a live producer.
            Refusal::Sealed { len } => {
                return self.stop(StopReason::SealedElsewhere {
                    segment,
                    len: Some(len),
                });
            }
            _ if !self.sending() => {}
            Refusal::Gap { len } => {
                // The replica lost appends in flight (a reconnect): resend.
                self.acks.rewind(replica, len);
                self.fill_windows(now_ms, &mut out);
            }
            // A fence at or below this producer's epoch cannot refuse it,
            // and a seal conflict (an append is never refused for a low
            // seal) is a broken replica, and a damaged one takes no more
            // appends: leave it behind.
            Refusal::Fenced { .. }
            | Refusal::SealConflict { .. }
            | Refusal::SealBelowCommit { .. }
            | Refusal::Damaged { .. } => {
                out.extend(self.fail_replica(replica, now_ms));
            }
        }
        out
    }

    /// Replica `replica` of `segment` failed (a connection error, an
    /// error answer).
    pub fn handle_replica_failure(
        &mut self,
        replica: usize,
        segment: u64,
        now_ms: u64,
    ) -> Actions<Action> {
        if segment == self.segment.id && self.sending() {
            return self.fail_replica(replica, now_ms);
        }
        Actions::new()
    }

    /// Freezes the commit watermark and starts the switch away from the
    /// open segment.
    fn fail_replica(&mut self, replica: usize, now_ms: u64) -> Actions<Action> {
        assert!(self.sending(), "only a segment being written fails");
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
        let exclude = vec![self.segment.replicas[replica]];
        let avoid = self.benched(now_ms);
        self.start_change(exclude, avoid, now_ms)
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do:
    /// the oldest append's ack deadline, a laggard turning slow, an idle
    /// replica's watermark refresh or the view's while writing, the next
    /// round of a metadata change after a pause while switching or
    /// sealing.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.change {
            Some(change) => change.retry.poll_timeout(),
            None if self.sending() => {
                let acks = (0..self.segment.replicas.len())
                    .filter_map(|i| self.acks.oldest_in_flight_ms(i))
                    .map(|sent| sent.saturating_add(self.cfg.ack_timeout_ms));
                let refresh =
                    (0..self.segment.replicas.len()).filter_map(|i| self.refresh_at_ms(i));
                acks.chain(refresh)
                    .chain(self.link_timeout())
                    .chain(self.slow_at_ms())
                    .chain(self.view_refresh_at_ms())
                    .filter(|at| *at != u64::MAX)
                    .min()
            }
            None => None,
        }
    }

    /// When idle replica `i` is to be told the watermark again, if it is
    /// idle and there is a watermark to tell.
    fn refresh_at_ms(&self, i: usize) -> Option<u64> {
        let r = self.acks.replica(i);
        let idle = r.sent == self.end_offset() && r.in_flight.is_empty() && self.links[i].is_up();
        // MUTANT WatermarkNotSent: an idle producer stays silent.
        let silent = mutant::active(Mutant::WatermarkNotSent);
        (idle && !silent && self.acks.commit() > 0)
            .then(|| self.told_at_ms[i].saturating_add(self.cfg.watermark_refresh_ms))
    }

    /// Tells every idle replica whose refresh is due the watermark again.
    fn refresh_watermarks(&mut self, now_ms: u64) -> Actions<Action> {
        let mut out = Actions::new();
        let commit = self.acks.commit();
        for i in 0..self.segment.replicas.len() {
            if self.refresh_at_ms(i).is_some_and(|at| at <= now_ms) {
                self.commit_told[i] = commit;
                self.told_at_ms[i] = now_ms;
                out.push(Action::Watermark {
                    replica: i,
                    node: self.segment.replicas[i],
                    segment: self.segment.id,
                    commit,
                });
            }
        }
        out
    }

    /// Time passed: fails a replica whose oldest append is overdue, or
    /// starts the next round of a metadata change (or gives up on it).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Actions<Action> {
        if let Some(change) = &mut self.change {
            return match change.retry.on_timeout(now_ms) {
                None => Actions::new(),
                Some(Ok(call)) => vec![Action::Meta(call)].into(),
                Some(Err(setback)) => {
                    let segment = self.segment.id;
                    self.stop(StopReason::GaveUp { segment, setback })
                }
            };
        }
        if !self.sending() {
            return Actions::new();
        }
        if let Some(out) = self.link_timers(now_ms) {
            return out;
        }
        let overdue = (0..self.segment.replicas.len()).find(|i| {
            self.acks
                .oldest_in_flight_ms(*i)
                .is_some_and(|sent| now_ms.saturating_sub(sent) >= self.cfg.ack_timeout_ms)
        });
        if let Some(replica) = overdue {
            return self.fail_replica(replica, now_ms);
        }
        if let Some(out) = self.leave_slow_replica(now_ms) {
            return out;
        }
        let mut out = self.refresh_watermarks(now_ms);
        self.refresh_view(now_ms, &mut out);
        out
    }

    /// Stop taking entries; seal the segment once every entry is committed.
    pub fn close(&mut self, now_ms: u64) -> Actions<Action> {
        let mut out = Actions::new();
        self.closing = true;
        if self.phase == Phase::Writing {
            self.phase = Phase::Closing;
            self.maybe_seal_for_close(now_ms, &mut out);
        }
        out
    }

    /// Once closing and every entry is committed: seal the segment.
    fn maybe_seal_for_close(&mut self, now_ms: u64, out: &mut Actions<Action>) {
        if self.phase == Phase::Closing && self.entries.is_empty() {
            self.phase = Phase::Sealing {
                segment: self.segment.id,
                len: self.acks.commit(),
            };
            out.extend(self.start_change(Vec::new(), Vec::new(), now_ms));
        }
    }

    fn stop(&mut self, reason: StopReason) -> Actions<Action> {
        assert!(
            !matches!(self.phase, Phase::Stopped(_)),
            "a producer stops once"
        );
        self.phase = Phase::Stopped(reason);
        self.change = None;
        vec![Action::Stopped {
            reason,
            committed: self.committed,
        }]
        .into()
    }
}
