//! What a [`super::ShardMachine`] is told and what it asks its driver to
//! do: the names of segments and connections, the append as the machine
//! sees it, the actions, and the answers it builds.

use trilog_wire::limits::ERROR_MESSAGE_BYTES_MAX;
use trilog_wire::message::{ErrorCode, ErrorMsg};
use trilog_wire::Message;

use crate::refusal;
use crate::replica::{Durable, Refusal};

/// One segment replica of a node: a log and a segment of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentKey {
    pub log_id: u64,
    pub segment: u64,
}

/// A connection, as its driver names it. Opaque to the machine; only
/// compared, so the driver must not reuse an id while the machine may still
/// owe it something (call [`super::ShardMachine::handle_conn_closed`]
/// first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// An append as the machine decides on it: everything but the entries,
/// which stay in the driver's receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendRequest {
    pub key: SegmentKey,
    pub epoch: u64,
    pub first_seq: u64,
    pub first_offset: u64,
    /// Entries in the append.
    pub count: u64,
    pub commit: u64,
}

/// What to do with the entries of an append just offered, before carrying
/// out the step's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stage entries `[skip, count)` of the append, at offsets
    /// `first_offset + skip ..`; the replica's staged length is then `end`.
    Entries { skip: u64, end: u64 },
    /// Nothing to stage (held already, refused, answered): drop the entries.
    Nothing,
    /// The segment is being created: keep the append's entries until an
    /// [`Action::Reoffer`] names it (or an answer to it ends it).
    Park,
}

/// The machine's decision on an offered append.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an append step says what to stage and what to send"]
pub struct AppendStep {
    pub stage: Stage,
    pub actions: Actions,
}

/// One thing the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer request `request_id` of `conn` with `message`. This is the
    /// request's last answer: whatever the driver holds for it (its frame,
    /// its in-flight bytes) may go.
    Send {
        conn: ConnId,
        request_id: u64,
        message: Message,
    },
    /// Create the segment's files (a header naming `first_seq` and
    /// `epoch`), then call `handle_created`.
    Create {
        key: SegmentKey,
        first_seq: u64,
        epoch: u64,
    },
    /// The segment of a parked append exists now: offer that append again
    /// with `handle_append`, before any other request of the shard.
    Reoffer { conn: ConnId, request_id: u64 },
    /// The segment has staged entries: include it in the next group
    /// commit, then call `handle_durable` (or `handle_flush_failed`).
    Flush { key: SegmentKey },
    /// Write `state` to the segment's control file (at most one such write
    /// per segment is asked for at a time), then call
    /// `handle_control_durable` (or `handle_control_failed`).
    PersistControl { key: SegmentKey, state: Durable },
    /// The seal at `len` is durable: drop the entries at or past `len` in
    /// storage.
    ApplySeal { key: SegmentKey, len: u64 },
    /// Read the durable records `[from, end)`, at most `max_bytes` of them
    /// but at least one, and answer `ReadResponse{from_offset: from, count,
    /// watermark, sealed_len, records}`; if the disk read fails, call
    /// `handle_read_failed`. `from < end`, and `end` is durable.
    ServeRead {
        conn: ConnId,
        request_id: u64,
        key: SegmentKey,
        from: u64,
        end: u64,
        max_bytes: u32,
        watermark: u64,
        sealed_len: Option<u64>,
    },
    /// Ask the metadata store for log `log_id`'s record, then call
    /// `handle_log_record` with it (or with the lookup's failure).
    LookupLog { log_id: u64 },
    /// The seal the record tells (at `len`) was refused by this replica:
    /// report it loudly; the segment is left for repair.
    LearntSealRefused {
        key: SegmentKey,
        len: u64,
        refusal: Refusal,
    },
    /// Unlink the segment's files (whichever exist; none is fine), drop its
    /// in-memory state, sync the directory, then call `handle_deleted`.
    /// Jobs of the segment still running may end later: the machine ignores
    /// what they report.
    DeleteFiles { key: SegmentKey },
}

/// The actions of one call, in the order they must be carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "the driver must carry out every action"]
pub struct Actions(Vec<Action>);

impl Actions {
    pub fn new() -> Actions {
        Actions(Vec::new())
    }

    pub fn push(&mut self, action: Action) {
        self.0.push(action);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Action> {
        self.0.iter()
    }

    /// Moves `other`'s actions after these.
    pub fn extend(&mut self, other: Actions) {
        self.0.extend(other.0);
    }

    pub(super) fn send(&mut self, conn: ConnId, request_id: u64, message: Message) {
        self.push(Action::Send {
            conn,
            request_id,
            message,
        });
    }
}

impl IntoIterator for Actions {
    type Item = Action;
    type IntoIter = std::vec::IntoIter<Action>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// An error answer about `key`, its message cut to the wire's limit (at a
/// character boundary, so any text fits).
pub(super) fn error(key: SegmentKey, code: ErrorCode, value: u64, message: String) -> Message {
    let mut message = message;
    if message.len() > ERROR_MESSAGE_BYTES_MAX {
        let mut cut = ERROR_MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    Message::ErrorMsg(ErrorMsg {
        code,
        log_id: key.log_id,
        segment: key.segment,
        value,
        message,
    })
}

/// A replica's refusal, coded by [`refusal::to_wire`].
pub(super) fn refused(key: SegmentKey, r: Refusal) -> Message {
    let (code, value) = refusal::to_wire(r);
    error(key, code, value, format!("{r:?}"))
}

/// The node could not serve the request (a disk error).
pub(super) fn internal(key: SegmentKey, why: &str) -> Message {
    error(key, ErrorCode::Internal, 0, format!("node error: {why}"))
}

/// The answer to a request that failed the driver's checks (a malformed
/// frame, an entry whose crc does not match): `value` names what failed,
/// e.g. the index of the entry. The driver then closes the connection.
pub fn bad_request(key: SegmentKey, value: u64, message: String) -> Message {
    error(key, ErrorCode::BadRequest, value, message)
}

/// The answer to a request the connection's certificate role may not send
/// ([`crate::access::Role::may_send`]). The connection stays open: the
/// peer may still send what its role allows.
pub fn forbidden(role: crate::access::Role, kind: trilog_wire::Kind) -> Message {
    let key = SegmentKey {
        log_id: 0,
        segment: 0,
    };
    error(
        key,
        ErrorCode::Forbidden,
        0,
        format!("forbidden: a certificate of role {role} may not send {kind:?}"),
    )
}

/// The segment was deleted here (a trim, or its log's deletion): its
/// entries are gone from this node and it takes no more requests.
pub(super) fn deleted(key: SegmentKey) -> Message {
    error(
        key,
        ErrorCode::Deleted,
        0,
        "segment deleted (trimmed)".into(),
    )
}

/// The node is read-only for a full disk: it takes no new segment and no
/// append. The sender counts the replica as failed and switches away.
/// `Full`: the node takes no new data, for its full disk or because it
/// is leaving the cluster (either way a failed replica for the sender).
pub(super) fn full(key: SegmentKey, leaving: bool) -> Message {
    let why = if leaving {
        "node is read-only: it is leaving the cluster (decommissioned)"
    } else {
        "node is read-only: its disk is full"
    };
    error(key, ErrorCode::Full, 0, why.into())
}

pub(super) fn not_found(key: SegmentKey) -> Message {
    error(key, ErrorCode::NotFound, 0, "no such segment here".into())
}

pub(super) fn wrong_shard(key: SegmentKey, owner: u32) -> Message {
    error(
        key,
        ErrorCode::WrongShard,
        u64::from(owner),
        format!("segment belongs to shard {owner}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let key = SegmentKey {
            log_id: 1,
            segment: 2,
        };
        // 'é' is two bytes: the limit falls inside one.
        let long = format!("x{}", "é".repeat(ERROR_MESSAGE_BYTES_MAX));
        let Message::ErrorMsg(m) = internal(key, &long) else {
            panic!("not an error");
        };
        assert!(m.message.len() <= ERROR_MESSAGE_BYTES_MAX);
        assert!(m.message.len() >= ERROR_MESSAGE_BYTES_MAX - 1);
        assert_eq!(m.code, ErrorCode::Internal);
    }
}
