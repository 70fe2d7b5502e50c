//! The model of trilog that `model_check.rs` checks: log nodes, two
//! producers, a metadata record and a consumer, all driving the production
//! state machines of `trilog-protocol`.

pub mod acyclic;
pub mod net;
pub mod node;
pub mod props;
pub mod store;
pub mod writers;

use std::collections::BTreeMap;

use stateright::{Model, Property};
use trilog_protocol::consumer::{Cursor, Step};
use trilog_protocol::meta_call::CasAnswer;
use trilog_protocol::metadata::{open_for_write, LogMeta};
use trilog_protocol::producer::{OpenSegment, Phase, Producer, ProducerConfig, StopReason};
use trilog_protocol::takeover::TakeoverPhase;

use net::{Msg, Net, Pid, Tag};
use node::Node;
use store::{Fate, PendingCas};
use writers::{all_nodes, entry, Taker, Writer};

pub const LOG_ID: u64 = 7;

/// The bounds of one model: sizes, and how many faults of each kind the
/// checker may inject along one run.
#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: u64,
    pub replicas: usize,
    pub window: usize,
    pub p1_entries: u8,
    /// Producer 2 takes over (and then appends this many entries).
    pub takeover: bool,
    pub p2_entries: u8,
    /// Messages lost per run.
    pub losses: u8,
    /// Messages delivered twice per run.
    pub dups: u8,
    /// Messages delivered out of their connection's order per run.
    pub reorders: u8,
    /// Appends that wait for a later flush; every other append is flushed
    /// (with everything staged on its node) as soon as it is staged.
    pub delayed_flushes: u8,
    pub node_crashes: u8,
    /// A crash may keep records that were written but not flushed.
    pub torn: bool,
    pub producer_crash: bool,
    /// Producer 2 may crash once, at any point of its takeover or after
    /// it (between writing the tail and the sealing CAS, say).
    pub taker_crash: bool,
    /// Replica failures a producer may declare (each is a segment switch).
    pub replica_failures: u8,
    /// A takeover's tail read may time out (and move to another replica).
    pub tail_read_failures: bool,
    /// Writes of a takeover's tail to the next segment that may fail
    /// (each places the segment again without the node).
    pub tail_write_failures: u8,
    /// Times the consumer may give up on a replica and use the next.
    pub consumer_failovers: u8,
    /// Metadata CASes whose outcome the machine is told is unknown (the
    /// CAS applied, was lost, or lands later).
    pub unknown_cas: u8,
    /// Segments with an id below this run on the asynchronous network;
    /// the others (those opened by a switch or a takeover) on a
    /// synchronous one: whatever can be delivered there is, within the
    /// step that sent it. The race on the first segment (appends, fences,
    /// answers, tail, seals) stays asynchronous.
    pub async_segments: u64,
    /// Drop steps that change nothing (needed where `eventually` is
    /// judged; elsewhere they only cost a comparison).
    pub prune_noops: bool,
    /// Seeds the (deterministic) choice of replicas of a new segment.
    pub seed: u64,
    pub max_segments: usize,
    /// The consumer reads.
    pub consumer: bool,
}

impl Config {
    pub fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            window: self.window,
            batch_entries_max: 1,
            batch_bytes_max: 1 << 20,
            // Never: the checker declares replica failures itself.
            ack_timeout_ms: u64::MAX,
            replicas: self.replicas,
            seed: self.seed,
            meta_pause_ms: 10,
            meta_patience_ms: 1_000,
        }
    }
}

/// Faults and choices left along the current run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    pub losses: u8,
    pub dups: u8,
    pub reorders: u8,
    pub delayed_flushes: u8,
    pub node_crashes: u8,
    pub producer_crash: bool,
    pub taker_crash: bool,
    pub replica_failures: u8,
    pub tail_write_failures: u8,
    pub consumer_failovers: u8,
    pub unknown_cas: u8,
}

/// The reader: a production [`Cursor`] and the metadata record as it last
/// read it (it may be stale).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Consumer {
    pub cursor: Cursor,
    pub meta: Snapshot,
    /// Ghost: every entry it was given, (seq, payload), in order.
    pub reads: Vec<(u64, Tag)>,
}

/// What the properties judge and the system does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ghost {
    /// Every seq some producer reported committed, with its payload.
    pub committed: BTreeMap<u64, Tag>,
    /// Per producer, the seq below which it reported everything committed.
    pub reported: [u64; 2],
    /// Two producers reported different payloads committed at one seq.
    pub conflict: bool,
    /// Once producer 2's sealing CAS applied: the seq after the last entry
    /// it carried over (the end of what it fenced and kept).
    pub takeover_end: Option<u64>,
    /// Entries carried over by the takeover.
    pub carried: u64,
    /// The consumer was given an entry by a node that had crashed.
    pub read_after_crash: bool,
    /// A takeover placed its next segment again after a tail write failed.
    pub tail_replaced: bool,
    /// A producer stopped because of another producer when the record's
    /// epoch was not newer than its own (a made-up fence).
    pub false_fence: bool,
    /// A producer stopped, fenced by a newer epoch that really owns the log.
    pub fenced: bool,
    /// A machine was told that a CAS's outcome is unknown.
    pub unknown_told: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub meta: LogMeta,
    /// The record's version in the store.
    pub version: u64,
    /// Per producer, the CAS it asked for, not carried out yet.
    pub cas: [Option<PendingCas>; 2],
    /// A CAS with an unknown outcome still in flight in the store.
    pub store_in_flight: Option<PendingCas>,
    pub nodes: Vec<Node>,
    /// Producer 1; `None` once it crashed.
    pub p1: Option<Writer>,
    pub p2: Taker,
    pub consumer: Consumer,
    pub net: Net,
    pub budget: Budget,
    pub ghost: Ghost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Deliver the head of a queue. An append is flushed at once.
    Deliver(Msg),
    /// Deliver an append and leave it staged until a later flush.
    DeliverUnflushed(Msg),
    /// Deliver a message that is not at the head of its queue.
    Reorder(Msg),
    /// Deliver the head of a queue and send it again: it will arrive a
    /// second time after what was sent meanwhile.
    Duplicate(Msg),
    Lose(Msg),
    Flush(u64),
    Crash {
        node: u64,
        torn: bool,
    },
    /// Producer `pid` decides replica `replica` of its segment failed.
    ReplicaFailed {
        pid: Pid,
        replica: usize,
    },
    /// The store carries out the CAS that producer `pid` asked for.
    Cas(Pid),
    /// The CAS that producer `pid` asked for meets `fate`; the producer is
    /// told its outcome is unknown.
    CasUnknown {
        pid: Pid,
        fate: Fate,
    },
    /// A CAS in flight in the store lands.
    StoreLands,
    /// Producer `pid`'s next timer fires (a pause before a metadata round,
    /// the takeover's fence resend).
    Timeout(Pid),
    ProducerCrash,
    TakerCrash,
    TakeoverStart,
    /// The tail read the takeover asked for is carried out.
    TailRead,
    /// The tail read times out (its node is down or slow).
    TailReadFails,
    /// Writing the carried tail to `node`, a replica of the next segment
    /// not yet published, fails or times out.
    TailWriteFails {
        node: u64,
    },
    Read,
    RefreshMeta,
    Failover,
}

/// The model: a configuration and the properties to check in it.
pub struct Trilog {
    pub cfg: Config,
    pub properties: Vec<Property<Trilog>>,
}

impl Trilog {
    pub fn new(cfg: Config, properties: Vec<Property<Trilog>>) -> Trilog {
        Trilog { cfg, properties }
    }

    fn init(&self) -> State {
        let cfg = &self.cfg;
        let seg0: Vec<u64> = all_nodes(cfg)[..cfg.replicas].to_vec();
        let meta = open_for_write(None, LOG_ID, &seg0).expect("a new log");
        let open = OpenSegment {
            id: 0,
            first_seq: 0,
            replicas: seg0,
        };
        let mut m = Producer::new(LOG_ID, meta.epoch, open, 0, cfg.producer_config());
        let mut tags = Vec::new();
        for i in 0..cfg.p1_entries {
            let seq = m
                .append(entry((1, i)))
                .expect("a new producer takes entries");
            assert_eq!(seq, u64::from(i));
            tags.push((1, i));
        }
        let mut s = State {
            consumer: Consumer {
                cursor: Cursor::new(0, 0),
                meta: Snapshot::of(&meta),
                reads: Vec::new(),
            },
            meta,
            version: 1,
            cas: [None, None],
            store_in_flight: None,
            nodes: all_nodes(cfg)
                .into_iter()
                .map(|id| Node::new(id, cfg.max_segments))
                .collect(),
            p1: Some(Writer {
                m,
                now: 0,
                first: 0,
                tags,
            }),
            p2: Taker::Idle,
            net: Net::default(),
            budget: Budget {
                losses: cfg.losses,
                dups: cfg.dups,
                reorders: cfg.reorders,
                delayed_flushes: cfg.delayed_flushes,
                node_crashes: cfg.node_crashes,
                producer_crash: cfg.producer_crash,
                taker_crash: cfg.taker_crash,
                replica_failures: cfg.replica_failures,
                tail_write_failures: cfg.tail_write_failures,
                consumer_failovers: cfg.consumer_failovers,
                unknown_cas: cfg.unknown_cas,
            },
            ghost: Ghost::default(),
        };
        s.drive(cfg, 1, |m, now| m.begin(now));
        s
    }

    /// Whether `m` can be delivered now.
    fn receivable(&self, s: &State, m: &Msg) -> bool {
        match m {
            Msg::Append { node, .. }
            | Msg::Watermark { node, .. }
            | Msg::Fence { node, .. }
            | Msg::Seal { node, .. } => s.nodes[*node as usize - 1].can_take(m),
            Msg::Ack { .. } | Msg::Refused { .. } | Msg::FenceAnswer { .. } => true,
        }
    }

    /// Hands `m` to its receiver. With `flush`, an append is flushed at
    /// once (group commit right after it).
    fn deliver(&self, s: &mut State, m: &Msg, flush: bool) {
        match m {
            Msg::Append { node, .. }
            | Msg::Watermark { node, .. }
            | Msg::Fence { node, .. }
            | Msg::Seal { node, .. } => {
                let n = &mut s.nodes[*node as usize - 1];
                n.take(m, &mut s.net);
                if flush && matches!(m, Msg::Append { .. }) && n.dirty() {
                    n.flush(&mut s.net);
                }
            }
            Msg::Ack {
                to,
                node,
                seg,
                replica,
                durable_len,
            } => {
                if s.writer(*to).is_some() {
                    s.drive(&self.cfg, *to, |p, now| {
                        p.handle_ack(*replica as usize, *seg, *durable_len, now)
                    });
                } else if let Taker::Taking { .. } = &s.p2 {
                    // The tail written to the next segment.
                    s.drive_taker(&self.cfg, |t, now| {
                        t.handle_tail_ack(*node, *seg, *durable_len, now)
                    });
                }
            }
            Msg::Refused {
                to,
                node,
                seg,
                replica,
                refusal,
            } => {
                if s.writer(*to).is_some() {
                    s.drive(&self.cfg, *to, |p, now| {
                        p.handle_refusal(*replica as usize, *seg, *refusal, now)
                    });
                } else if let Taker::Taking { .. } = &s.p2 {
                    s.drive_taker(&self.cfg, |t, now| {
                        t.handle_tail_write_failure(*node, *seg, now)
                    });
                }
            }
            Msg::FenceAnswer {
                replica, answer, ..
            } => {
                if let Taker::Taking { .. } = &s.p2 {
                    s.drive_taker(&self.cfg, |t, now| {
                        t.handle_fence_answer(*replica as usize, *answer, now)
                    });
                }
            }
        }
    }

    /// Delivers every message of the synchronous segments that can be
    /// delivered, until none is left (see `Config::async_segments`).
    fn settle(&self, s: &mut State) {
        let sync = self.cfg.async_segments;
        loop {
            let next = s
                .net
                .heads()
                .find(|m| m.seg() >= sync && self.receivable(s, m))
                .cloned();
            let Some(m) = next else { break };
            s.net.remove(&m);
            self.deliver(s, &m, true);
        }
    }

    /// The consumer's next read, if it gets anything.
    fn read(&self, s: &mut State) -> bool {
        let meta = s.consumer.meta.record(&s.meta);
        let c = &mut s.consumer;
        let Step::Read {
            segment,
            node,
            from_offset,
            limit,
        } = c.cursor.next_step(&meta)
        else {
            return false;
        };
        let n = &s.nodes[node as usize - 1];
        let seg = n.seg(segment);
        let end = seg.rep.readable_end(limit);
        if end <= from_offset {
            return false;
        }
        let tags: Vec<Tag> = seg.recs[from_offset as usize..end as usize]
            .iter()
            .map(|(t, _)| *t)
            .collect();
        let Ok(first) = c.cursor.on_read(segment, from_offset, tags.len() as u64) else {
            return false;
        };
        for (i, t) in tags.into_iter().enumerate() {
            c.reads.push((first + i as u64, t));
        }
        s.ghost.read_after_crash |= n.crashed;
        true
    }

    /// Whether the consumer has nothing to read with what it knows.
    fn consumer_stuck(&self, s: &State) -> bool {
        let mut cursor = s.consumer.cursor.clone();
        let Step::Read {
            segment,
            node,
            from_offset,
            limit,
        } = cursor.next_step(&s.consumer.meta.record(&s.meta))
        else {
            return true;
        };
        let n = &s.nodes[node as usize - 1];
        n.seg(segment).rep.readable_end(limit) <= from_offset
    }
}

/// A version of the record, as the consumer read it. The record only
/// grows (segments are appended, the last one is sealed, nothing else
/// changes), so a past version is the current one cut to its first
/// `segments`, with the last of them open again unless `last_sealed`. The
/// epoch is left out: the consumer does not read it (states that differ
/// only there merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub segments: u8,
    pub last_sealed: bool,
}

impl Snapshot {
    pub fn of(meta: &LogMeta) -> Snapshot {
        Snapshot {
            segments: meta.segments.len() as u8,
            last_sealed: meta.segments.last().is_some_and(|s| s.sealed_len.is_some()),
        }
    }

    /// The record as it was at this version.
    pub fn record(&self, current: &LogMeta) -> LogMeta {
        let mut meta = LogMeta {
            epoch: 0,
            segments: current.segments[..self.segments as usize].to_vec(),
            ..current.clone()
        };
        if !self.last_sealed {
            if let Some(last) = meta.segments.last_mut() {
                last.sealed_len = None;
            }
        }
        meta
    }
}

impl State {
    /// Producer 1 is gone: its connections too, so nothing reaches it.
    fn stop_p1(&mut self) {
        self.p1 = None;
        self.cas[0] = None;
        self.net
            .retain(|m| !matches!(m, Msg::Ack { to: 1, .. } | Msg::Refused { to: 1, .. }));
    }

    /// A producer 1 stopped by another producer does nothing more (its
    /// driver stops): forget it as if it had crashed, so that states
    /// differing only in what it remembers merge. What it reported is kept
    /// in the ghost. Messages to a producer that is gone are dropped as
    /// they are sent. (A producer stopped for any other reason is kept:
    /// Progress then sees what it left undone.)
    fn retire_fenced(&mut self) {
        let retired = |w: &Writer| {
            matches!(
                w.m.phase(),
                Phase::Stopped(StopReason::Fenced { .. } | StopReason::SealedElsewhere { .. })
            )
        };
        if self.p1.as_ref().is_none_or(retired) {
            self.stop_p1();
        }
        // Once the takeover is done its driver no longer listens for fence
        // answers.
        if matches!(self.p2, Taker::Writing(_)) {
            self.net.retain(|m| !matches!(m, Msg::FenceAnswer { .. }));
        }
    }
}

fn writing(w: &Writer) -> bool {
    matches!(w.m.phase(), Phase::Writing | Phase::Closing)
}

impl Trilog {
    /// Whether the takeover's timer may fire: a pause of a metadata round,
    /// or the fence resend once no fence or answer is under way any more
    /// (lost, or its node crashed; else resends would pile up answers
    /// without end). The tail read and tail write timeouts are the
    /// `TailReadFails` and `TailWriteFails` faults.
    fn taker_timeout(&self, s: &State, t: &trilog_protocol::takeover::Takeover) -> bool {
        match t.phase() {
            TakeoverPhase::Bumping
            | TakeoverPhase::Placing { .. }
            | TakeoverPhase::Sealing { .. } => t.poll_timeout().is_some(),
            TakeoverPhase::Fencing => {
                t.fences_unanswered()
                    && !s
                        .net
                        .any(|m| matches!(m, Msg::Fence { .. } | Msg::FenceAnswer { .. }))
                    && !s
                        .nodes
                        .iter()
                        .any(|n| n.segs.iter().any(|g| g.fence_waiter.is_some()))
            }
            _ => false,
        }
    }

    /// Fires the next timer of producer `pid`: its clock moves to it.
    fn timeout(&self, s: &mut State, pid: Pid) {
        if let Some(w) = s.writer_mut(pid) {
            let at = w.m.poll_timeout().expect("a timer is set");
            w.now = w.now.max(at);
            s.drive(&self.cfg, pid, |m, now| m.handle_timeout(now));
            return;
        }
        let Taker::Taking { t, now, .. } = &mut s.p2 else {
            unreachable!("a timeout of producer {pid}, which is gone");
        };
        let at = t.poll_timeout().expect("a timer is set");
        *now = (*now).max(at);
        s.drive_taker(&self.cfg, |t, now| t.handle_timeout(now));
    }
}

impl Model for Trilog {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        vec![self.init()]
    }

    fn actions(&self, s: &State, out: &mut Vec<Act>) {
        let b = &s.budget;
        // Only a head is lost: losing a message further back is the same
        // as losing it once it is the head, since nothing behind it moves
        // before.
        for m in s.net.heads() {
            if self.receivable(s, m) {
                out.push(Act::Deliver(m.clone()));
                if b.delayed_flushes > 0 && matches!(m, Msg::Append { .. }) {
                    out.push(Act::DeliverUnflushed(m.clone()));
                }
                if b.dups > 0 {
                    out.push(Act::Duplicate(m.clone()));
                }
            }
            if b.losses > 0 {
                out.push(Act::Lose(m.clone()));
            }
        }
        if b.reorders > 0 {
            for m in s.net.behind_heads() {
                if self.receivable(s, m) {
                    out.push(Act::Reorder(m.clone()));
                }
            }
        }
        for n in &s.nodes {
            if n.dirty() {
                out.push(Act::Flush(n.id));
            }
            // Only a node that holds (or is to hold) a segment, published
            // or being written by a takeover.
            let placed = match &s.p2 {
                Taker::Taking { t, .. } => t.next().is_some_and(|x| x.replicas.contains(&n.id)),
                _ => false,
            };
            let replica = placed || s.meta.segments.iter().any(|g| g.replicas.contains(&n.id));
            if replica && b.node_crashes > 0 {
                out.push(Act::Crash {
                    node: n.id,
                    torn: false,
                });
                if self.cfg.torn && n.dirty() {
                    out.push(Act::Crash {
                        node: n.id,
                        torn: true,
                    });
                }
            }
        }
        for pid in [1, 2] {
            if let Some(w) = s.writer(pid) {
                // A connection error or a timeout, at any moment.
                if b.replica_failures > 0 && writing(w) {
                    for replica in 0..w.m.segment().replicas.len() {
                        out.push(Act::ReplicaFailed { pid, replica });
                    }
                }
                if w.m.poll_timeout().is_some() {
                    out.push(Act::Timeout(pid));
                }
            }
            if s.cas[pid as usize - 1].is_some() {
                out.push(Act::Cas(pid));
                if b.unknown_cas > 0 {
                    if s.cas_would_apply(pid) {
                        out.push(Act::CasUnknown {
                            pid,
                            fate: Fate::Applied,
                        });
                    }
                    out.push(Act::CasUnknown {
                        pid,
                        fate: Fate::Lost,
                    });
                    if s.store_in_flight.is_none() {
                        out.push(Act::CasUnknown {
                            pid,
                            fate: Fate::Later,
                        });
                    }
                }
            }
        }
        if s.store_in_flight.is_some() {
            out.push(Act::StoreLands);
        }
        if s.p1.is_some() && b.producer_crash {
            out.push(Act::ProducerCrash);
        }
        if matches!(s.p2, Taker::Taking { .. } | Taker::Writing(_)) && b.taker_crash {
            out.push(Act::TakerCrash);
        }
        match &s.p2 {
            Taker::Idle if self.cfg.takeover => out.push(Act::TakeoverStart),
            Taker::Taking { read: Some(_), .. } => {
                out.push(Act::TailRead);
                if self.cfg.tail_read_failures {
                    out.push(Act::TailReadFails);
                }
            }
            Taker::Taking { t, read: None, .. } => {
                if b.tail_write_failures > 0
                    && matches!(t.phase(), TakeoverPhase::WritingTail { .. })
                {
                    for node in t.next().map(|n| n.replicas.clone()).unwrap_or_default() {
                        out.push(Act::TailWriteFails { node });
                    }
                }
                if self.taker_timeout(s, t) {
                    out.push(Act::Timeout(net::TAKER));
                }
            }
            _ => {}
        }
        if !self.cfg.consumer {
            return;
        }
        out.push(Act::Read);
        if s.consumer.meta != Snapshot::of(&s.meta) && self.consumer_stuck(s) {
            out.push(Act::RefreshMeta);
        }
        if b.consumer_failovers > 0 {
            out.push(Act::Failover);
        }
    }

    fn next_state(&self, last: &State, action: Act) -> Option<State> {
        let mut s = last.clone();
        match action {
            Act::Deliver(m) => {
                s.net.remove(&m);
                self.deliver(&mut s, &m, true);
            }
            Act::DeliverUnflushed(m) => {
                s.budget.delayed_flushes -= 1;
                s.net.remove(&m);
                self.deliver(&mut s, &m, false);
            }
            Act::Reorder(m) => {
                s.budget.reorders -= 1;
                s.net.remove(&m);
                self.deliver(&mut s, &m, true);
            }
            Act::Duplicate(m) => {
                s.budget.dups -= 1;
                s.net.remove(&m);
                s.net.send(m.clone());
                self.deliver(&mut s, &m, true);
            }
            Act::Lose(m) => {
                s.budget.losses -= 1;
                s.net.remove(&m);
            }
            Act::Flush(n) => s.nodes[n as usize - 1].flush(&mut s.net),
            Act::Crash { node, torn } => {
                s.budget.node_crashes -= 1;
                s.nodes[node as usize - 1].crash(torn);
            }
            Act::ReplicaFailed { pid, replica } => {
                s.budget.replica_failures -= 1;
                let seg = s.writer(pid).expect("running").m.segment().id;
                s.drive(&self.cfg, pid, |m, now| {
                    m.handle_replica_failure(replica, seg, now)
                });
            }
            Act::Cas(pid) => {
                let answer = s.cas_now(pid);
                s.cas_answer(&self.cfg, pid, answer);
            }
            Act::CasUnknown { pid, fate } => {
                s.budget.unknown_cas -= 1;
                s.cas_unknown(pid, fate);
                s.cas_answer(&self.cfg, pid, CasAnswer::Unknown);
            }
            Act::StoreLands => s.store_lands(),
            Act::Timeout(pid) => self.timeout(&mut s, pid),
            Act::ProducerCrash => {
                s.budget.producer_crash = false;
                s.stop_p1();
            }
            Act::TakerCrash => {
                s.budget.taker_crash = false;
                s.p2 = Taker::Crashed;
                s.cas[net::TAKER as usize - 1] = None;
                s.net
                    .retain(|m| m.route().1 != net::Addr::Producer(net::TAKER));
            }
            Act::TakeoverStart => s.takeover_start(&self.cfg),
            Act::TailRead => s.takeover_read(&self.cfg),
            Act::TailReadFails => s.tail_read_fails(&self.cfg),
            Act::TailWriteFails { node } => {
                s.budget.tail_write_failures -= 1;
                let Taker::Taking { t, .. } = &s.p2 else {
                    unreachable!("a tail write while not taking over")
                };
                let seg = t.next().map(|n| n.id).expect("a placed segment");
                s.ghost.tail_replaced = true;
                s.drive_taker(&self.cfg, |t, now| {
                    t.handle_tail_write_failure(node, seg, now)
                });
            }
            Act::Read => {
                if !self.read(&mut s) {
                    return None;
                }
            }
            Act::RefreshMeta => s.consumer.meta = Snapshot::of(&s.meta),
            Act::Failover => {
                s.budget.consumer_failovers -= 1;
                s.consumer.cursor.on_replica_failed();
            }
        }
        s.retire_fenced();
        self.settle(&mut s);
        // A step that changes nothing is no step: without this, such a
        // step would be a self-loop, and the liveness check needs none.
        (!self.cfg.prune_noops || s != *last).then_some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.properties.clone()
    }
}
