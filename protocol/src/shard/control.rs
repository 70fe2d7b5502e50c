//! Fences and seals of one segment, one at a time.
//!
//! A control request is taken in arrival order and runs alone: a fence is
//! decided ([`Replica::on_fence`]) when its turn comes, its new state
//! persisted, and it is answered once that write is durable and nothing
//! staged before it is left ([`Replica::control_answerable`]); a seal
//! first waits for that drain (it may only cut durable entries), is then
//! decided ([`Replica::on_seal`]), persisted, applied to storage and
//! answered. Only one control write per segment is ever in flight, and
//! the next request starts only once the one before it is answered.

use std::collections::VecDeque;

use trilog_wire::message::{FenceAck, SealAck};
use trilog_wire::Message;

use super::action::{internal, refused, Action, Actions, ConnId, SegmentKey};
use crate::replica::{ControlDecision, Durable, Replica};

/// A fence or a seal, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ControlOp {
    Fence { epoch: u64 },
    Seal { epoch: u64, len: u64 },
}

/// A control request and whom to answer (nobody once its connection
/// closed: the request still runs, as if its answer were lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ControlRequest {
    pub reply_to: Option<(ConnId, u64)>,
    pub op: ControlOp,
    /// A seal learnt from the metadata record (`learn.rs`), not sent by
    /// anyone: a refusal is reported instead of answered.
    pub learnt: bool,
}

/// Where the request at the head of the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not begun: nothing decided yet.
    Start,
    /// Waiting until every staged entry is durable (a fence after its
    /// write, a seal before its decision).
    Draining,
    /// Its control write is in flight.
    Persisting,
}

/// The control requests of one segment.
#[derive(Debug)]
pub(super) struct ControlQueue {
    queue: VecDeque<ControlRequest>,
    /// The phase of `queue[0]`; `Start` when the queue is empty.
    phase: Phase,
    /// A control write is in flight. Kept apart from `phase`: a failed
    /// segment answers and drops its requests, but the write in flight
    /// still ends with a call the machine must expect.
    writing: bool,
}

impl ControlQueue {
    pub fn new() -> ControlQueue {
        ControlQueue {
            queue: VecDeque::new(),
            phase: Phase::Start,
            writing: false,
        }
    }

    pub fn push(&mut self, request: ControlRequest) {
        self.queue.push_back(request);
    }

    /// Moves the queue as far as it can go now.
    pub fn advance(&mut self, key: SegmentKey, replica: &mut Replica, out: &mut Actions) {
        while let Some(head) = self.queue.front().copied() {
            let wait = match (self.phase, head.op) {
                (Phase::Persisting, _) => true,
                (Phase::Start, ControlOp::Fence { epoch }) => {
                    self.begin_fence(key, replica, epoch, out)
                }
                (Phase::Start, ControlOp::Seal { .. }) => {
                    self.phase = Phase::Draining;
                    false
                }
                (Phase::Draining, _) if !replica.control_answerable() => true,
                (Phase::Draining, ControlOp::Fence { .. }) => {
                    self.answer(head, fence_ack(key, replica), out);
                    false
                }
                (Phase::Draining, ControlOp::Seal { epoch, len }) => {
                    self.decide_seal(key, replica, head, epoch, len, out)
                }
            };
            if wait {
                return;
            }
        }
    }

    /// Decides a fence; true if it now waits for its write.
    fn begin_fence(
        &mut self,
        key: SegmentKey,
        replica: &mut Replica,
        epoch: u64,
        out: &mut Actions,
    ) -> bool {
        match replica.on_fence(epoch) {
            ControlDecision::Persist(state) => {
                self.begin_write(key, state, out);
                true
            }
            ControlDecision::Unchanged => {
                self.phase = Phase::Draining;
                false
            }
            ControlDecision::Refuse(r) => unreachable!("a fence is never refused: {r:?}"),
        }
    }

    /// Decides a drained seal; true if it now waits for its write.
    fn decide_seal(
        &mut self,
        key: SegmentKey,
        replica: &mut Replica,
        head: ControlRequest,
        epoch: u64,
        len: u64,
        out: &mut Actions,
    ) -> bool {
        let decision = if head.learnt {
            replica.learn_seal(epoch, len)
        } else {
            replica.on_seal(epoch, len)
        };
        match decision {
            ControlDecision::Persist(state) => {
                assert_eq!(
                    state.sealed_len,
                    Some(len),
                    "{key:?}: seal persists its length"
                );
                self.begin_write(key, state, out);
                true
            }
            ControlDecision::Unchanged => {
                self.answer(head, seal_ack(key, len), out);
                false
            }
            ControlDecision::Refuse(r) => {
                if head.learnt {
                    out.push(Action::LearntSealRefused {
                        key,
                        len,
                        refusal: r,
                    });
                }
                self.answer(head, refused(key, r), out);
                false
            }
        }
    }

    fn begin_write(&mut self, key: SegmentKey, state: Durable, out: &mut Actions) {
        assert!(!self.writing, "{key:?}: a second control write");
        self.writing = true;
        self.phase = Phase::Persisting;
        out.push(Action::PersistControl { key, state });
    }

    /// The control write in flight is durable.
    pub fn on_written(&mut self, key: SegmentKey, replica: &mut Replica, out: &mut Actions) {
        assert!(
            self.writing,
            "{key:?}: a control write ended with none in flight"
        );
        self.writing = false;
        if let Some(len) = replica.sealed_len() {
            // Idempotent in storage; a fence of a sealed segment persists
            // the seal again, which changes nothing there.
            out.push(Action::ApplySeal { key, len });
        }
        let Some(head) = self.queue.front().copied() else {
            // The segment failed meanwhile and answered its requests.
            return;
        };
        assert_eq!(
            self.phase,
            Phase::Persisting,
            "{key:?}: write ended out of turn"
        );
        match head.op {
            ControlOp::Fence { .. } => self.phase = Phase::Draining,
            ControlOp::Seal { len, .. } => self.answer(head, seal_ack(key, len), out),
        }
        self.advance(key, replica, out);
    }

    /// The control write in flight failed (the segment fails next).
    pub fn on_write_failed(&mut self, key: SegmentKey) {
        assert!(
            self.writing,
            "{key:?}: a control write failed with none in flight"
        );
        self.writing = false;
    }

    /// Answers every request with `why` and forgets them (the segment
    /// failed). A write in flight stays expected.
    pub fn fail_all(&mut self, key: SegmentKey, why: &str, out: &mut Actions) {
        for request in self.queue.drain(..) {
            if let Some((conn, request_id)) = request.reply_to {
                out.send(conn, request_id, internal(key, why));
            }
        }
        self.phase = Phase::Start;
    }

    /// A seal learnt from the record is queued and not yet decided.
    pub fn learning(&self) -> bool {
        self.queue.iter().any(|r| r.learnt)
    }

    /// Answers nobody from `conn` any more.
    pub fn forget_conn(&mut self, conn: ConnId) {
        for request in &mut self.queue {
            if request.reply_to.is_some_and(|(c, _)| c == conn) {
                request.reply_to = None;
            }
        }
    }

    /// Pops the head, which is `head`, and answers it.
    fn answer(&mut self, head: ControlRequest, message: Message, out: &mut Actions) {
        let popped = self.queue.pop_front();
        assert_eq!(popped, Some(head), "answered a request not at the head");
        self.phase = Phase::Start;
        if let Some((conn, request_id)) = head.reply_to {
            out.send(conn, request_id, message);
        }
    }
}

fn fence_ack(key: SegmentKey, replica: &Replica) -> Message {
    Message::FenceAck(FenceAck {
        log_id: key.log_id,
        segment: key.segment,
        epoch: replica.durable().fenced_epoch,
        durable_len: replica.durable_len(),
        watermark: replica.watermark(),
        sealed_len: replica.sealed_len(),
    })
}

fn seal_ack(key: SegmentKey, len: u64) -> Message {
    Message::SealAck(SealAck {
        log_id: key.log_id,
        segment: key.segment,
        len,
    })
}
