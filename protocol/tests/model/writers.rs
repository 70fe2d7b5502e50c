//! The producers of the model, driven the way `client/src/producer.rs` and
//! `client/src/takeover.rs` drive the production machines.
//!
//! Producer 1 opened the log (epoch 1, segment 0) and appends its entries.
//! Producer 2 takes the log over while producer 1 may still be running:
//! it bumps the epoch by CAS, fences the open segment, reads the tail,
//! places the next segment and writes the tail to every replica of it,
//! seals the open segment and publishes the next one by CAS, and then
//! writes its own entries with a production [`Producer`]. A metadata CAS is one
//! atomic step on the single record (a failed attempt has no effect but a
//! retry, so only the attempt that applies, or the one that shows a newer
//! epoch, is modeled).

use trilog_protocol::metadata::{bump_epoch, switch_segment, MetaRefusal};
use trilog_protocol::placement::choose_replicas;
use trilog_protocol::producer::{Action, OpenSegment, Producer};
use trilog_protocol::takeover::{Takeover, TakeoverAction};
use trilog_wire::message::Entry;

use crate::model::net::{Msg, Pid, Tag, TAKER};
use crate::model::{Config, State, LOG_ID};

/// A running producer and what the model knows about it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Writer {
    pub m: Producer,
    /// A segment switch asked for (segment, seal_len, exclude), waiting
    /// for its CAS.
    pub switch: Option<(u64, u64, Vec<u64>)>,
    /// Ghost: the payload of every entry this producer took, from seq
    /// `first` on.
    pub first: u64,
    pub tags: Vec<Tag>,
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
    /// Fencing and reading the tail; `todo` is the next step the machine
    /// asked for (a tail read or the sealing CAS).
    Taking {
        t: Takeover,
        todo: Option<TakeoverAction>,
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

    /// Calls the producer `pid` and carries out what it asks for.
    pub fn drive(&mut self, pid: Pid, f: impl FnOnce(&mut Producer) -> Vec<Action>) {
        let w = self.writer_mut(pid).expect("a running producer");
        let actions = f(&mut w.m);
        self.apply(pid, actions);
    }

    fn apply(&mut self, pid: Pid, actions: Vec<Action>) {
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
                Action::SwitchSegment {
                    segment,
                    seal_len,
                    exclude,
                } => {
                    let w = self.writer_mut(pid).expect("a running producer");
                    assert!(w.switch.is_none(), "one switch at a time");
                    w.switch = Some((segment, seal_len, exclude));
                }
                Action::Seal { node, segment, len } => self.net.send(Msg::Seal {
                    node,
                    seg: segment,
                    epoch,
                    from: pid,
                    len,
                }),
                Action::Fenced { .. } => {}
                Action::SealForClose { .. } => panic!("no producer of the model closes"),
            }
        }
    }

    /// Ghost: producer `pid` reported every seq below `through` committed.
    fn ghost_commit(&mut self, pid: Pid, through: u64) {
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

    /// The CAS of a segment switch that producer `pid` asked for.
    pub fn switch_cas(&mut self, cfg: &Config, pid: Pid) {
        let w = self.writer_mut(pid).expect("a running producer");
        let (segment, seal_len, exclude) = w.switch.take().expect("a switch asked for");
        let epoch = w.m.epoch();
        let replicas = choose_replicas(&all_nodes(cfg), &exclude, cfg.replicas, cfg.seed)
            .expect("enough nodes");
        match switch_segment(&self.meta, epoch, segment, seal_len, &replicas) {
            Ok(next) => {
                let last = next.segments.last().expect("the new segment").clone();
                assert!((last.id as usize) < cfg.max_segments, "raise max_segments");
                self.meta = next;
                let open = OpenSegment {
                    id: last.id,
                    first_seq: last.first_seq,
                    replicas: last.replicas,
                };
                self.drive(pid, |m| m.handle_switched(open, 0));
            }
            Err(MetaRefusal::NotOwner { current, .. }) => {
                self.drive(pid, |m| m.handle_fenced(current));
            }
            Err(e) => {
                let by = self.meta.epoch.max(epoch + 1);
                let _ = e;
                self.drive(pid, |m| m.handle_fenced(by));
            }
        }
    }

    /// Producer 2 bumps the epoch by CAS and fences the open segment.
    pub fn takeover_start(&mut self) {
        assert_eq!(self.p2, Taker::Idle);
        let last = self.meta.segments.last().expect("a segment").clone();
        assert!(
            last.sealed_len.is_none(),
            "only an open segment is taken over"
        );
        self.meta = bump_epoch(&self.meta);
        let (t, fences) = Takeover::start(LOG_ID, self.meta.epoch, last);
        self.p2 = Taker::Taking { t, todo: None };
        self.takeover_actions(fences);
    }

    /// Sends the fences, keeps the next step.
    pub fn takeover_actions(&mut self, actions: Vec<TakeoverAction>) {
        for a in actions {
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
                TakeoverAction::WriteTail {
                    replica,
                    node,
                    segment,
                    ..
                } => {
                    let Taker::Taking { t, .. } = &self.p2 else {
                        panic!("takeover actions while not taking over");
                    };
                    let tags = t.tail().iter().map(tag_of).collect();
                    let epoch = t.epoch();
                    self.net.send(Msg::Append {
                        node,
                        seg: segment,
                        epoch,
                        from: TAKER,
                        replica: replica as u8,
                        first_offset: 0,
                        tags,
                        commit: 0,
                    });
                }
                step => {
                    let Taker::Taking { todo, .. } = &mut self.p2 else {
                        panic!("takeover actions while not taking over");
                    };
                    assert!(todo.is_none(), "one step at a time");
                    *todo = Some(step);
                }
            }
        }
    }

    /// Carries out the step the takeover asked for: a tail read (one
    /// request and its answer; a read that serves nothing fails), or the
    /// sealing CAS.
    pub fn takeover_step(&mut self, cfg: &Config) {
        let Taker::Taking { t, todo } = &mut self.p2 else {
            panic!("no takeover under way");
        };
        let step = todo.take().expect("a step asked for");
        match step {
            TakeoverAction::ReadTail {
                replica,
                node,
                segment,
                from,
                to,
            } => {
                let n = &self.nodes[node as usize - 1];
                let s = n.seg(segment);
                let end = s.rep.readable_end(to);
                let more = if end > from {
                    let entries = s.recs[from as usize..end as usize]
                        .iter()
                        .map(|(tag, _)| entry(*tag))
                        .collect();
                    t.handle_tail(from, entries)
                } else {
                    t.handle_tail_failure(replica)
                };
                self.takeover_actions(more);
            }
            TakeoverAction::PlaceNext { exclude } => {
                let replicas = choose_replicas(&all_nodes(cfg), &exclude, cfg.replicas, cfg.seed)
                    .expect("enough nodes");
                let more = t.placed(replicas);
                self.takeover_actions(more);
            }
            TakeoverAction::SealAndOpen {
                segment,
                seal_len,
                replicas,
            } => self.takeover_seal(cfg, segment, seal_len, replicas),
            TakeoverAction::Fence { .. } | TakeoverAction::WriteTail { .. } => {
                panic!("fences and tail writes are sent at once")
            }
        }
    }

    /// The tail read asked for fails (a timeout): the takeover moves to
    /// another answering replica, or waits for more answers.
    pub fn tail_read_fails(&mut self) {
        let Taker::Taking { t, todo } = &mut self.p2 else {
            panic!("no takeover under way");
        };
        let Some(TakeoverAction::ReadTail { replica, .. }) = todo.take() else {
            panic!("no tail read asked for");
        };
        let more = t.handle_tail_failure(replica);
        self.takeover_actions(more);
    }

    fn takeover_seal(&mut self, cfg: &Config, segment: u64, seal_len: u64, replicas: Vec<u64>) {
        let Taker::Taking { t, .. } = &mut self.p2 else {
            panic!("no takeover under way");
        };
        let epoch = t.epoch();
        let old = t.segment().clone();
        let next = switch_segment(&self.meta, epoch, segment, seal_len, &replicas)
            .expect("only producer 2 changes the record after its epoch bump");
        let (open, tail) = t.finish();
        let last = next.segments.last().expect("the new segment").clone();
        assert_eq!(last.id, open.id, "the CAS publishes the segment placed");
        assert_eq!(last.replicas, open.replicas);
        assert!((last.id as usize) < cfg.max_segments, "raise max_segments");
        self.meta = next;
        let first = last.first_seq;
        let mut tags: Vec<Tag> = tail.iter().map(tag_of).collect();
        self.ghost.takeover_end = Some(old.first_seq + seal_len + tail.len() as u64);
        self.ghost.carried = tail.len() as u64;
        self.ghost.reported[TAKER as usize - 1] = first;
        let open = OpenSegment {
            id: last.id,
            first_seq: first,
            replicas: last.replicas,
        };
        // The tail is durable on every replica of the segment just
        // published: producer 2 starts after it, and it is committed.
        let held = tail.len() as u64;
        let mut m = Producer::new(LOG_ID, epoch, open, held, cfg.producer_config());
        for i in 0..cfg.p2_entries {
            let tag = (TAKER, i);
            let seq = m.append(entry(tag)).expect("a new producer takes entries");
            assert_eq!(seq, first + tags.len() as u64, "seqs are dense");
            tags.push(tag);
        }
        self.p2 = Taker::Writing(Writer {
            m,
            switch: None,
            first,
            tags,
        });
        self.ghost_commit(TAKER, first + held);
        // Best effort: tell the old segment's replicas of the seal.
        for node in old.replicas {
            self.net.send(Msg::Seal {
                node,
                seg: segment,
                epoch,
                from: TAKER,
                len: seal_len,
            });
        }
        self.drive(TAKER, |m| m.poll(0));
    }
}
