//! The network of the model: the messages in flight between the producers
//! and the log nodes, one FIFO queue per (sender, receiver), as on a TCP
//! connection. Messages of different connections interleave freely. Within
//! a budget per run, the checker also delivers a message that is not at
//! the head of its queue (reordering, as across a reconnection), delivers
//! one and keeps it in flight (a duplicate that arrives again later), or
//! loses one anywhere in a queue.

use std::collections::{BTreeMap, VecDeque};

use trilog_protocol::replica::Refusal;
use trilog_protocol::takeover::FenceAnswer;
use trilog_protocol::NodeId;

/// Which producer: 1 (the first writer) or 2 (the one that takes over).
pub type Pid = u8;

/// The payload of an entry: (producer, index among that producer's own
/// entries). It names the entry, so "the same payload for a seq
/// everywhere" is checkable.
pub type Tag = (u8, u8);

/// A message between a producer and a log node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Append {
        node: NodeId,
        seg: u64,
        epoch: u64,
        from: Pid,
        replica: u8,
        first_offset: u64,
        tags: Vec<Tag>,
        commit: u64,
    },
    Watermark {
        node: NodeId,
        seg: u64,
        epoch: u64,
        from: Pid,
        commit: u64,
    },
    Fence {
        node: NodeId,
        seg: u64,
        epoch: u64,
        replica: u8,
    },
    Seal {
        node: NodeId,
        seg: u64,
        epoch: u64,
        from: Pid,
        len: u64,
    },
    Ack {
        to: Pid,
        node: NodeId,
        seg: u64,
        replica: u8,
        durable_len: u64,
    },
    Refused {
        to: Pid,
        node: NodeId,
        seg: u64,
        replica: u8,
        refusal: Refusal,
    },
    FenceAnswer {
        node: NodeId,
        seg: u64,
        replica: u8,
        answer: FenceAnswer,
    },
    /// An append's answer from a node that unlinked its segment (a trim):
    /// the `Deleted` error, which a producer takes for a failure of that
    /// replica (`refusal::from_wire` gives no refusal for it).
    Deleted {
        to: Pid,
        node: NodeId,
        seg: u64,
        replica: u8,
    },
}

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    Producer(Pid),
    Node(NodeId),
}

/// The producer that takes over sends the fences.
pub const TAKER: Pid = 2;

impl Msg {
    /// The segment it is about.
    pub fn seg(&self) -> u64 {
        match *self {
            Msg::Append { seg, .. }
            | Msg::Watermark { seg, .. }
            | Msg::Fence { seg, .. }
            | Msg::Seal { seg, .. }
            | Msg::Ack { seg, .. }
            | Msg::Refused { seg, .. }
            | Msg::FenceAnswer { seg, .. }
            | Msg::Deleted { seg, .. } => seg,
        }
    }

    /// (sender, receiver).
    pub fn route(&self) -> (Addr, Addr) {
        use Addr::{Node, Producer};
        match *self {
            Msg::Append { node, from, .. }
            | Msg::Watermark { node, from, .. }
            | Msg::Seal { node, from, .. } => (Producer(from), Node(node)),
            Msg::Fence { node, .. } => (Producer(TAKER), Node(node)),
            Msg::Ack { to, node, .. }
            | Msg::Refused { to, node, .. }
            | Msg::Deleted { to, node, .. } => (Node(node), Producer(to)),
            Msg::FenceAnswer { node, .. } => (Node(node), Producer(TAKER)),
        }
    }
}

/// The messages in flight: one FIFO queue per connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Net(BTreeMap<(Addr, Addr), VecDeque<Msg>>);

impl Net {
    pub fn send(&mut self, m: Msg) {
        self.0.entry(m.route()).or_default().push_back(m);
    }

    /// The messages that may be delivered next in order: the head of
    /// every queue.
    pub fn heads(&self) -> impl Iterator<Item = &Msg> {
        self.0.values().filter_map(|c| c.front())
    }

    /// Every message in flight.
    pub fn all(&self) -> impl Iterator<Item = &Msg> {
        self.0.values().flatten()
    }

    /// Every message in flight but the heads.
    pub fn behind_heads(&self) -> impl Iterator<Item = &Msg> {
        self.0.values().flat_map(|c| c.iter().skip(1))
    }

    /// Takes the first copy of `m` from its queue.
    pub fn remove(&mut self, m: &Msg) {
        let route = m.route();
        let c = self.0.get_mut(&route).expect("a queue with the message");
        let i = c
            .iter()
            .position(|x| x == m)
            .expect("the message in flight");
        c.remove(i);
        if c.is_empty() {
            self.0.remove(&route);
        }
    }

    /// Drops every message `keep` refuses (those to a crashed producer).
    pub fn retain(&mut self, keep: impl Fn(&Msg) -> bool) {
        for c in self.0.values_mut() {
            c.retain(&keep);
        }
        self.0.retain(|_, c| !c.is_empty());
    }

    pub fn any(&self, f: impl Fn(&Msg) -> bool) -> bool {
        self.all().any(f)
    }
}
