//! Takeover: a new producer continues a log whose last segment is open,
//! while the old producer may be dead or only slow.
//!
//! 1. The machine reads the record and bumps the log's epoch by CAS
//!    ([`crate::metadata::bump_epoch`]): from then on every CAS of the old
//!    producer fails. A bump whose outcome is unknown is not trusted: the
//!    machine reads the record and bumps again (an epoch skipped is
//!    harmless; two takeovers at one epoch would not be).
//! 2. It fences the open segment S on all its replicas, resending the
//!    unanswered fences, and waiting at most `fence_wait_ms_max`. Each
//!    replica durably records the fence, refuses older appends from then
//!    on, waits until everything it accepted before is durable, and
//!    answers its fence epoch, durable length and known watermark. An
//!    answer with a newer epoch means a newer takeover: this one stops.
//! 3. One answer suffices: a commit needs every replica, so once one is
//!    fenced the old producer commits nothing more in S. With answers from
//!    a set F, W = the maximum known watermark over F (every replica holds
//!    W entries), and the tail `[W, len_r)` of any answering replica r holds
//!    every entry the old producer ever committed. The machine reads the
//!    tail of the longest answering replica.
//! 4. It places the next segment S' (id from
//!    [`crate::metadata::next_segment_id`]) on alive nodes and writes the
//!    tail to every replica of S', in appends that fit a frame, *before*
//!    S' is in the metadata, and waits until every replica has it durably.
//!    A replica that fails or stalls is left out and S' placed again.
//! 5. Only then does it seal S at W and publish S' in one CAS (checking
//!    first that the record names S' by the id the tail was written
//!    under), and a producer at the new epoch continues S' after the tail,
//!    counting it as committed: it is durable on every replica already
//!    (`Producer::new` with `held`).
//!
//! Step 4 comes before step 5 because of a counterexample of the model
//! check: with the tail written after the CAS, a new producer that
//! crashed between the CAS and the tail's commit left entries the old
//! producer had reported committed in no segment of the log (S was sealed
//! below them and S' did not hold them), and no later takeover could find
//! them. Now every committed entry is at every moment on every replica of
//! the segment the metadata places it in.
//!
//! Every timer (fence resends and wait, tail read and write timeouts,
//! metadata pauses and patience) is the machine's: the driver asks
//! [`Takeover::poll_timeout`] and calls [`Takeover::handle_timeout`].

mod config;
mod record;
mod tail;
#[cfg(test)]
mod tests;

use trilog_wire::message::Entry;
use trilog_wire::meta::SegmentMeta;

use crate::actions::Actions;
use crate::meta_call::{MetaCall, MetaRetry, Setback};
use crate::metadata::next_segment_id;
use crate::producer::OpenSegment;
use crate::NodeId;

pub use config::TakeoverConfig;

/// A replica's answer to a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FenceAnswer {
    /// The replica's fence epoch: the takeover's, or a newer one.
    pub epoch: u64,
    pub durable_len: u64,
    pub watermark: u64,
    /// Set if the replica already holds a seal of this segment.
    pub sealed_len: Option<u64>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TakeoverAction {
    /// Make a metadata call and hand its answer to
    /// [`Takeover::handle_record`] or [`Takeover::handle_cas`].
    Meta(MetaCall),
    /// Send `Fence{segment, epoch}` to replica `replica` (node `node`);
    /// hand the answer to [`Takeover::handle_fence_answer`].
    Fence {
        replica: usize,
        node: NodeId,
        segment: u64,
        epoch: u64,
    },
    /// Read entries `[from, to)` of `segment` from `node` (limit `to`), and
    /// hand what comes back to [`Takeover::handle_tail`] (an error to
    /// [`Takeover::handle_tail_failure`]).
    ReadTail {
        replica: usize,
        node: NodeId,
        segment: u64,
        from: u64,
        to: u64,
    },
    /// Append tail entries `[first_offset, first_offset + count)` (see
    /// [`Takeover::tail_entries`]) to `segment`, not yet in the metadata,
    /// on `node`, at `epoch`, with the segment's `first_seq` and commit
    /// watermark 0; hand the ack to [`Takeover::handle_tail_ack`] (an error
    /// or a refusal to [`Takeover::handle_tail_write_failure`]).
    WriteTail {
        node: NodeId,
        segment: u64,
        epoch: u64,
        first_seq: u64,
        first_offset: u64,
        count: u32,
    },
    /// Tell a replica of the sealed segment (best effort).
    Seal {
        node: NodeId,
        segment: u64,
        epoch: u64,
        len: u64,
    },
    /// Done: a producer at `epoch` continues `segment`, whose first `held`
    /// entries (the tail) are durable on every replica.
    Done {
        epoch: u64,
        segment: OpenSegment,
        held: u64,
    },
    /// The log has no open segment (or no record): nothing to take over,
    /// open it instead.
    NothingOpen,
    /// The takeover gave up.
    Stopped(TakeoverStop),
}

/// Why a takeover gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TakeoverStop {
    /// Epoch `by_epoch`, newer than this takeover's, owns the log: a fence
    /// answer or the record showed it.
    Superseded { by_epoch: u64 },
    /// No replica of `segment` answered a fence within the wait: its
    /// entries may be committed and nothing else holds them; the log
    /// waits (and the takeover may be tried again).
    NoFenceAnswer { segment: u64, waited_ms: u64 },
    /// The record is gone, or no longer has the segment taken over open
    /// at this takeover's epoch.
    RecordChanged,
    /// The sealing CAS would publish the next segment as `would_be`, not
    /// as `written`, the id the tail was written under.
    NextIdMismatch { written: u64, would_be: u64 },
    /// A metadata change (`what`: the epoch bump, the placement, the
    /// seal) did not go through within the patience.
    GaveUp {
        what: &'static str,
        setback: Setback,
    },
}

impl std::fmt::Display for TakeoverStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TakeoverStop::Superseded { by_epoch } => {
                write!(f, "a newer takeover (epoch {by_epoch}) is under way")
            }
            TakeoverStop::NoFenceAnswer { segment, waited_ms } => write!(
                f,
                "no replica of segment {segment} answered the fence within {waited_ms} ms; the log waits"
            ),
            TakeoverStop::RecordChanged => {
                write!(f, "the log's record changed under the takeover")
            }
            TakeoverStop::NextIdMismatch { written, would_be } => write!(
                f,
                "the sealing CAS would create segment {would_be}, not {written}"
            ),
            TakeoverStop::GaveUp { what, setback } => {
                write!(f, "{what} did not go through within the patience ({setback})")
            }
        }
    }
}

/// Where the takeover is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TakeoverPhase {
    /// Reading the record and bumping the epoch.
    Bumping,
    Fencing,
    /// Reading the tail `[seal_len, to)` from one replica.
    ReadingTail {
        replica: usize,
        seal_len: u64,
        to: u64,
    },
    /// Reading the alive nodes and placing the next segment.
    Placing {
        seal_len: u64,
    },
    /// Writing the tail to the next segment's replicas.
    WritingTail {
        seal_len: u64,
    },
    /// The CAS that seals at `seal_len` and publishes the next segment.
    Sealing {
        seal_len: u64,
    },
    Done,
    NothingOpen,
    Stopped(TakeoverStop),
}

/// The tail written to one replica of the next segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TailWrite {
    /// Offset after the last entry sent.
    sent: u64,
    /// Appends in flight: their end offsets.
    in_flight: Vec<u64>,
    durable: u64,
    /// When it last made progress (placed, or acknowledged more).
    progress_ms: u64,
}

/// The takeover of one open segment at a new epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Takeover {
    log_id: u64,
    cfg: TakeoverConfig,
    /// The epoch bumped to; 0 until the bump applied.
    epoch: u64,
    /// The segment taken over, once the bump applied.
    segment: Option<SegmentMeta>,
    answers: Vec<Option<FenceAnswer>>,
    /// Replicas whose tail read failed; not asked again.
    tail_failed: Vec<bool>,
    tail: Vec<Entry>,
    /// The next segment, once placed.
    next: Option<OpenSegment>,
    /// Per replica of `next`.
    writes: Vec<TailWrite>,
    /// Nodes that failed to take the tail: never placed again.
    exclude: Vec<NodeId>,
    phase: TakeoverPhase,
    /// The metadata change under way (bump, placement, seal).
    retry: Option<MetaRetry>,
    /// Placements drawn so far; the next draws from `seed + placements`.
    placements: u64,
    /// When fencing began, and when the fences last went out.
    fencing_since_ms: u64,
    fences_sent_ms: u64,
    /// When the tail read last went out or made progress.
    read_sent_ms: u64,
}

impl Takeover {
    /// Starts the takeover of `log_id`: reads the record first. `cfg` must
    /// be valid ([`TakeoverConfig::validate`]).
    pub fn start(
        log_id: u64,
        cfg: TakeoverConfig,
        now_ms: u64,
    ) -> (Takeover, Actions<TakeoverAction>) {
        assert_eq!(
            cfg.validate(),
            Ok(()),
            "a takeover's limits are checked first"
        );
        let p = &cfg.producer;
        let (retry, call) = MetaRetry::start(now_ms, p.meta_pause_ms, p.meta_patience_ms);
        let t = Takeover {
            log_id,
            cfg,
            epoch: 0,
            segment: None,
            answers: Vec::new(),
            tail_failed: Vec::new(),
            tail: Vec::new(),
            next: None,
            writes: Vec::new(),
            exclude: Vec::new(),
            phase: TakeoverPhase::Bumping,
            retry: Some(retry),
            placements: 0,
            fencing_since_ms: 0,
            fences_sent_ms: 0,
            read_sent_ms: 0,
        };
        (t, vec![TakeoverAction::Meta(call)].into())
    }

    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    /// The epoch of the takeover; 0 until the bump applied.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The segment taken over, once the epoch is bumped.
    pub fn segment(&self) -> Option<&SegmentMeta> {
        self.segment.as_ref()
    }

    pub fn phase(&self) -> &TakeoverPhase {
        &self.phase
    }

    /// The entries carried over, in seq order from the seal point.
    pub fn tail(&self) -> &[Entry] {
        &self.tail
    }

    /// Tail entries `[first_offset, first_offset + count)`, for a
    /// `WriteTail` action.
    pub fn tail_entries(&self, first_offset: u64, count: u32) -> &[Entry] {
        let start = first_offset as usize;
        let end = start + count as usize;
        assert!(end <= self.tail.len(), "tail entries past the end");
        &self.tail[start..end]
    }

    /// The next segment, once placed.
    pub fn next(&self) -> Option<&OpenSegment> {
        self.next.as_ref()
    }

    /// The id the next segment gets: the one the sealing CAS will create.
    pub fn next_id(&self) -> Option<u64> {
        let segment = self.segment.as_ref()?;
        Some(next_segment_id(segment, self.epoch))
    }

    /// The segment taken over; only asked once the bump applied.
    fn taken(&self) -> &SegmentMeta {
        match &self.segment {
            Some(s) => s,
            None => unreachable!("the segment is known once the epoch is bumped"),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        if let Some(retry) = &self.retry {
            return retry.poll_timeout();
        }
        match self.phase {
            TakeoverPhase::Fencing => Some(
                (self.fences_sent_ms.saturating_add(self.cfg.fence_resend_ms)).min(
                    self.fencing_since_ms
                        .saturating_add(self.cfg.fence_wait_ms_max),
                ),
            ),
            TakeoverPhase::ReadingTail { .. } => Some(
                self.read_sent_ms
                    .saturating_add(self.cfg.tail_read_timeout_ms),
            ),
            TakeoverPhase::WritingTail { .. } => {
                let len = self.tail.len() as u64;
                self.writes
                    .iter()
                    .filter(|w| w.durable < len)
                    .map(|w| w.progress_ms.saturating_add(self.cfg.tail_write_timeout_ms))
                    .min()
            }
            _ => None,
        }
    }

    /// Time passed: resends fences or gives up waiting for them, moves a
    /// stalled tail read to another replica, leaves a stalled new replica
    /// out, starts the next round of a metadata change (or gives up).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Actions<TakeoverAction> {
        if let Some(retry) = &mut self.retry {
            return match retry.on_timeout(now_ms) {
                None => Actions::new(),
                Some(Ok(call)) => vec![TakeoverAction::Meta(call)].into(),
                Some(Err(setback)) => {
                    let what = match self.phase {
                        TakeoverPhase::Bumping => "the epoch bump",
                        TakeoverPhase::Placing { .. } => "the placement of the next segment",
                        _ => "the sealing CAS",
                    };
                    self.stop(TakeoverStop::GaveUp { what, setback })
                }
            };
        }
        match self.phase {
            TakeoverPhase::Fencing => self.fence_timeout(now_ms),
            TakeoverPhase::ReadingTail { replica, .. }
                if now_ms
                    >= self
                        .read_sent_ms
                        .saturating_add(self.cfg.tail_read_timeout_ms) =>
            {
                self.handle_tail_failure(replica, now_ms)
            }
            TakeoverPhase::WritingTail { .. } => self.tail_write_timeout(now_ms),
            _ => Actions::new(),
        }
    }

    fn stop(&mut self, reason: TakeoverStop) -> Actions<TakeoverAction> {
        assert!(
            !self.ended(),
            "a takeover ends once: {:?} then {reason:?}",
            self.phase
        );
        self.phase = TakeoverPhase::Stopped(reason);
        self.retry = None;
        vec![TakeoverAction::Stopped(reason)].into()
    }

    /// Whether the takeover is over (done, nothing open, or stopped).
    pub fn ended(&self) -> bool {
        matches!(
            self.phase,
            TakeoverPhase::Done | TakeoverPhase::NothingOpen | TakeoverPhase::Stopped(_)
        )
    }
}
