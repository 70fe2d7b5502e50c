//! Decommission: taking a node out of the cluster for good, without
//! losing a replica on the way.
//!
//! An operator marks the node leaving (`NodeMode::Leaving`, kept by the
//! metadata store). From then on:
//! - placement skips it (`placement::writable_candidates`), and the node
//!   refuses new data (appends answered `Full`), so every producer with an
//!   open segment on it switches that segment away at its next append;
//! - repair treats each of its sealed copies as lost at once, with no
//!   grace period, yet still reads from it while it lives
//!   (`repair::LostNodes`): a copy is moved to a node in a zone the other
//!   replicas are not in, and swapped into the record by CAS, exactly as a
//!   lost replica is;
//! - it keeps serving reads, seals and deletes of what it holds.
//!
//! It is removed (`NodeMode::Removed`, final: its id never registers
//! again) only once no log's chain lists it ([`Holding::blocks_removal`]):
//! then every segment it held has its replicas elsewhere, and removing it
//! loses nothing. Segments a trim took out of the chain (`deleting`) do not
//! block: they are unlinked on it first while it lives, and a removed node
//! counts as having unlinked them (`trim::DeletionRound::forget`), since
//! its disk never serves the cluster again.
//!
//! What can hold a decommission up: an open segment whose producer does
//! not append any more (a log left open by a producer that died: its
//! takeover seals it, and the sealed copy then moves), and a sealed
//! segment with no other live replica to copy to (a cluster without
//! enough writable nodes: placement needs as many as a segment has
//! replicas, outside the leaving one).

use crate::metadata::LogMeta;
use crate::NodeId;

/// What one log's record still keeps on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    /// Sealed segments of the chain listing the node: repair moves them.
    pub sealed: Vec<u64>,
    /// The open segment, if it lists the node: its producer switches.
    pub open: Vec<u64>,
    /// Segments being deleted whose replicas include the node.
    pub deleting: Vec<u64>,
}

impl Holding {
    /// Whether the node may not be removed yet for this log.
    pub fn blocks_removal(&self) -> bool {
        !self.sealed.is_empty() || !self.open.is_empty()
    }
}

/// What `record` keeps on `node` (see [`Holding`]).
pub fn holding(record: &LogMeta, node: NodeId) -> Holding {
    let mut h = Holding::default();
    for s in record
        .segments
        .iter()
        .filter(|s| s.replicas.contains(&node))
    {
        match s.sealed_len {
            Some(_) => h.sealed.push(s.id),
            None => h.open.push(s.id),
        }
    }
    h.deleting = record
        .deleting
        .iter()
        .filter(|s| s.replicas.contains(&node))
        .map(|s| s.id)
        .collect();
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SegmentMeta;

    fn seg(id: u64, replicas: &[NodeId], sealed_len: Option<u64>) -> SegmentMeta {
        SegmentMeta {
            id,
            replicas: replicas.to_vec(),
            first_seq: id * 10,
            epoch: 1,
            sealed_len,
        }
    }

    #[test]
    fn sealed_and_open_copies_block_removal_and_deletions_do_not() {
        let record = LogMeta {
            log_id: 1,
            epoch: 1,
            trim_seq: 10,
            segments: vec![
                seg(1, &[1, 2, 3], Some(10)),
                seg(2, &[2, 4, 5], Some(10)),
                seg(3, &[1, 4, 5], None),
            ],
            deleting: vec![seg(0, &[1, 2, 3], Some(10))],
            deleted: false,
        };
        let h = holding(&record, 1);
        assert_eq!(
            (h.sealed, h.open, h.deleting.clone()),
            (vec![1], vec![3], vec![0])
        );
        assert!(holding(&record, 1).blocks_removal());
        assert_eq!(holding(&record, 4).sealed, vec![2]);
        let three = holding(&record, 3);
        assert_eq!((three.sealed, three.deleting), (vec![1], vec![0]));
        let none = holding(&record, 9);
        assert_eq!(none, Holding::default());
        assert!(!none.blocks_removal());
        let mut moved = record.clone();
        moved.segments[0].replicas = vec![6, 2, 3];
        moved.segments[2].replicas = vec![6, 4, 5];
        let h = holding(&moved, 1);
        assert!(!h.blocks_removal(), "only a deletion left: {h:?}");
        assert_eq!(h.deleting, vec![0]);
    }
}
