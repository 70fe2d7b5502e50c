//! The metadata store of the model: the log's one record and its version.
//!
//! A read is answered within the step that asks for it (it changes
//! nothing, and what it sees is the record as of that step; the CAS that
//! follows is the step that matters). A CAS is one atomic step: applied if
//! the version is the one expected, else a conflict with the current
//! record. Within a budget, a CAS has an unknown outcome instead: the
//! machine is told `Unknown`, and the CAS was applied, lost, or is still in
//! flight in the store and lands at a later step (applied then if the
//! version still matches). Every record stored is checked with
//! `meta_record::validate_record`, as both real stores do.

use trilog_protocol::meta_call::{CasAnswer, RecordAnswer};
use trilog_protocol::meta_record::validate_record;
use trilog_protocol::metadata::LogMeta;
use trilog_protocol::placement::Candidate;

use crate::model::net::Pid;
use crate::model::writers::all_nodes;
use crate::model::{Config, State, LOG_ID};

/// A CAS a machine asked for, not carried out yet.
pub type PendingCas = (u64, LogMeta);

/// What happened to a CAS whose outcome the machine is told is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Applied now.
    Applied,
    /// Never applied.
    Lost,
    /// Still in flight in the store: lands at a later step.
    Later,
}

impl State {
    /// The answer to a read of the record.
    pub fn read_record(&self, cfg: &Config) -> RecordAnswer {
        RecordAnswer::Read {
            version: self.version,
            record: Some(self.meta.clone()),
            alive: Candidate::all_in_one_zone(&all_nodes(cfg)),
        }
    }

    pub(crate) fn store(&mut self, record: LogMeta) {
        if let Err(e) = validate_record(LOG_ID, &record) {
            panic!("a machine proposed a broken record: {e}\n{record:#?}");
        }
        let last = record.segments.last().map_or(0, |s| s.id);
        assert!(
            (last as usize) < self.nodes[0].segs.len(),
            "raise max_segments"
        );
        self.meta = record;
        self.version += 1;
    }

    /// Carries out the CAS that `pid` asked for, atomically.
    pub fn cas_now(&mut self, pid: Pid) -> CasAnswer {
        let (expected, record) = self.cas[pid as usize - 1].take().expect("a CAS asked for");
        if expected == self.version {
            self.store(record);
            CasAnswer::Applied {
                version: self.version,
            }
        } else {
            CasAnswer::Conflict {
                version: self.version,
                record: Some(self.meta.clone()),
            }
        }
    }

    /// Whether the CAS that `pid` asked for would apply now.
    pub fn cas_would_apply(&self, pid: Pid) -> bool {
        self.cas[pid as usize - 1]
            .as_ref()
            .is_some_and(|(expected, _)| *expected == self.version)
    }

    /// The CAS that `pid` asked for meets `fate`; the answer is unknown.
    pub fn cas_unknown(&mut self, pid: Pid, fate: Fate) {
        let (expected, record) = self.cas[pid as usize - 1].take().expect("a CAS asked for");
        match fate {
            Fate::Applied => {
                assert_eq!(expected, self.version, "applied only where it would");
                self.store(record);
            }
            Fate::Lost => {}
            Fate::Later => {
                assert!(self.store_in_flight.is_none(), "one CAS in flight");
                self.store_in_flight = Some((expected, record));
            }
        }
    }

    /// The CAS still in flight in the store lands.
    pub fn store_lands(&mut self) {
        let (expected, record) = self.store_in_flight.take().expect("a CAS in flight");
        if expected == self.version {
            self.store(record);
        }
    }
}
