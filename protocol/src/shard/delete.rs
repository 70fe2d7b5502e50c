//! Deleting a segment replica (a trim, or its log's deletion): see
//! `crate::trim` for who asks and when.
//!
//! A delete takes the segment out of the machine at once: everything it
//! still owed (acks, fences, seals, parked reads) is answered `Deleted`, and
//! so is every later request for it, so no append at offset 0 or fence can
//! create it again while this node runs (the set of deleted segments is in
//! memory only: a trimmed segment's sealed replicas get no more requests
//! from a correct producer). The driver unlinks the files and syncs the
//! directory; only then is the delete answered, so an answer means the
//! files are durably gone. A delete of a segment this node does not know
//! still unlinks (a crash may have left files that recovery skipped) and
//! is answered the same: deleting is idempotent. Such deletes of segments
//! the node never held are remembered only up to `DELETED_UNKNOWN_MAX`
//! (any peer can send made-up keys; memory must not grow with them). A segment being created
//! cannot be deleted yet: the delete is answered `Internal` and retried.
//!
//! **Checked against the record.** Any peer may send a delete, so a shard
//! that can look records up (the one that learns seals) first asks for the
//! log's record ([`Action::LookupLog`], one lookup per log at a time) and
//! removes the copy only if the record does not list it as a live replica
//! on this node ([`crate::listing`]); a delete of a listed copy is refused
//! `BadRequest`, one whose lookup failed is answered `Internal` (asked
//! again later). Trim and log deletion mark the segment `deleting` by CAS
//! before they send deletes, and the lookup is sent after the delete
//! arrived, so their deletes always pass. At most
//! `DELETES_CHECKING_MAX` deletes wait for records at a time.

use trilog_wire::message::DeleteSegmentAck;
use trilog_wire::Message;

use super::action::{bad_request, deleted, internal};
use super::{
    Action, Actions, ConnId, SegmentKey, ShardMachine, DELETED_UNKNOWN_MAX, DELETES_CHECKING_MAX,
};
use crate::listing::{listing, Listing};
use crate::metadata::LogMeta;

impl ShardMachine {
    /// A `DeleteSegment` for `key`.
    pub fn handle_delete(&mut self, conn: ConnId, request_id: u64, key: SegmentKey) -> Actions {
        let mut out = Actions::new();
        if let Some(answer) = self.misdirected(key) {
            out.send(conn, request_id, answer);
            return out;
        }
        if self.deleted.contains(&key) {
            out.send(conn, request_id, delete_ack(key));
            return out;
        }
        if self.learning.is_none() {
            // No record to ask (a shard without a store): deleted on the
            // sender's word.
            return self.delete_now(conn, request_id, key);
        }
        let checking: usize = self.deletes_checking.values().map(Vec::len).sum();
        if checking >= DELETES_CHECKING_MAX {
            let why = "too many deletes being checked; delete it again later";
            out.send(conn, request_id, internal(key, why));
            return out;
        }
        self.deletes_checking
            .entry(key.log_id)
            .or_default()
            .push((conn, request_id, key));
        self.ask_record(key.log_id, &mut out);
        out
    }

    /// The deletes of `log_id` that waited for its record (`Err`: the
    /// lookup failed), decided.
    pub(super) fn decide_deletes(
        &mut self,
        log_id: u64,
        record: &Result<Option<&LogMeta>, String>,
    ) -> Actions {
        let mut out = Actions::new();
        let Some(me) = self.learning.as_ref().map(|l| l.me) else {
            unreachable!("deletes are checked only with seal learning");
        };
        for (conn, request_id, key) in self.deletes_checking.remove(&log_id).unwrap_or_default() {
            match record {
                Err(why) => {
                    let why = format!("cannot check the record: {why}; delete it again later");
                    out.send(conn, request_id, internal(key, &why));
                }
                Ok(r) => match listing(*r, key.segment, me) {
                    Listing::Listed => {
                        let why = format!(
                            "log {} segment {} is a live replica on node {me} in the record: not deleted",
                            key.log_id, key.segment
                        );
                        out.send(conn, request_id, bad_request(key, 0, why));
                    }
                    Listing::Unlisted(_) => out.extend(self.delete_now(conn, request_id, key)),
                },
            }
        }
        out
    }

    /// Deletes `key` now: the segment leaves the machine and its files are
    /// unlinked.
    fn delete_now(&mut self, conn: ConnId, request_id: u64, key: SegmentKey) -> Actions {
        let mut out = Actions::new();
        if self.deleted.contains(&key) {
            out.send(conn, request_id, delete_ack(key));
            return out;
        }
        if let Some(waiters) = self.deleting.get_mut(&key) {
            waiters.push((conn, request_id));
            return out;
        }
        if self.creating.contains_key(&key) {
            let why = "segment being created; delete it again later";
            out.send(conn, request_id, internal(key, why));
            return out;
        }
        let held = self.segments.contains_key(&key);
        if !held {
            self.deleting_unknown.insert(key);
        }
        if let Some(mut segment) = self.segments.remove(&key) {
            // What the segment owed goes unanswered by its replica: answer
            // it `Deleted` (through `fail`, which drains acks and control
            // requests alike), then the reads parked on it.
            segment.fail(key, "segment deleted".into(), &mut out);
        }
        self.deleting.insert(key, vec![(conn, request_id)]);
        for read in self.reads.take_key(key) {
            out.send(read.conn, read.request_id, deleted(key));
        }
        out.push(Action::DeleteFiles { key });
        out
    }

    /// The files asked for by [`Action::DeleteFiles`] are durably gone
    /// (`Ok`) or could not all be unlinked (`Err`: the delete may be asked
    /// again, and unlinks what is left).
    pub fn handle_deleted(&mut self, key: SegmentKey, result: Result<(), String>) -> Actions {
        let Some(waiters) = self.deleting.remove(&key) else {
            panic!("{key:?} deleted without being asked for");
        };
        let mut out = Actions::new();
        let answer = match &result {
            Ok(()) => delete_ack(key),
            Err(why) => internal(key, &format!("delete: {why}")),
        };
        // Gone from memory either way: a failed unlink leaves files that
        // only a new delete (or a restart's recovery) finds again.
        self.deleted.insert(key);
        if self.deleting_unknown.remove(&key) {
            self.deleted_unknown.push_back(key);
            if self.deleted_unknown.len() > DELETED_UNKNOWN_MAX {
                if let Some(oldest) = self.deleted_unknown.pop_front() {
                    self.deleted.remove(&oldest);
                }
            }
        }
        for (conn, request_id) in waiters {
            out.send(conn, request_id, answer.clone());
        }
        out
    }

    /// Whether `key` was deleted here (or is being deleted).
    pub fn is_deleted(&self, key: SegmentKey) -> bool {
        self.deleted.contains(&key) || self.deleting.contains_key(&key)
    }
}

fn delete_ack(key: SegmentKey) -> Message {
    Message::DeleteSegmentAck(DeleteSegmentAck {
        log_id: key.log_id,
        segment: key.segment,
    })
}
