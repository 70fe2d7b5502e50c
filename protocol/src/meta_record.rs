//! The shape every log's metadata record must keep (docs/protocol.md, docs/wire.md),
//! checked by each metadata store before it stores a record: the embedded
//! store and the etcd one (both in `trilog_meta`). Pure: a record in, a
//! typed reason out.

use trilog_wire::limits::REPLICAS_MAX;
use trilog_wire::meta::{LogMeta, SegmentMeta};

/// Most segments in one log's record (so that a record fits in a frame).
/// Trimming drops segments from the front, which keeps long-lived logs below it.
pub const SEGMENTS_PER_LOG_MAX: usize = 4096;

/// Why a record was refused: it breaks the shape every log must keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of log {record} stored under log {key}")]
    LogIdMismatch { key: u64, record: u64 },
    #[error("{count} segments, over the limit of {SEGMENTS_PER_LOG_MAX}")]
    TooManySegments { count: usize },
    #[error(
        "segment at index {index} has id {found}, expected at least {expected} (ids must grow along the chain)"
    )]
    SegmentIdOrder {
        index: usize,
        expected: u64,
        found: u64,
    },
    #[error("segment {segment} is open but is not the last segment")]
    OpenNotLast { segment: u64 },
    #[error("segment {segment} starts at seq {found}, expected {expected} (end of the previous segment)")]
    FirstSeqMismatch {
        segment: u64,
        expected: u64,
        found: u64,
    },
    #[error("segment {segment} ends past the largest seq")]
    SeqOverflow { segment: u64 },
    #[error(
        "segment {segment} has epoch {segment_epoch}, above the record's epoch {record_epoch}"
    )]
    EpochAboveRecord {
        segment: u64,
        segment_epoch: u64,
        record_epoch: u64,
    },
    #[error("segment {segment} has no replicas")]
    NoReplicas { segment: u64 },
    #[error("segment {segment} has {count} replicas, over the limit of {REPLICAS_MAX}")]
    TooManyReplicas { segment: u64, count: usize },
    #[error("segment {segment} names node {node} twice")]
    DuplicateReplica { segment: u64, node: u64 },
    #[error("segment {segment} is both in the chain and being deleted, or deleted twice")]
    DeletingTwice { segment: u64 },
    #[error("segment {segment} is being deleted but is open")]
    DeletingOpen { segment: u64 },
    #[error("the log is deleted but segment {segment} is still in its chain")]
    DeletedWithSegments { segment: u64 },
}

/// Checks that `record` may be stored as log `log_id`:
/// - its `log_id` is `log_id`, and it has at most [`SEGMENTS_PER_LOG_MAX`]
///   segments;
/// - segment ids are consecutive from the first one (trimmed segments may be
///   gone from the front, never from the middle);
/// - only the last segment may be open (`sealed_len` None);
/// - segment k+1 starts where segment k ends: `first_seq_k + sealed_len_k`;
/// - no segment has an epoch above the record's epoch;
/// - each segment has 1 to [`REPLICAS_MAX`] replicas, all distinct;
/// - the `deleting` segments (trim and delete, `trilog_protocol::trim`)
///   count towards the limit, are sealed, have valid replica lists, and
///   appear once, never also in the chain; a deleted log has no chain.
///
/// Whether a change from one valid record to another is allowed (a sealed
/// segment must not change, the epoch must not go back...) is a protocol
/// decision and belongs to `trilog_protocol`, not to the store.
pub fn validate_record(log_id: u64, record: &LogMeta) -> Result<(), RecordError> {
    if record.log_id != log_id {
        return Err(RecordError::LogIdMismatch {
            key: log_id,
            record: record.log_id,
        });
    }
    let segments = &record.segments;
    let count = segments.len() + record.deleting.len();
    if count > SEGMENTS_PER_LOG_MAX {
        return Err(RecordError::TooManySegments { count });
    }
    validate_deleting(record)?;
    for (index, s) in segments.iter().enumerate() {
        validate_replicas(s)?;
        if s.epoch > record.epoch {
            return Err(RecordError::EpochAboveRecord {
                segment: s.id,
                segment_epoch: s.epoch,
                record_epoch: record.epoch,
            });
        }
        let end = match s.sealed_len {
            Some(len) => s
                .first_seq
                .checked_add(len)
                .ok_or(RecordError::SeqOverflow { segment: s.id })?,
            None if index + 1 < segments.len() => {
                return Err(RecordError::OpenNotLast { segment: s.id })
            }
            None => continue,
        };
        let Some(next) = segments.get(index + 1) else {
            continue;
        };
        // Ids grow along the chain; a takeover skips the ids that racing
        // takeovers may have written (`trilog_protocol::metadata::next_segment_id`).
        if next.id <= s.id {
            return Err(RecordError::SegmentIdOrder {
                index: index + 1,
                expected: s.id.wrapping_add(1),
                found: next.id,
            });
        }
        if next.first_seq != end {
            return Err(RecordError::FirstSeqMismatch {
                segment: next.id,
                expected: end,
                found: next.first_seq,
            });
        }
    }
    Ok(())
}

fn validate_replicas(s: &SegmentMeta) -> Result<(), RecordError> {
    if s.replicas.is_empty() {
        return Err(RecordError::NoReplicas { segment: s.id });
    }
    if s.replicas.len() > REPLICAS_MAX {
        return Err(RecordError::TooManyReplicas {
            segment: s.id,
            count: s.replicas.len(),
        });
    }
    for (i, node) in s.replicas.iter().enumerate() {
        if s.replicas[..i].contains(node) {
            return Err(RecordError::DuplicateReplica {
                segment: s.id,
                node: *node,
            });
        }
    }
    Ok(())
}

fn validate_deleting(record: &LogMeta) -> Result<(), RecordError> {
    if record.deleted {
        if let Some(s) = record.segments.first() {
            return Err(RecordError::DeletedWithSegments { segment: s.id });
        }
    }
    for (i, s) in record.deleting.iter().enumerate() {
        validate_replicas(s)?;
        if s.sealed_len.is_none() {
            return Err(RecordError::DeletingOpen { segment: s.id });
        }
        let twice = record.deleting[..i].iter().any(|d| d.id == s.id)
            || record.segments.iter().any(|c| c.id == s.id);
        if twice {
            return Err(RecordError::DeletingTwice { segment: s.id });
        }
    }
    Ok(())
}
