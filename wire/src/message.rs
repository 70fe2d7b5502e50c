//! The data-plane messages between clients and log nodes.
//!
//! Each is an rkyv archive behind a frame of its [`Kind`](crate::Kind).
//! Lengths and offsets count entries within one segment; a seq is
//! `first_seq + offset`.

use rkyv::{Archive, Deserialize, Serialize};

/// First frame on every connection, from the client.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub client: String,
}

/// The node's answer to [`Hello`]: who it is and where each shard listens.
/// A segment lives on shard `shard_of(log, segment, shard_count)`; a client
/// sends its requests for that segment to that shard's port.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HelloOk {
    pub node_id: u64,
    pub shard: u32,
    pub shard_count: u32,
    pub shard_ports: Vec<u16>,
}

/// One entry: the producer's crc32c of the payload travels with it to disk
/// and back to the consumer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub crc: u32,
    pub payload: Vec<u8>,
}

impl Entry {
    pub fn new(payload: Vec<u8>) -> Entry {
        Entry {
            crc: crate::crc::crc32c(&payload),
            payload,
        }
    }
}

/// Append `entries` at `first_offset` of a segment. `commit` is the
/// producer's commit watermark (an offset in this segment) so far.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub log_id: u64,
    pub segment: u64,
    pub epoch: u64,
    pub first_seq: u64,
    pub first_offset: u64,
    pub commit: u64,
    pub entries: Vec<Entry>,
}

/// Sent once the replica's first `durable_len` entries are on disk.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub log_id: u64,
    pub segment: u64,
    pub durable_len: u64,
}

/// The commit watermark alone, when the producer has nothing to append.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub log_id: u64,
    pub segment: u64,
    pub epoch: u64,
    pub commit: u64,
}

/// Read records from `from_offset`, never past `limit` (the sealed length
/// the consumer learnt from metadata, or `u64::MAX` for "up to what the
/// replica knows is committed"). With nothing readable, wait up to
/// `wait_ms` for more.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub log_id: u64,
    pub segment: u64,
    pub from_offset: u64,
    pub limit: u64,
    pub max_bytes: u32,
    pub wait_ms: u32,
}

/// `count` records from `from_offset`, in the record layout of
/// [`crate::record`], as the node read them from disk.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReadResponse {
    pub log_id: u64,
    pub segment: u64,
    pub from_offset: u64,
    pub count: u32,
    pub watermark: u64,
    pub sealed_len: Option<u64>,
    pub records: Vec<u8>,
}

/// Seal a segment at `len`: the replica drops entries at or past `len`
/// and refuses appends from then on.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    pub log_id: u64,
    pub segment: u64,
    pub epoch: u64,
    pub len: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealAck {
    pub log_id: u64,
    pub segment: u64,
    pub len: u64,
}

/// Fence a segment at `epoch`: the replica durably refuses appends of any
/// older epoch, then answers what it holds.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub log_id: u64,
    pub segment: u64,
    pub epoch: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceAck {
    pub log_id: u64,
    pub segment: u64,
    pub epoch: u64,
    pub durable_len: u64,
    pub watermark: u64,
    pub sealed_len: Option<u64>,
}

/// Delete this node's replica of a segment (a trim or a log's deletion).
/// Answered [`DeleteSegmentAck`] once the files are unlinked and the
/// directory synced; a segment the node does not hold is answered the same.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteSegment {
    pub log_id: u64,
    pub segment: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteSegmentAck {
    pub log_id: u64,
    pub segment: u64,
}

/// Why a request was refused. `value` carries the number the code names.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(compare(PartialEq), derive(Debug))]
#[repr(u8)]
pub enum ErrorCode {
    /// The segment is sealed; `value` is its sealed length.
    Sealed,
    /// The segment is fenced; `value` is the fence epoch.
    Fenced,
    /// The append does not start at the replica's length; `value` is it.
    Gap,
    /// The replica has no such segment.
    NotFound,
    /// The segment belongs to another shard; `value` is that shard.
    WrongShard,
    /// The request broke a limit or was malformed.
    BadRequest,
    /// The node could not serve it (disk error, full disk).
    Internal,
    /// A seal asks for more entries than the replica holds, or for another
    /// length than an earlier seal; `value` is the replica's length. The
    /// protocol was broken somewhere: a sealer never asks for entries that
    /// not every replica acknowledged.
    SealConflict,
    /// A seal below the commit watermark the replica knows (it would drop
    /// committed entries); `value` is that watermark. Refused whoever sent
    /// it.
    SealBelowCommit,
    /// The replica does not hold entries it should from offset `value` on
    /// (damaged on disk, or cut short below its seal): read them from
    /// another replica. Entries before `value` are served as usual.
    Damaged,
    /// The segment was deleted here (trimmed, or its log deleted).
    Deleted,
    /// The node is read-only because its disk is full (below its reserve,
    /// or an allocation failed for space): it creates no segment and takes
    /// no append. Not a refusal of the protocol: the sender treats the
    /// replica as failed and switches away; reads, seals and deletes are
    /// still served. `value` is 0.
    Full,
    /// The connection's certificate names a role that may not send this
    /// request (mutual TLS; `trilog_protocol::access`). `value` is 0.
    Forbidden,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub log_id: u64,
    pub segment: u64,
    pub value: u64,
    pub message: String,
}

/// Which shard of a node owns a segment. Clients and nodes must agree, so
/// it lives here. FNV-1a over the two ids keeps it stable across builds.
pub fn shard_of(log_id: u64, segment: u64, shard_count: u32) -> u32 {
    assert!(shard_count > 0, "a node has at least one shard");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in log_id
        .to_le_bytes()
        .iter()
        .chain(segment.to_le_bytes().iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shard_count)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_spreads_and_is_in_range() {
        let mut seen = [0u32; 4];
        for seg in 0..400 {
            let s = shard_of(7, seg, 4);
            assert!(s < 4);
            seen[s as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "uneven spread {seen:?}");
        assert_eq!(shard_of(1, 2, 1), 0);
    }
}
