//! Opening a log for writing: a new producer creates the log (epoch 1), or
//! continues it with the next epoch and a new segment when its last
//! segment is sealed ([`crate::metadata::open_for_write`]). A log whose
//! last segment is open may still have a live producer: that takes a
//! takeover, which fences it first.
//!
//! The open is one change of the record ([`crate::meta_call`]). Unlike a
//! switch, an open whose CAS outcome is unknown cannot be resolved by
//! reading the record back: a rival opener at the same epoch writes a
//! record of the same shape, so an open segment found afterwards may be
//! ours or theirs. The opener then refuses to guess and says so
//! ([`OpenFailure::Unknown`]); a takeover settles it safely. If the record
//! shows no open segment, the CAS did not apply (yet), and trying again at
//! the version read is safe: of two CASes expecting one version, at most
//! one applies.

use trilog_wire::meta::LogMeta;

use crate::actions::Actions;
use crate::meta_call::{CasAnswer, MetaCall, MetaRetry, RecordAnswer, Setback};
use crate::metadata::open_for_write;
use crate::placement::{choose_replicas, Candidate};
use crate::producer::{OpenSegment, ProducerConfig};

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpenAction {
    /// Make a metadata call and hand its answer to
    /// [`Opener::handle_record`] or [`Opener::handle_cas`].
    Meta(MetaCall),
    /// Opened: a producer at `epoch` writes `segment` from its start.
    /// `view` is the record as the open's CAS stored it, and the nodes
    /// alive at its read: the producer's first view
    /// ([`crate::producer::Producer::set_view`]), so that it does not read
    /// the record again at once (a thousand logs opened together would
    /// read it a thousand times more).
    Opened {
        epoch: u64,
        segment: OpenSegment,
        view: OpenedView,
    },
    /// Not opened.
    Failed(OpenFailure),
}

/// The record an open stored, at its version, and the nodes alive when
/// the open read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenedView {
    pub version: u64,
    pub record: LogMeta,
    pub alive: Vec<Candidate>,
}

/// Why a log was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum OpenFailure {
    /// The last segment is open: its producer may be alive.
    #[error(
        "segment {segment} is open at epoch {epoch}: its producer may be alive; take the log over"
    )]
    OpenSegment { segment: u64, epoch: u64 },
    /// The CAS's outcome was unknown and the record now has an open
    /// segment: this opener's or a rival's, which cannot be told apart.
    #[error("the outcome of the open is unknown and segment {segment} is open at epoch {epoch}; take the log over")]
    Unknown { segment: u64, epoch: u64 },
    /// The open did not go through within the patience.
    #[error("the open did not go through within the patience ({setback})")]
    GaveUp { setback: Setback },
    /// The log was deleted (`trilog delete`): it is never written again.
    #[error("the log is deleted")]
    LogDeleted,
}

/// The opening of one log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opener {
    log_id: u64,
    cfg: ProducerConfig,
    /// `None` once opened or failed.
    retry: Option<MetaRetry>,
    placements: u64,
    /// A CAS of this opener had an unknown outcome.
    unknown: bool,
    /// The nodes alive at the last read.
    alive: Vec<Candidate>,
}

impl Opener {
    /// Starts opening `log_id` with a read. `cfg` must be valid.
    pub fn start(log_id: u64, cfg: ProducerConfig, now_ms: u64) -> (Opener, Actions<OpenAction>) {
        assert_eq!(
            cfg.validate(),
            Ok(()),
            "a producer's limits are checked first"
        );
        let (retry, call) = MetaRetry::start(now_ms, cfg.meta_pause_ms, cfg.meta_patience_ms);
        let o = Opener {
            log_id,
            cfg,
            retry: Some(retry),
            placements: 0,
            unknown: false,
            alive: Vec::new(),
        };
        (o, vec![OpenAction::Meta(call)].into())
    }

    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    /// Whether the open is over (opened or failed).
    pub fn ended(&self) -> bool {
        self.retry.is_none()
    }

    fn retry(&mut self) -> &mut MetaRetry {
        match &mut self.retry {
            Some(retry) => retry,
            None => unreachable!("the open is over"),
        }
    }

    fn end(&mut self, action: OpenAction) -> Actions<OpenAction> {
        self.retry = None;
        vec![action].into()
    }

    /// The open segment of `record`, if its last segment is open.
    fn open_segment(&self, record: Option<&LogMeta>) -> Option<OpenFailure> {
        let record = record?;
        let last = record.segments.last().filter(|s| s.sealed_len.is_none())?;
        let (segment, epoch) = (last.id, record.epoch);
        Some(if self.unknown {
            OpenFailure::Unknown { segment, epoch }
        } else {
            OpenFailure::OpenSegment { segment, epoch }
        })
    }

    /// The answer to an [`OpenAction::Meta`] read.
    pub fn handle_record(&mut self, answer: RecordAnswer, now_ms: u64) -> Actions<OpenAction> {
        if self.ended() {
            return Actions::new();
        }
        assert!(self.retry().reading(), "a record answers a read");
        let RecordAnswer::Read {
            version,
            record,
            alive,
        } = answer
        else {
            self.retry().pause(now_ms, Setback::Unreachable);
            return Actions::new();
        };
        if let Some(failure) = self.open_segment(record.as_ref()) {
            return self.end(OpenAction::Failed(failure));
        }
        if record.as_ref().is_some_and(|r| r.deleted) {
            return self.end(OpenAction::Failed(OpenFailure::LogDeleted));
        }
        let seed = self.cfg.seed.wrapping_add(self.placements);
        self.placements += 1;
        let replicas = match choose_replicas(&alive, &[], self.cfg.replicas, seed) {
            Ok(r) => r,
            Err(e) => {
                let setback = Setback::NoPlacement {
                    needed: e.needed,
                    available: e.available,
                };
                self.retry().pause(now_ms, setback);
                return Actions::new();
            }
        };
        let proposed = match open_for_write(record.as_ref(), self.log_id, &replicas) {
            Ok(r) => r,
            Err(e) => panic!("an open the record allows was refused: {e}"),
        };
        self.alive = alive;
        let call = self.retry().propose(version, proposed);
        vec![OpenAction::Meta(call)].into()
    }

    /// The answer to an [`OpenAction::Meta`] CAS.
    pub fn handle_cas(&mut self, answer: CasAnswer, now_ms: u64) -> Actions<OpenAction> {
        if self.ended() {
            return Actions::new();
        }
        let Some((_, proposed)) = self.retry().casing() else {
            panic!("a CAS answer without a CAS out");
        };
        let proposed = proposed.clone();
        match answer {
            CasAnswer::Applied { version } => {
                let Some(last) = proposed.segments.last() else {
                    unreachable!("an opened record has a segment");
                };
                let segment = OpenSegment {
                    id: last.id,
                    first_seq: last.first_seq,
                    replicas: last.replicas.clone(),
                };
                let view = OpenedView {
                    version,
                    alive: std::mem::take(&mut self.alive),
                    record: proposed.clone(),
                };
                self.end(OpenAction::Opened {
                    epoch: proposed.epoch,
                    segment,
                    view,
                })
            }
            CasAnswer::Conflict { record, .. } => match self.open_segment(record.as_ref()) {
                Some(failure) => self.end(OpenAction::Failed(failure)),
                None => {
                    self.retry().pause(now_ms, Setback::Conflict);
                    Actions::new()
                }
            },
            CasAnswer::Unknown => {
                self.unknown = true;
                vec![OpenAction::Meta(self.retry().read())].into()
            }
            CasAnswer::Unavailable => {
                self.retry().pause(now_ms, Setback::Unreachable);
                Actions::new()
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.retry.as_ref().and_then(MetaRetry::poll_timeout)
    }

    /// Time passed: the next round after a pause, or the end of patience.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Actions<OpenAction> {
        let Some(retry) = &mut self.retry else {
            return Actions::new();
        };
        match retry.on_timeout(now_ms) {
            None => Actions::new(),
            Some(Ok(call)) => vec![OpenAction::Meta(call)].into(),
            Some(Err(setback)) => self.end(OpenAction::Failed(OpenFailure::GaveUp { setback })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::seal_last;
    use crate::placement::Candidate;

    fn read(version: u64, record: Option<LogMeta>) -> RecordAnswer {
        RecordAnswer::Read {
            version,
            record,
            alive: Candidate::all_in_one_zone(&[1, 2, 3, 4]),
        }
    }

    fn proposed(out: &Actions<OpenAction>) -> LogMeta {
        match out.first() {
            Some(OpenAction::Meta(MetaCall::Cas { record, .. })) => record.clone(),
            other => panic!("expected a CAS, got {other:?}"),
        }
    }

    #[test]
    fn creates_a_new_log_and_reopens_a_sealed_one() {
        let (mut o, out) = Opener::start(5, ProducerConfig::default(), 0);
        assert_eq!(&out[..], &[OpenAction::Meta(MetaCall::ReadRecord)]);
        let created = proposed(&o.handle_record(read(0, None), 1));
        assert_eq!((created.epoch, created.segments.len()), (1, 1));
        let out = o.handle_cas(CasAnswer::Applied { version: 1 }, 2);
        let [OpenAction::Opened {
            epoch: 1,
            view:
                OpenedView {
                    version,
                    record,
                    alive,
                },
            ..
        }] = &out[..]
        else {
            panic!("opened: {out:?}");
        };
        // The producer's first view: the record as stored, the nodes as read.
        assert_eq!((*version, record), (1, &created));
        assert_eq!(alive, &Candidate::all_in_one_zone(&[1, 2, 3, 4]));
        assert!(o.ended());

        let sealed = seal_last(&created, 1, 0, 7).expect("seal");
        let (mut o, _) = Opener::start(5, ProducerConfig::default(), 0);
        let reopened = proposed(&o.handle_record(read(4, Some(sealed)), 1));
        assert_eq!(reopened.epoch, 2);
        assert_eq!(reopened.segments[1].first_seq, 7);
    }

    #[test]
    fn an_open_segment_is_refused_and_an_unknown_outcome_is_not_guessed() {
        let (mut o, _) = Opener::start(5, ProducerConfig::default(), 0);
        let created = proposed(&o.handle_record(read(0, None), 1));
        // No answer: read back. The open segment may be ours or a rival's.
        let out = o.handle_cas(CasAnswer::Unknown, 2);
        assert_eq!(&out[..], &[OpenAction::Meta(MetaCall::ReadRecord)]);
        let out = o.handle_record(read(1, Some(created.clone())), 3);
        assert_eq!(
            &out[..],
            &[OpenAction::Failed(OpenFailure::Unknown {
                segment: 0,
                epoch: 1
            })]
        );
        let (mut o, _) = Opener::start(5, ProducerConfig::default(), 0);
        let out = o.handle_record(read(1, Some(created)), 1);
        assert_eq!(
            &out[..],
            &[OpenAction::Failed(OpenFailure::OpenSegment {
                segment: 0,
                epoch: 1
            })]
        );
    }

    #[test]
    fn an_unknown_outcome_with_nothing_open_tries_again_and_patience_ends() {
        let cfg = ProducerConfig {
            meta_pause_ms: 10,
            meta_patience_ms: 25,
            ..ProducerConfig::default()
        };
        let (mut o, _) = Opener::start(5, cfg, 0);
        let _ = o.handle_record(read(0, None), 0);
        let _ = o.handle_cas(CasAnswer::Unknown, 1);
        // The CAS did not apply (yet): the same version, proposed again.
        let again = o.handle_record(read(0, None), 2);
        assert!(matches!(
            &again[..],
            [OpenAction::Meta(MetaCall::Cas {
                expected_version: 0,
                ..
            })]
        ));
        assert!(o.handle_cas(CasAnswer::Unavailable, 3).is_empty());
        assert_eq!(o.poll_timeout(), Some(13));
        assert_eq!(
            &o.handle_timeout(13)[..],
            &[OpenAction::Meta(MetaCall::ReadRecord)]
        );
        let few = RecordAnswer::Read {
            version: 0,
            record: None,
            alive: Candidate::all_in_one_zone(&[1]),
        };
        assert!(o.handle_record(few, 14).is_empty(), "too few nodes: pause");
        assert_eq!(
            &o.handle_timeout(30)[..],
            &[OpenAction::Failed(OpenFailure::GaveUp {
                setback: Setback::NoPlacement {
                    needed: 3,
                    available: 1
                }
            })]
        );
    }
}
