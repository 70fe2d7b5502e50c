//! The producers of the model, driven the way `client/src/producer.rs` and
//! `client/src/takeover.rs` drive the production machines: carry out
//! every action, feed every answer back, decide nothing.
//!
//! Producer 1 opened the log (epoch 1, segment 0) and appends its entries.
//! Producer 2 takes the log over with a production [`Takeover`] while
//! producer 1 may still be running (the takeover bumps the epoch, fences
//! the open segment, reads the tail, places the next segment and writes
//! the tail to every replica of it, seals the open segment and publishes
//! the next one), and then writes its own entries with a production
//! [`Producer`]. Metadata calls go to the model's store (`store.rs`).

use trilog_protocol::actions::Actions;
use trilog_protocol::meta_call::{CasAnswer, MetaCall};
use trilog_protocol::producer::{Action, Producer, StopReason};
use trilog_protocol::takeover::{Takeover, TakeoverAction, TakeoverConfig};
use trilog_wire::message::Entry;

use crate::model::net::{Msg, Pid, Tag, TAKER};
use crate::model::{Config, State, LOG_ID};

/// A running producer and what the model knows about it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Writer {
    pub m: Producer,
    /// Its clock: moved only by the timeouts the checker fires.
    pub now: u64,
    /// Ghost: the payload of every entry this producer took, from seq
    /// `first` on.
    pub first: u64,
    pub tags: Vec<Tag>,
    /// The connections it asked to make again, as (replica, segment),
    /// not made yet: the checker makes one at any later step, or lets the
    /// producer's timer give up on it.
    pub reconnects: Vec<(usize, u64)>,
}

impl Writer {
    /// The payload this producer took at `seq`.
    pub fn tag_at(&self, seq: u64) -> Option<Tag> {
        let i = seq.checked_sub(self.first)?;
        self.tags.get(i as usize).copied()
    }
}

/// Producer 2.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Taker {
    Idle,
    /// Taking over; `read` is the tail read the machine asked for, not
    /// carried out yet; `now` its clock.
    Taking {
        t: Takeover,
        read: Option<TakeoverAction>,
        now: u64,
    },
    Writing(Writer),
    /// Crashed, during or after its takeover (`Config::taker_crash`).
    Crashed,
}

pub fn entry(tag: Tag) -> Entry {
    Entry::new(vec![tag.0, tag.1])
}

pub fn tag_of(e: &Entry) -> Tag {
    (e.payload[0], e.payload[1])
}

pub fn all_nodes(cfg: &Config) -> Vec<u64> {
    (1..=cfg.nodes).collect()
}

impl State {
    pub fn writer(&self, pid: Pid) -> Option<&Writer> {
        match pid {
            1 => self.p1.as_ref(),
            _ => match &self.p2 {
                Taker::Writing(w) => Some(w),
                _ => None,
            },
        }
    }

    pub fn writer_mut(&mut self, pid: Pid) -> Option<&mut Writer> {
        match pid {
            1 => self.p1.as_mut(),
            _ => match &mut self.p2 {
                Taker::Writing(w) => Some(w),
                _ => None,
            },
        }
    }

    /// Calls the producer `pid` with its clock and carries out what it
    /// asks for.
    pub fn drive(
        &mut self,
        cfg: &Config,
        pid: Pid,
        f: impl FnOnce(&mut Producer, u64) -> Actions<Action>,
    ) {
        let w = self.writer_mut(pid).expect("a running producer");
        let actions = f(&mut w.m, w.now);
        self.apply(cfg, pid, actions);
    }

    fn apply(&mut self, cfg: &Config, pid: Pid, actions: Actions<Action>) {
        for a in actions {
            let w = self.writer(pid).expect("a running producer");
            let epoch = w.m.epoch();
            match a {
                Action::Committed { through } => self.ghost_commit(pid, through),
                Action::Append {
                    replica,
                    node,
                    segment,
                    first_offset,
                    count,
                    commit,
                    ..
                } => {
                    let tags = w.m.entries(first_offset, count).map(tag_of).collect();
                    self.net.send(Msg::Append {
                        node,
                        seg: segment,
                        epoch,
                        from: pid,
                        replica: replica as u8,
                        first_offset,
                        tags,
                        commit,
                    });
                }
                Action::Watermark {
                    node,
                    segment,
                    commit,
                    ..
                } => self.net.send(Msg::Watermark {
                    node,
                    seg: segment,
                    epoch,
                    from: pid,
                    commit,
                }),
                // The model has no connections to open.
                Action::Connect { .. } => {}
                Action::Reconnect {
                    replica, segment, ..
                } => {
                    let w = self.writer_mut(pid).expect("a running producer");
                    if !w.reconnects.contains(&(replica, segment)) {
                        w.reconnects.push((replica, segment));
                        w.reconnects.sort_unstable();
                    }
                }
                Action::Seal { node, segment, len } => self.net.send(Msg::Seal {
                    node,
                    seg: segment,
                    epoch,
                    from: pid,
                    len,
                }),
                Action::Meta(MetaCall::ReadRecord) => {
                    let answer = self.read_record(cfg);
                    self.drive(cfg, pid, |m, now| m.handle_record(answer, now));
                }
                Action::Meta(MetaCall::Cas {
                    expected_version,
                    record,
                }) => {
                    let slot = &mut self.cas[pid as usize - 1];
                    assert!(slot.is_none(), "one metadata call at a time");
                    *slot = Some((expected_version, record));
                }
                Action::Stopped { reason, .. } => self.ghost_stopped(epoch, reason),
            }
        }
    }

    /// Ghost: a producer at `epoch` stopped for `reason`. Stopping because
    /// of another producer is only right if the record's epoch really is
    /// newer (and, for a fence, at least the one named).
    fn ghost_stopped(&mut self, epoch: u64, reason: StopReason) {
        let current = self.meta.epoch;
        let real = match reason {
            StopReason::Fenced { by_epoch } => by_epoch > epoch && by_epoch <= current,
            StopReason::SealedElsewhere { .. } => current > epoch,
            StopReason::LogDeleted | StopReason::GaveUp { .. } | StopReason::Closed => true,
        };
        self.ghost.false_fence |= !real;
        self.ghost.fenced |= matches!(reason, StopReason::Fenced { .. }) && real;
    }

    /// Ghost: producer `pid` reported every seq below `through` committed.
    pub fn ghost_commit(&mut self, pid: Pid, through: u64) {
        let w = self.writer(pid).expect("a running producer");
        let from = self.ghost.reported[pid as usize - 1];
        let tags: Vec<(u64, Tag)> = (from..through)
            .map(|seq| (seq, w.tag_at(seq).expect("committed what it took")))
            .collect();
        for (seq, tag) in tags {
            match self.ghost.committed.get(&seq) {
                Some(t) if *t != tag => self.ghost.conflict = true,
                Some(_) => {}
                None => {
                    self.ghost.committed.insert(seq, tag);
                }
            }
        }
        let r = &mut self.ghost.reported[pid as usize - 1];
        *r = (*r).max(through);
    }

    /// Hands the answer to the CAS of `pid` to its machine.
    pub fn cas_answer(&mut self, cfg: &Config, pid: Pid, answer: CasAnswer) {
        if answer == CasAnswer::Unknown {
            self.ghost.unknown_told = true;
        }
        if self.writer(pid).is_some() {
            self.drive(cfg, pid, |m, now| m.handle_cas(answer, now));
            return;
        }
        let Taker::Taking { t, now, .. } = &mut self.p2 else {
            panic!("a CAS answer for producer {pid}, which is gone");
        };
        let more = t.handle_cas(answer, *now);
        self.takeover_actions(cfg, more);
    }

    /// Producer 2 starts its takeover: it reads the record and asks for
    /// the epoch bump.
    pub fn takeover_start(&mut self, cfg: &Config) {
        assert_eq!(self.p2, Taker::Idle);
        let tcfg = TakeoverConfig::new(cfg.producer_config());
        let (t, actions) = Takeover::start(LOG_ID, tcfg, 0);
        self.p2 = Taker::Taking {
            t,
            read: None,
            now: 0,
        };
        self.takeover_actions(cfg, actions);
    }

    /// Calls the takeover with its clock and carries out what it asks for.
    pub fn drive_taker(
        &mut self,
        cfg: &Config,
        f: impl FnOnce(&mut Takeover, u64) -> Actions<TakeoverAction>,
    ) {
        let Taker::Taking { t, now, .. } = &mut self.p2 else {
            panic!("no takeover under way");
        };
        let more = f(t, *now);
        self.takeover_actions(cfg, more);
    }

    /// Carries out the takeover's actions: messages go out, a read of the
    /// record is answered, a CAS and a tail read wait for their step.
    pub fn takeover_actions(&mut self, cfg: &Config, actions: Actions<TakeoverAction>) {
        for a in actions {
            let Taker::Taking { read, .. } = &mut self.p2 else {
                panic!("takeover actions while not taking over");
            };
            match a {
                TakeoverAction::Fence {
                    replica,
                    node,
                    segment,
                    epoch,
                } => self.net.send(Msg::Fence {
                    node,
                    seg: segment,
                    epoch,
                    replica: replica as u8,
                }),
                TakeoverAction::WriteTail { .. } => self.send_tail_write(&a),
                TakeoverAction::Seal {
                    node,
                    segment,
                    epoch,
                    len,
                } => self.net.send(Msg::Seal {
                    node,
                    seg: segment,
                    epoch,
                    from: TAKER,
                    len,
                }),
                TakeoverAction::ReadTail { .. } => {
                    assert!(read.is_none(), "one tail read at a time");
                    *read = Some(a);
                }
                TakeoverAction::Meta(MetaCall::ReadRecord) => {
                    let answer = self.read_record(cfg);
                    self.drive_taker(cfg, |t, now| t.handle_record(answer, now));
                }
                TakeoverAction::Meta(MetaCall::Cas {
                    expected_version,
                    record,
                }) => {
                    let slot = &mut self.cas[TAKER as usize - 1];
                    assert!(slot.is_none(), "one metadata call at a time");
                    *slot = Some((expected_version, record));
                }
                TakeoverAction::Done {
                    epoch,
                    segment,
                    held,
                } => self.takeover_done(cfg, epoch, segment, held),
                TakeoverAction::NothingOpen => {
                    panic!("the model's log always has an open segment")
                }
                TakeoverAction::Stopped(reason) => {
                    panic!("the model's takeover never gives up: {reason}")
                }
            }
        }
    }

    /// Sends a chunk of the tail to a replica of the unpublished next
    /// segment.
    fn send_tail_write(&mut self, a: &TakeoverAction) {
        let TakeoverAction::WriteTail {
            node,
            segment,
            epoch,
            first_offset,
            count,
            ..
        } = *a
        else {
            unreachable!("a tail write");
        };
        let Taker::Taking { t, .. } = &self.p2 else {
            panic!("takeover actions while not taking over");
        };
        let next = t.next().expect("writing to a placed segment");
        let replica = next.replicas.iter().position(|n| *n == node);
        let tags = t.tail_entries(first_offset, count).iter().map(tag_of);
        self.net.send(Msg::Append {
            node,
            seg: segment,
            epoch,
            from: TAKER,
            replica: replica.expect("a placed node") as u8,
            first_offset,
            tags: tags.collect(),
            commit: 0,
        });
    }

    /// Carries out the tail read the takeover asked for (one request and
    /// its answer; a replica that serves nothing answers with nothing).
    pub fn takeover_read(&mut self, cfg: &Config) {
        let Taker::Taking { read, .. } = &mut self.p2 else {
            panic!("no takeover under way");
        };
        let Some(TakeoverAction::ReadTail {
            replica,
            node,
            segment,
            from,
            to,
        }) = read.take()
        else {
            panic!("no tail read asked for");
        };
        let s = self.nodes[node as usize - 1].seg(segment);
        let end = s.rep.readable_end(to).max(from);
        let entries: Vec<Entry> = s.recs[from as usize..end as usize]
            .iter()
            .map(|(tag, _)| entry(*tag))
            .collect();
        self.drive_taker(cfg, |t, now| t.handle_tail(replica, from, entries, now));
    }

    /// The tail read asked for fails (a timeout): the takeover moves to
    /// another answering replica, or waits for more answers.
    pub fn tail_read_fails(&mut self, cfg: &Config) {
        let Taker::Taking { read, .. } = &mut self.p2 else {
            panic!("no takeover under way");
        };
        let Some(TakeoverAction::ReadTail { replica, .. }) = read.take() else {
            panic!("no tail read asked for");
        };
        self.drive_taker(cfg, |t, now| t.handle_tail_failure(replica, now));
    }

    /// The sealing CAS applied: producer 2 writes the next segment after
    /// the tail it carried, which is durable on every replica.
    fn takeover_done(
        &mut self,
        cfg: &Config,
        epoch: u64,
        segment: trilog_protocol::producer::OpenSegment,
        held: u64,
    ) {
        let first = segment.first_seq;
        let Taker::Taking { t, now, .. } = &self.p2 else {
            panic!("done while not taking over");
        };
        let mut tags: Vec<Tag> = t.tail().iter().map(tag_of).collect();
        assert_eq!(tags.len() as u64, held, "the tail is what is held");
        let now = *now;
        self.ghost.takeover_end = Some(first + held);
        self.ghost.carried = held;
        self.ghost.reported[TAKER as usize - 1] = first;
        let mut m = Producer::new(LOG_ID, epoch, segment, held, cfg.producer_config());
        for i in 0..cfg.p2_entries {
            let tag = (TAKER, i);
            let seq = m.append(entry(tag)).expect("a new producer takes entries");
            assert_eq!(seq, first + tags.len() as u64, "seqs are dense");
            tags.push(tag);
        }
        self.p2 = Taker::Writing(Writer {
            m,
            now,
            first,
            tags,
            reconnects: Vec::new(),
        });
        self.ghost_commit(TAKER, first + held);
        self.drive(cfg, TAKER, |m, now| m.begin(now));
    }
}
