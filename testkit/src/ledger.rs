//! What became of every append a test or a tool made, and the check of a
//! log read back against it. An append is filed as
//!
//! - committed: the append resolved to a seq; the entry must be read back
//!   at that seq, once;
//! - maybe: the outcome is unknown (`AppendError::Indeterminate`); the
//!   entry may be read back, at most once;
//! - refused: the producer never took the entry (`AppendError::Closed`);
//!   it must never be read back, so it is *not* in the maybe set.

use std::collections::HashMap;

use trilog_client::AppendError;

use crate::verify::{verify, Verdict};

/// What became of every append.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// seq -> id of every append that resolved to a seq.
    pub committed: HashMap<u64, u64>,
    /// Ids whose outcome is unknown.
    pub maybe: Vec<u64>,
    /// Ids no producer took.
    pub refused: Vec<u64>,
    /// Ids handed to a producer (all of the above).
    pub appended: u64,
    /// Seqs that two appends resolved to (must stay 0).
    pub seq_reused: u64,
    /// The later (seq, id) of each such pair: `committed` keeps the first.
    pub reused: Vec<(u64, u64)>,
    /// The first errors seen, for the report.
    pub first_errors: Vec<String>,
}

/// How many error messages a ledger keeps.
const LEDGER_ERRORS_MAX: usize = 8;

impl Ledger {
    /// Files the outcome of the append of payload `id`.
    pub fn file(&mut self, id: u64, outcome: &Result<u64, AppendError>) {
        self.appended += 1;
        match outcome {
            Ok(seq) => match self.committed.entry(*seq) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(id);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.seq_reused += 1;
                    self.reused.push((*seq, id));
                }
            },
            Err(AppendError::Indeterminate { .. }) => self.maybe.push(id),
            Err(AppendError::Closed | AppendError::TooLarge { .. }) => self.refused.push(id),
        }
        if let Err(e) = outcome {
            if self.first_errors.len() < LEDGER_ERRORS_MAX {
                self.first_errors.push(format!("append {id}: {e}"));
            }
        }
    }

    /// Checks `reads` (seq, payload id, in the order read) against every
    /// acknowledged append, `maybe` holding the ids of unknown outcome.
    /// Two appends acknowledged at one seq cannot both be read there: the
    /// one not read counts as lost.
    pub fn verify(&self, reads: &[(u64, Option<u64>)], maybe: &[u64]) -> Verdict {
        let mut v = verify(&self.committed, reads, maybe);
        if !self.reused.is_empty() {
            let at: HashMap<u64, Option<u64>> = reads.iter().copied().collect();
            for (seq, id) in &self.reused {
                if at.get(seq) != Some(&Some(*id)) {
                    v.lost += 1;
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown() -> AppendError {
        AppendError::Indeterminate { why: "test".into() }
    }

    #[test]
    fn files_each_outcome_where_the_check_expects_it() {
        let mut l = Ledger::default();
        l.file(10, &Ok(0));
        l.file(11, &Err(unknown()));
        l.file(12, &Err(AppendError::Closed));
        l.file(13, &Ok(1));
        assert_eq!(l.appended, 4);
        let committed: HashMap<u64, u64> = [(0, 10), (1, 13)].into_iter().collect();
        assert_eq!(l.committed, committed);
        assert_eq!(
            (l.maybe.as_slice(), l.refused.as_slice()),
            (&[11][..], &[12][..])
        );
        assert_eq!(l.first_errors.len(), 2);
        let v = l.verify(&[(0, Some(10)), (1, Some(13))], &l.maybe);
        assert_eq!((v.lost, v.phantom, v.read), (0, 0, 2));
        // The unknown one may show up; the refused one may not.
        let v = l.verify(&[(0, Some(10)), (1, Some(13)), (2, Some(11))], &l.maybe);
        assert_eq!(v.phantom, 0);
        let v = l.verify(&[(0, Some(10)), (1, Some(13)), (2, Some(12))], &l.maybe);
        assert_eq!(v.phantom, 1, "a refused append is in the log");
    }

    #[test]
    fn two_appends_acknowledged_at_one_seq_lose_one() {
        let mut l = Ledger::default();
        l.file(20, &Ok(5));
        l.file(21, &Ok(5));
        assert_eq!((l.seq_reused, l.reused.as_slice()), (1, &[(5, 21)][..]));
        let v = l.verify(&[(5, Some(20))], &[]);
        assert_eq!(v.lost, 1, "the second ack at seq 5 was not read there");
    }
}
