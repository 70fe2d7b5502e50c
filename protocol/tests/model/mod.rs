//! The model of trilog that `model_check.rs` checks: log nodes, two
//! producers, a metadata record, a consumer and a trimmer, all driving the
//! production state machines and decisions of `trilog-protocol`.

pub mod acyclic;
pub mod net;
pub mod node;
pub mod props;
pub mod reader;
pub mod repairer;
pub mod scenarios;
pub mod steps;
pub mod store;
pub mod sweeper;
pub mod trimmer;
pub mod writers;

use std::collections::BTreeMap;

use stateright::{Model, Property};
use trilog_protocol::consumer::Cursor;
use trilog_protocol::metadata::{open_for_write, LogMeta};
use trilog_protocol::placement::Candidate;
use trilog_protocol::producer::{OpenSegment, Phase, Producer, ProducerConfig, StopReason};
use trilog_wire::meta::SegmentMeta;

use net::{Msg, Net, Pid, Tag};
use node::Node;
use reader::{Consumer, Snapshot};
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
    /// Connections from a producer to a replica that may be lost (the
    /// producer connects again and resends from what was acknowledged;
    /// a second loss within an ack timeout fails the replica).
    pub connection_losses: u8,
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
    /// Seals below a replica's known commit watermark that a rogue sender
    /// (a stale tool, a bug) sends straight to one replica per run.
    pub rogue_seals: u8,
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
    /// Nodes that may be lost for good (their disk gone) per run.
    pub node_losses: u8,
    /// A repair copies a sealed segment of a lost node to another node.
    pub repair: bool,
    /// Nodes an operator may decommission per run: marked leaving, they
    /// keep their disks and serve on, and repair moves their sealed
    /// copies (reading from them too).
    pub decommissions: u8,
    /// Trims per run (`trimmer.rs`): each moves the trim point by CAS;
    /// the unlinks and the drop that follow are not counted.
    pub trims: u8,
    /// Sealed replicas whose disk damages entries per run (found at once,
    /// dropped, and healed by their node: `repairer.rs`).
    pub damages: u8,
    /// Copies a node may sweep as orphans per run (`sweeper.rs`).
    pub sweeps: u8,
    /// Seals replicas may learn from the record per run
    /// (`Replica::learn_seal`, what a shard does for an idle segment).
    pub learnt_seals: u8,
    /// Producer 1 leaves a replica that alone holds the commit back
    /// (`producer/slow.rs`): its lag timer fires whenever one does, and
    /// it places from its view of the record without reading first.
    pub slow: bool,
    /// Strikes before a slow replica is left (`ProducerConfig::slow_strikes`).
    pub slow_strikes: u8,
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
            // No watermark is lost where liveness is judged; elsewhere a
            // refresh is a duplicate the properties already allow.
            watermark_refresh_ms: u64::MAX,
            slow_lag_floor_ms: if self.slow { 5 } else { u64::MAX },
            slow_bench_ms: 60_000,
            slow_strikes: self.slow_strikes,
            // The view comes from the start and from the producer's own
            // reads and CASes; stale when a trim or a takeover moved the
            // record (the CAS then conflicts and the record is read).
            view_refresh_ms: u64::MAX,
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
    pub connection_losses: u8,
    pub tail_write_failures: u8,
    pub consumer_failovers: u8,
    pub unknown_cas: u8,
    pub rogue_seals: u8,
    pub node_losses: u8,
    pub decommissions: u8,
    pub trims: u8,
    pub damages: u8,
    pub sweeps: u8,
    pub learnt_seals: u8,
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
    /// A producer made a lost connection to a replica again.
    pub reconnected: bool,
    /// A takeover placed its next segment again after a tail write failed.
    pub tail_replaced: bool,
    /// A producer stopped because of another producer when the record's
    /// epoch was not newer than its own (a made-up fence).
    pub false_fence: bool,
    /// A producer stopped, fenced by a newer epoch that really owns the log.
    pub fenced: bool,
    /// A machine was told that a CAS's outcome is unknown.
    pub unknown_told: bool,
    /// Per segment id, the length the record first sealed it at.
    pub record_seals: BTreeMap<u64, u64>,
    /// A rogue seal reached a replica (and was refused).
    pub rogue_sealed: bool,
    /// A replica learnt the record's seal below the watermark it knew.
    pub learnt_below_watermark: bool,
    /// (segment, node) for every replica a repair published.
    pub repaired: std::collections::BTreeSet<(u64, u64)>,
    /// A trim's CAS applied while a producer's CAS was pending (which
    /// then conflicts).
    pub trim_raced: bool,
    /// A trim's drop CAS took a segment out of the record.
    pub dropped: bool,
    /// The segments trims took out of the chain, in id order (what the
    /// consumer's stale record may still name).
    pub trimmed: Vec<SegmentMeta>,
    /// The consumer met the trim point (`Step::Trimmed`).
    pub met_trim: bool,
    /// (segment, node) of the copy damaged and not yet healed: the
    /// properties hold it to nothing until its heal ends (as they hold a
    /// lost node's copy to nothing), and then to everything.
    pub healing: Option<(u64, u64)>,
    /// A heal ended.
    pub healed: bool,
    /// A node swept a copy as an orphan.
    pub swept: bool,
    /// A producer left a replica for being slow.
    pub slow_left: bool,
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
    /// The node lost for good, if any.
    pub lost: Option<u64>,
    /// The node being decommissioned, if any: alive, its disk whole.
    pub leaving: Option<u64>,
    pub repair: Option<repairer::Repair>,
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
    /// Producer `pid` loses its connection to replica `replica` of its
    /// segment.
    ConnectionLost {
        pid: Pid,
        replica: usize,
    },
    /// Producer `pid` is connected again to replica `replica` of
    /// `segment`, as it asked.
    Reconnected {
        pid: Pid,
        replica: usize,
        segment: u64,
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
    /// A rogue sender's `Seal{len: 0}` reaches replica `node` of `seg`,
    /// which knows a commit watermark above 0.
    RogueSeal {
        node: u64,
        seg: u64,
    },
    /// Replica `node` of `seg`, sealed in the record but not on the
    /// replica, learns the record's seal.
    LearnSeal {
        node: u64,
        seg: u64,
    },
    /// Node `n` is lost for good: its disk is gone and it takes nothing.
    LoseNode(u64),
    /// An operator decommissions node `n`: it is leaving (`NodeMode`).
    Decommission(u64),
    /// A repair job starts on the node placement gives it to.
    RepairStart,
    /// The job's entries are appended to its copy.
    RepairCopy,
    /// The copy acknowledges what it holds durably.
    RepairAck,
    /// The copy is sealed (and answers).
    RepairSeal,
    /// The job's record change, by CAS.
    RepairPublish,
    /// Entries `from..` of `node`'s sealed replica of `seg` go bad on its
    /// disk; the scrub finds them and the shard drops them at once
    /// (`Replica::mark_damaged`, `rewind_damage`).
    Damage {
        node: u64,
        seg: u64,
        from: u64,
    },
    /// Node `node` unlinks its copy of `seg`, which the record shows
    /// unlisted for good (the orphan sweep).
    Sweep {
        node: u64,
        seg: u64,
    },
    /// The damaged copy's node starts healing it (`repair::heal_task`,
    /// a refill job), run by the repair steps.
    HealStart,
    /// The trimmer moves the trim point to `before` (`trim::trim_record`,
    /// read and CAS in one step).
    Trim {
        before: u64,
    },
    /// Node `node` unlinks its replica of `seg`, which the record lists
    /// as deleting (`DeleteSegment`).
    Unlink {
        node: u64,
        seg: u64,
    },
    /// The trimmer drops from the record the deleting segments that every
    /// replica unlinked (`trim::drop_deleted`, by CAS).
    DropDeleted,
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
        if cfg.slow {
            let alive = Candidate::all_in_one_zone(&all_nodes(cfg));
            m.set_view(1, meta.clone(), alive, 0);
        }
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
                reconnects: Vec::new(),
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
                connection_losses: cfg.connection_losses,
                tail_write_failures: cfg.tail_write_failures,
                consumer_failovers: cfg.consumer_failovers,
                unknown_cas: cfg.unknown_cas,
                rogue_seals: cfg.rogue_seals,
                node_losses: cfg.node_losses,
                decommissions: cfg.decommissions,
                trims: cfg.trims,
                damages: cfg.damages,
                sweeps: cfg.sweeps,
                learnt_seals: cfg.learnt_seals,
            },
            ghost: Ghost::default(),
            lost: None,
            leaving: None,
            repair: None,
        };
        s.drive(cfg, 1, |m, now| m.begin(now));
        s
    }

    /// Whether `m` can be delivered now.
    pub(crate) fn receivable(&self, s: &State, m: &Msg) -> bool {
        match m {
            Msg::Append { node, .. }
            | Msg::Watermark { node, .. }
            | Msg::Fence { node, .. }
            | Msg::Seal { node, .. } => {
                s.lost != Some(*node) && s.nodes[*node as usize - 1].can_take(m)
            }
            Msg::Ack { .. }
            | Msg::Refused { .. }
            | Msg::FenceAnswer { .. }
            | Msg::Deleted { .. } => true,
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
            Msg::Deleted {
                to, seg, replica, ..
            } => {
                // No takeover runs beside a trimmer (only sealed segments
                // are unlinked, and only a producer writes to one: the
                // abandoned tail of a segment it switched away from).
                if s.writer(*to).is_some() {
                    s.drive(&self.cfg, *to, |p, now| {
                        p.handle_replica_failure(*replica as usize, *seg, now)
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
}

impl State {
    /// Writes down the length the record seals each segment at, the first
    /// time it does (what `SealedNeverShrinks` holds the record to).
    fn note_record_seals(&mut self) {
        for seg in &self.meta.segments {
            if let Some(len) = seg.sealed_len {
                self.ghost.record_seals.entry(seg.id).or_insert(len);
            }
        }
    }

    /// Producer 1 is gone: its connections too, so nothing reaches it.
    pub(crate) fn stop_p1(&mut self) {
        self.p1 = None;
        self.cas[0] = None;
        self.net.retain(|m| {
            !matches!(
                m,
                Msg::Ack { to: 1, .. } | Msg::Refused { to: 1, .. } | Msg::Deleted { to: 1, .. }
            )
        });
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

impl Model for Trilog {
    type State = State;
    type Action = Act;

    fn init_states(&self) -> Vec<State> {
        vec![self.init()]
    }

    fn actions(&self, s: &State, out: &mut Vec<Act>) {
        self.network_steps(s, out);
        self.node_steps(s, out);
        self.producer_steps(s, out);
        self.taker_steps(s, out);
        self.consumer_steps(s, out);
        self.repair_steps(s, out);
        self.trimmer_steps(s, out);
        self.sweeper_steps(s, out);
    }

    fn next_state(&self, last: &State, action: Act) -> Option<State> {
        let mut s = last.clone();
        if !self.take_step(&mut s, action) {
            return None;
        }
        s.retire_fenced();
        self.settle(&mut s);
        s.note_record_seals();
        // A step that changes nothing is no step: without this, such a
        // step would be a self-loop, and the liveness check needs none.
        (!self.cfg.prune_noops || s != *last).then_some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.properties.clone()
    }
}
