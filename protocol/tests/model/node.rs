//! A log node of the model: one production [`Replica`] per segment, driven
//! the way `node/src/server/handlers.rs` drives it.
//!
//! What survives a crash is the file: the records written so far (`recs`,
//! each with the `commit` field of the append that brought it) up to what
//! was made durable, and the control state last persisted (`persisted`).
//! Everything else is volatile: records staged but not yet flushed, the
//! appends and fences waiting for the flush, and whatever the replica
//! learnt in memory (a watermark sent alone). A restart rebuilds the
//! replica with [`Replica::recovered`] from the file, as the node does.
//! A crash and its restart are one step: while a node is down nothing
//! reaches it, which the network's arbitrary delays already cover (its
//! messages wait in their queues), and what else a down node changes (a
//! tail read or a consumer's read fails) the model does at any time.
//!
//! Group commit is the separate `flush` step: it makes every staged record
//! durable and only then sends the acks and the fence answers that waited
//! for it. A fence is answered only once `Replica::control_answerable`
//! says so (what the node's `drain_staged` waits for), and a seal is
//! applied only once nothing staged is left too.

use trilog_protocol::replica::{AppendDecision, ControlDecision, Durable, Replica};
use trilog_protocol::takeover::FenceAnswer;
use trilog_protocol::NodeId;

use crate::model::net::{Msg, Net, Pid, Tag};

/// One record of a segment file: the entry and the commit watermark the
/// append carried (what recovery rebuilds the watermark from).
pub type Rec = (Tag, u64);

/// One segment replica on one node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Seg {
    pub rep: Replica,
    /// Staged and durable records; the first `rep.durable_len()` are on
    /// disk.
    pub recs: Vec<Rec>,
    /// The control state on disk.
    pub persisted: Durable,
    /// Appends waiting for the flush, by (producer, replica index).
    pub ack_waiters: Vec<(Pid, u8)>,
    /// A fence waiting for the flush (replica index).
    pub fence_waiter: Option<u8>,
    /// Unlinked by a trim (`DeleteSegment`): no records, and every later
    /// request for it answered the way the shard answers a deleted
    /// segment (`protocol/src/shard/delete.rs`), so nothing creates it
    /// again.
    pub gone: bool,
}

impl Default for Seg {
    fn default() -> Seg {
        Seg::new()
    }
}

impl Seg {
    fn new() -> Seg {
        Seg {
            rep: Replica::new(),
            recs: Vec::new(),
            persisted: Durable::default(),
            ack_waiters: Vec::new(),
            fence_waiter: None,
            gone: false,
        }
    }

    pub fn drained(&self) -> bool {
        self.rep.durable_len() == self.rep.staged_len()
    }

    /// The records on disk.
    pub fn durable(&self) -> &[Rec] {
        &self.recs[..self.rep.durable_len() as usize]
    }

    fn fence_answer(&self) -> FenceAnswer {
        FenceAnswer {
            epoch: self.rep.durable().fenced_epoch,
            durable_len: self.rep.durable_len(),
            watermark: self.rep.watermark(),
            sealed_len: self.rep.sealed_len(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub id: NodeId,
    /// Crashed at least once (for the "read after a crash" discovery).
    pub crashed: bool,
    /// Indexed by segment id.
    pub segs: Vec<Seg>,
}

impl Node {
    pub fn new(id: NodeId, segments: usize) -> Node {
        Node {
            id,
            crashed: false,
            segs: vec![Seg::new(); segments],
        }
    }

    pub fn seg(&self, seg: u64) -> &Seg {
        &self.segs[seg as usize]
    }

    /// Whether `m`, addressed to this node, can be taken now.
    pub fn can_take(&self, m: &Msg) -> bool {
        match m {
            // The node applies a seal only once nothing staged is left.
            Msg::Seal { seg, .. } => self.seg(*seg).drained(),
            _ => true,
        }
    }

    /// The record's seal of `seg`, learnt (`Replica::learn_seal`): no
    /// message, no answer.
    pub fn learn_seal(&mut self, seg: u64, epoch: u64, len: u64) {
        let s = &mut self.segs[seg as usize];
        assert!(s.drained(), "a learnt seal waits for the flush");
        match s.rep.learn_seal(epoch, len) {
            ControlDecision::Persist(d) => {
                s.persisted = d;
                s.recs.truncate(s.rep.durable_len() as usize);
            }
            ControlDecision::Unchanged => {}
            ControlDecision::Refuse(r) => panic!("a learnt seal of an open replica refused: {r:?}"),
        }
    }

    /// Handles a message addressed to this node; answers go to `net`.
    pub fn take(&mut self, m: &Msg, net: &mut Net) {
        if self.seg(m.seg()).gone {
            self.take_deleted(m, net);
            return;
        }
        let node = self.id;
        match m {
            Msg::Append {
                seg,
                epoch,
                from,
                replica,
                first_offset,
                tags,
                commit,
                ..
            } => {
                let (seg, from, replica) = (*seg, *from, *replica);
                let s = &mut self.segs[seg as usize];
                let count = tags.len() as u64;
                let end = match s.rep.on_append(*epoch, *first_offset, count, *commit) {
                    AppendDecision::Refuse(refusal) => {
                        net.send(Msg::Refused {
                            to: from,
                            node,
                            seg,
                            replica,
                            refusal,
                        });
                        return;
                    }
                    AppendDecision::Held { end } => end,
                    AppendDecision::Accept { skip, end } => {
                        s.recs
                            .extend(tags[skip as usize..].iter().map(|t| (*t, *commit)));
                        assert_eq!(s.recs.len() as u64, end, "staged as decided");
                        end
                    }
                };
                if end <= s.rep.durable_len() {
                    net.send(Msg::Ack {
                        to: from,
                        node,
                        seg,
                        replica,
                        durable_len: s.rep.durable_len(),
                    });
                } else if !s.ack_waiters.contains(&(from, replica)) {
                    s.ack_waiters.push((from, replica));
                    s.ack_waiters.sort_unstable();
                }
            }
            Msg::Watermark {
                seg, epoch, commit, ..
            } => {
                // Not written down on its own, as in the node.
                let _moved = self.segs[*seg as usize].rep.on_watermark(*epoch, *commit);
            }
            Msg::Fence {
                seg,
                epoch,
                replica,
                ..
            } => {
                let s = &mut self.segs[*seg as usize];
                if let ControlDecision::Persist(d) = s.rep.on_fence(*epoch) {
                    s.persisted = d;
                }
                if s.rep.control_answerable() {
                    net.send(Msg::FenceAnswer {
                        node,
                        seg: *seg,
                        replica: *replica,
                        answer: s.fence_answer(),
                    });
                } else {
                    s.fence_waiter = Some(*replica);
                }
            }
            Msg::Seal {
                seg, epoch, len, ..
            } => {
                let s = &mut self.segs[*seg as usize];
                assert!(s.drained(), "a seal waits for the flush");
                // A refusal goes back to a sender that ignores it.
                if let ControlDecision::Persist(d) = s.rep.on_seal(*epoch, *len) {
                    s.persisted = d;
                    if let Some(sealed) = d.sealed_len {
                        s.recs.truncate(sealed as usize);
                    }
                }
            }
            Msg::Ack { .. }
            | Msg::Refused { .. }
            | Msg::FenceAnswer { .. }
            | Msg::Deleted { .. } => {
                panic!("a node got a message for a producer: {m:?}")
            }
        }
    }

    /// A message for a segment this node unlinked: an append is answered
    /// `Deleted`; the answer to a fence or a seal (`Deleted` too) goes to a
    /// sender that takes it for a replica that does not answer, and a
    /// watermark gets none: those are dropped.
    fn take_deleted(&self, m: &Msg, net: &mut Net) {
        if let Msg::Append {
            seg, from, replica, ..
        } = *m
        {
            net.send(Msg::Deleted {
                to: from,
                node: self.id,
                seg,
                replica,
            });
        }
    }

    /// `DeleteSegment` for `seg`: the files go (durably: the model's
    /// unlink is one step), and the acks the replica still owed are
    /// answered with an error (`ShardMachine::handle_delete`: `Internal`,
    /// where later requests get `Deleted`; a producer takes either for a
    /// failure of that replica, so the model sends `Deleted` for both).
    pub fn unlink(&mut self, seg: u64, net: &mut Net) {
        let node = self.id;
        let s = &mut self.segs[seg as usize];
        assert!(!s.gone, "unlinked once");
        for (to, replica) in s.ack_waiters.drain(..) {
            net.send(Msg::Deleted {
                to,
                node,
                seg,
                replica,
            });
        }
        *s = Seg {
            gone: true,
            ..Seg::new()
        };
    }

    /// Whether a flush has anything to do.
    pub fn dirty(&self) -> bool {
        self.segs.iter().any(|s| !s.drained())
    }

    /// Group commit: every staged record becomes durable, then the acks
    /// and fence answers that waited for it go out.
    pub fn flush(&mut self, net: &mut Net) {
        let node = self.id;
        for (seg, s) in self.segs.iter_mut().enumerate() {
            if s.drained() {
                continue;
            }
            s.rep.on_durable(s.rep.staged_len());
            let durable_len = s.rep.durable_len();
            for (to, replica) in s.ack_waiters.drain(..) {
                net.send(Msg::Ack {
                    to,
                    node,
                    seg: seg as u64,
                    replica,
                    durable_len,
                });
            }
            if let Some(replica) = s.fence_waiter.take() {
                net.send(Msg::FenceAnswer {
                    node,
                    seg: seg as u64,
                    replica,
                    answer: s.fence_answer(),
                });
            }
        }
    }

    /// A crash and the restart: volatile state is lost. With `torn`, the
    /// records staged but not flushed happened to reach the disk before
    /// the crash (they were never acknowledged); without, they are lost.
    /// The replica is rebuilt from what is on disk.
    pub fn crash(&mut self, torn: bool) {
        self.crashed = true;
        // An unlinked segment stays unlinked and refused. (The shard keeps
        // its set of deleted segments in memory only; after a real restart
        // no request for them is in flight any more, since connections
        // drop, while the model's messages outlive a crash.)
        for s in self.segs.iter_mut().filter(|s| !s.gone) {
            if !torn {
                s.recs.truncate(s.rep.durable_len() as usize);
            }
            let max_commit = s.recs.iter().map(|(_, c)| *c).max().unwrap_or(0);
            s.rep = Replica::recovered(s.recs.len() as u64, max_commit, s.persisted);
            s.recs.truncate(s.rep.durable_len() as usize);
            s.ack_waiters.clear();
            s.fence_waiter = None;
        }
    }
}
