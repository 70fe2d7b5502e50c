//! Checking that a consumer read back exactly what a producer committed:
//! every committed entry once, in seq order, with its payload; entries of
//! unknown outcome at most once; nothing else.

use std::collections::HashMap;

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub committed: u64,
    pub read: u64,
    /// Committed entries not read back, or read back with another payload.
    pub lost: u64,
    /// Entries read more than once (by seq or by payload id).
    pub duplicated: u64,
    /// Reads whose seq did not follow the previous one.
    pub out_of_order: u64,
    /// Entries read that were never reported committed nor appended
    /// with an unknown outcome.
    pub phantom: u64,
}

/// Checks the reads (in the order read: seq and payload id) against the
/// committed entries (seq -> payload id). `maybe` lists ids whose append
/// outcome is unknown: finding them is allowed, once.
pub fn verify(
    committed: &HashMap<u64, u64>,
    reads: &[(u64, Option<u64>)],
    maybe: &[u64],
) -> Verdict {
    let mut v = Verdict {
        committed: committed.len() as u64,
        read: reads.len() as u64,
        ..Verdict::default()
    };
    let mut seen_seq: HashMap<u64, Option<u64>> = HashMap::with_capacity(reads.len());
    let mut seen_id: HashMap<u64, u64> = HashMap::with_capacity(reads.len());
    let maybe: std::collections::HashSet<u64> = maybe.iter().copied().collect();
    let mut prev: Option<u64> = None;
    for (seq, id) in reads {
        if let Some(p) = prev {
            if *seq != p + 1 {
                v.out_of_order += 1;
            }
        }
        prev = Some(*seq);
        if seen_seq.insert(*seq, *id).is_some() {
            v.duplicated += 1;
            continue;
        }
        if let Some(id) = id {
            let n = seen_id.entry(*id).or_insert(0);
            *n += 1;
            if *n > 1 {
                v.duplicated += 1;
            }
        }
        if !committed.contains_key(seq) && !id.is_some_and(|i| maybe.contains(&i)) {
            v.phantom += 1;
        }
    }
    for (seq, id) in committed {
        if seen_seq.get(seq) != Some(&Some(*id)) {
            v.lost += 1;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loss_duplicates_and_disorder() {
        let committed: HashMap<u64, u64> = [(0, 10), (1, 11), (2, 12)].into_iter().collect();
        let good = [(0, Some(10)), (1, Some(11)), (2, Some(12))];
        assert_eq!(
            verify(&committed, &good, &[]),
            Verdict {
                committed: 3,
                read: 3,
                ..Verdict::default()
            }
        );
        let v = verify(&committed, &[(0, Some(10)), (2, Some(12))], &[]);
        assert_eq!((v.lost, v.out_of_order), (1, 1));
        let v = verify(
            &committed,
            &[(0, Some(10)), (1, Some(11)), (1, Some(11)), (2, Some(12))],
            &[],
        );
        assert_eq!(v.duplicated, 1);
        let v = verify(
            &committed,
            &[(0, Some(10)), (1, Some(99)), (2, Some(12))],
            &[],
        );
        assert_eq!(v.lost, 1, "a wrong payload at a committed seq is a loss");
        let v = verify(
            &committed,
            &[(0, Some(10)), (1, Some(11)), (2, Some(12)), (3, Some(13))],
            &[13],
        );
        assert_eq!(v.phantom, 0, "an unknown-outcome entry may appear");
    }
}
