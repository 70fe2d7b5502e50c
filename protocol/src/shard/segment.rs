//! One segment replica of a shard as the machine holds it: the [`Replica`]
//! that decides, the acks it owes until entries are durable, its control
//! requests, and whether it failed.

use trilog_wire::message::AppendAck;
use trilog_wire::Message;

use super::action::{internal, refused, Action, Actions, AppendRequest, ConnId, SegmentKey, Stage};
use super::control::{ControlQueue, ControlRequest};
use crate::replica::{AppendDecision, Replica};

/// An ack owed to a connection once the segment is durable up to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OwedAck {
    conn: ConnId,
    request_id: u64,
    end: u64,
}

#[derive(Debug)]
pub(super) struct Segment {
    pub replica: Replica,
    /// Why the segment failed (a flush or a control write did): its state
    /// in memory may no longer match the disk, so it answers every append,
    /// fence, seal and read with this from then on.
    pub failure: Option<String>,
    acks: Vec<OwedAck>,
    pub control: ControlQueue,
}

impl Segment {
    pub fn new(replica: Replica) -> Segment {
        Segment {
            replica,
            failure: None,
            acks: Vec::new(),
            control: ControlQueue::new(),
        }
    }

    /// Decides an append to this segment.
    pub fn append(
        &mut self,
        conn: ConnId,
        request_id: u64,
        req: &AppendRequest,
        out: &mut Actions,
    ) -> Stage {
        let key = req.key;
        if let Some(why) = &self.failure {
            out.send(conn, request_id, internal(key, why));
            return Stage::Nothing;
        }
        let decision = self
            .replica
            .on_append(req.epoch, req.first_offset, req.count, req.commit);
        let (stage, end) = match decision {
            AppendDecision::Refuse(r) => {
                out.send(conn, request_id, refused(key, r));
                return Stage::Nothing;
            }
            AppendDecision::Held { end } => (Stage::Nothing, end),
            AppendDecision::Accept { skip, end } => {
                assert!(skip <= req.count, "{key:?}: skips past the append");
                out.push(Action::Flush { key });
                (Stage::Entries { skip, end }, end)
            }
        };
        let owed = OwedAck {
            conn,
            request_id,
            end,
        };
        if end <= self.replica.durable_len() {
            self.release(key, owed, out);
        } else {
            self.acks.push(owed);
        }
        stage
    }

    /// The first `len` entries are durable: releases exactly the acks they
    /// cover, then moves the control requests (a drain may have ended).
    pub fn durable(&mut self, key: SegmentKey, len: u64, out: &mut Actions) {
        self.replica.on_durable(len);
        let durable = self.replica.durable_len();
        let (due, owed): (Vec<OwedAck>, Vec<OwedAck>) = std::mem::take(&mut self.acks)
            .into_iter()
            .partition(|a| a.end <= durable);
        self.acks = owed;
        for a in due {
            self.release(key, a, out);
        }
        if self.failure.is_none() {
            self.control.advance(key, &mut self.replica, out);
        }
    }

    /// Queues a fence or a seal and runs what can run.
    pub fn control(&mut self, key: SegmentKey, request: ControlRequest, out: &mut Actions) {
        if let Some(why) = &self.failure {
            if let Some((conn, request_id)) = request.reply_to {
                out.send(conn, request_id, internal(key, why));
            }
            return;
        }
        self.control.push(request);
        self.control.advance(key, &mut self.replica, out);
    }

    /// Fails the segment: every owed ack and control request is answered
    /// with `why`, and so is everything after. Failing twice keeps the first
    /// reason.
    pub fn fail(&mut self, key: SegmentKey, why: String, out: &mut Actions) {
        let why = self.failure.get_or_insert(why).clone();
        for a in self.acks.drain(..) {
            out.send(a.conn, a.request_id, internal(key, &why));
        }
        self.control.fail_all(key, &why, out);
    }

    /// A heal's flush failed: the acks it owed are answered with `why`,
    /// and the entries staged past the durable length are dropped as
    /// damage (see `ShardMachine::handle_flush_failed`).
    pub fn abort_heal(&mut self, key: SegmentKey, why: &str, out: &mut Actions) {
        for a in self.acks.drain(..) {
            out.send(a.conn, a.request_id, internal(key, why));
        }
        self.replica.abort_heal();
    }

    pub fn forget_conn(&mut self, conn: ConnId) {
        self.acks.retain(|a| a.conn != conn);
        self.control.forget_conn(conn);
    }

    pub fn owed_acks(&self) -> usize {
        self.acks.len()
    }

    /// Acks an append with everything durable: the one place an ack
    /// leaves, and only once the durable length covers the append.
    fn release(&self, key: SegmentKey, a: OwedAck, out: &mut Actions) {
        let durable_len = self.replica.durable_len();
        assert!(
            a.end <= durable_len,
            "{key:?}: ack of [.., {}) with {durable_len} durable",
            a.end
        );
        let ack = Message::AppendAck(AppendAck {
            log_id: key.log_id,
            segment: key.segment,
            durable_len,
        });
        out.send(a.conn, a.request_id, ack);
    }
}
