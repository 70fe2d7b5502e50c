//! Whether the metadata record lists a node's copy of a segment: the one
//! rule a node follows before it removes a copy on anyone's word.
//!
//! A `DeleteSegment` may come from any peer; the node unlinks only a copy
//! the record does not list as a live replica on it (a trimmed or deleted
//! segment, one dropped from the record, or one whose replica set no
//! longer names this node), so no peer can make it drop data the log
//! still counts on. Trim and log deletion mark segments `deleting` by CAS
//! before they send a delete, so their deletes always pass.

use crate::metadata::LogMeta;
use crate::NodeId;

/// What the record says of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A replica the log counts on: keep it.
    Listed,
    /// Not counted on, and why: it may go.
    Unlisted(Unlisted),
}

/// Why a copy is not counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlisted {
    /// The log has no record, or it is deleted.
    NoLog,
    /// The segment is marked for deletion (a trim or the log's deletion).
    Deleting,
    /// The record has no such segment (dropped after a trim, or never
    /// published: a losing takeover's, a cancelled repair's).
    NoSegment,
    /// The segment's replicas do not name this node (repaired away).
    NotAReplica,
}

/// What `record` (`None`: no such log) says of `me`'s copy of `segment`.
pub fn listing(record: Option<&LogMeta>, segment: u64, me: NodeId) -> Listing {
    let Some(record) = record.filter(|r| !r.deleted) else {
        return Listing::Unlisted(Unlisted::NoLog);
    };
    if record.deleting.iter().any(|s| s.id == segment) {
        return Listing::Unlisted(Unlisted::Deleting);
    }
    match record.segments.iter().find(|s| s.id == segment) {
        None => Listing::Unlisted(Unlisted::NoSegment),
        Some(s) if s.replicas.contains(&me) => Listing::Listed,
        Some(_) => Listing::Unlisted(Unlisted::NotAReplica),
    }
}

#[cfg(test)]
mod tests {
    use trilog_wire::meta::SegmentMeta;

    use super::*;

    fn seg(id: u64, replicas: &[NodeId]) -> SegmentMeta {
        SegmentMeta {
            id,
            replicas: replicas.to_vec(),
            first_seq: id * 10,
            epoch: 1,
            sealed_len: Some(10),
        }
    }

    #[test]
    fn only_a_live_replica_on_this_node_is_listed() {
        let mut r = LogMeta {
            log_id: 3,
            epoch: 1,
            trim_seq: 10,
            segments: vec![seg(1, &[1, 2, 3]), seg(2, &[2, 3, 4])],
            deleting: vec![seg(0, &[1, 2, 3])],
            deleted: false,
        };
        assert_eq!(listing(Some(&r), 1, 1), Listing::Listed);
        assert_eq!(
            listing(Some(&r), 2, 1),
            Listing::Unlisted(Unlisted::NotAReplica)
        );
        assert_eq!(
            listing(Some(&r), 0, 1),
            Listing::Unlisted(Unlisted::Deleting)
        );
        assert_eq!(
            listing(Some(&r), 7, 1),
            Listing::Unlisted(Unlisted::NoSegment)
        );
        assert_eq!(listing(None, 1, 1), Listing::Unlisted(Unlisted::NoLog));
        r.deleted = true;
        assert_eq!(listing(Some(&r), 1, 1), Listing::Unlisted(Unlisted::NoLog));
    }
}
