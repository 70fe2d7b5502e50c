//! The metadata calls a machine asks its driver to make, what it hears
//! back, and the timers of a change made by compare-and-swap.
//!
//! A machine changes a log's record in rounds: it asks to read the record
//! ([`MetaCall::ReadRecord`], answered by a [`RecordAnswer`]), decides on
//! what it reads, and asks for a CAS ([`MetaCall::Cas`], answered by a
//! [`CasAnswer`]). The CAS has four outcomes, and only one of them is a
//! failure that says nothing about the record:
//!
//! - `Applied`: the record is the one proposed;
//! - `Conflict`: the record had changed; the answer carries it;
//! - `Unknown`: the call was sent and no answer came (a timeout, a lost
//!   connection): the change may or may not be in the store, and may even
//!   land later. The machine reads the record back and decides from it
//!   whether its change is there; it never guesses;
//! - `Unavailable`: the store surely did not apply it (it was never
//!   reached, or refused before applying).
//!
//! [`MetaRetry`] holds the step a change is at and its two timers: the
//! pause before the next round after a setback, and the patience after
//! which the machine gives up and says why ([`Setback`]). Nothing here
//! reads a clock: `now_ms` comes with every call.

use trilog_wire::meta::LogMeta;

use crate::placement::Candidate;

/// A metadata call a machine asks for. One is out at a time per machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaCall {
    /// Read the log's record with its version and list the alive nodes
    /// (for a placement); answer with the machine's `handle_record`.
    ReadRecord,
    /// Store `record` if the log is still at `expected_version`; answer
    /// with the machine's `handle_cas`.
    Cas {
        expected_version: u64,
        record: LogMeta,
    },
}

/// The answer to [`MetaCall::ReadRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordAnswer {
    /// The record at `version` (`None` and version 0: no such log), and
    /// the nodes alive now.
    Read {
        version: u64,
        record: Option<LogMeta>,
        alive: Vec<Candidate>,
    },
    /// The store did not answer, or answered an error.
    Unavailable,
}

/// The answer to [`MetaCall::Cas`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CasAnswer {
    /// Stored: the log is at `version` with the proposed record.
    Applied { version: u64 },
    /// Not stored: the log is at `version` with `record`.
    Conflict {
        version: u64,
        record: Option<LogMeta>,
    },
    /// Sent, and no answer: applied or not, possibly later.
    Unknown,
    /// Surely not applied.
    Unavailable,
}

/// Why the last round of a change did not go through: what a machine
/// that runs out of patience reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Setback {
    /// The store did not answer, answered an error, or left a CAS's
    /// outcome unknown and could not be read back.
    Unreachable,
    /// Fewer healthy nodes than a segment needs.
    NoPlacement { needed: usize, available: usize },
    /// The record kept changing under the CAS.
    Conflict,
}

impl std::fmt::Display for Setback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setback::Unreachable => write!(f, "the metadata store did not answer"),
            Setback::NoPlacement { needed, available } => {
                write!(f, "{needed} healthy nodes needed, {available} available")
            }
            Setback::Conflict => write!(f, "the metadata record kept changing"),
        }
    }
}

/// Where a change is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Step {
    /// A read is out.
    Reading,
    /// A CAS of `proposed` at `expected_version` is out.
    Casing {
        expected_version: u64,
        proposed: LogMeta,
    },
    /// The next round starts at `at_ms`.
    Pausing { at_ms: u64 },
}

/// One change of a log's record under way: its step and its timers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetaRetry {
    step: Step,
    pause_ms: u64,
    give_up_at_ms: u64,
    /// The last setback, reported if patience runs out.
    setback: Setback,
}

impl MetaRetry {
    /// Starts a change at `now_ms` with a read; pauses `pause_ms` after
    /// each setback and gives up `patience_ms` from now.
    pub fn start(now_ms: u64, pause_ms: u64, patience_ms: u64) -> (MetaRetry, MetaCall) {
        assert!(pause_ms > 0, "a retry without a pause spins");
        let retry = MetaRetry {
            step: Step::Reading,
            pause_ms,
            give_up_at_ms: now_ms.saturating_add(patience_ms),
            setback: Setback::Unreachable,
        };
        (retry, MetaCall::ReadRecord)
    }

    /// Whether a read is out (an answer to it is expected).
    pub fn reading(&self) -> bool {
        self.step == Step::Reading
    }

    /// The CAS out, if one is: (expected version, proposed record).
    pub fn casing(&self) -> Option<(u64, &LogMeta)> {
        match &self.step {
            Step::Casing {
                expected_version,
                proposed,
            } => Some((*expected_version, proposed)),
            _ => None,
        }
    }

    /// Reads the record (again), now.
    pub fn read(&mut self) -> MetaCall {
        self.step = Step::Reading;
        MetaCall::ReadRecord
    }

    /// Proposes `record` in place of the one at `expected_version`.
    pub fn propose(&mut self, expected_version: u64, record: LogMeta) -> MetaCall {
        assert!(self.reading(), "a CAS follows the read it decides on");
        self.step = Step::Casing {
            expected_version,
            proposed: record.clone(),
        };
        MetaCall::Cas {
            expected_version,
            record,
        }
    }

    /// A round failed: read again after the pause.
    pub fn pause(&mut self, now_ms: u64, setback: Setback) {
        self.setback = setback;
        self.step = Step::Pausing {
            at_ms: now_ms.saturating_add(self.pause_ms),
        };
    }

    /// When [`on_timeout`](Self::on_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.step {
            Step::Pausing { at_ms } => Some(at_ms),
            Step::Reading | Step::Casing { .. } => None,
        }
    }

    /// Time passed: `Some(Ok(call))` starts the next round, `Some(Err)`
    /// says patience ran out (with the last setback), `None`: not yet.
    pub fn on_timeout(&mut self, now_ms: u64) -> Option<Result<MetaCall, Setback>> {
        let Step::Pausing { at_ms } = self.step else {
            return None;
        };
        if now_ms < at_ms {
            return None;
        }
        if now_ms >= self.give_up_at_ms {
            return Some(Err(self.setback));
        }
        Some(Ok(self.read()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogMeta {
        LogMeta {
            log_id: 1,
            epoch: 1,
            trim_seq: 0,
            segments: Vec::new(),
            deleting: Vec::new(),
            deleted: false,
        }
    }

    #[test]
    fn reads_proposes_pauses_and_gives_up_with_the_last_setback() {
        let (mut r, call) = MetaRetry::start(100, 10, 25);
        assert_eq!(call, MetaCall::ReadRecord);
        assert!(r.reading());
        assert_eq!(r.poll_timeout(), None, "no timer while a call is out");
        let cas = r.propose(3, record());
        assert_eq!(
            cas,
            MetaCall::Cas {
                expected_version: 3,
                record: record()
            }
        );
        assert_eq!(r.casing().map(|(v, _)| v), Some(3));
        r.pause(105, Setback::Conflict);
        assert_eq!(r.poll_timeout(), Some(115));
        assert_eq!(r.on_timeout(114), None, "not due yet");
        assert_eq!(r.on_timeout(115), Some(Ok(MetaCall::ReadRecord)));
        r.pause(120, Setback::Unreachable);
        assert_eq!(
            r.on_timeout(130),
            Some(Err(Setback::Unreachable)),
            "past the patience (125): give up"
        );
    }
}
