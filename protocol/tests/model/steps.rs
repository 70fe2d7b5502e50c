//! The steps the checker may take in a state, and what each does.

use trilog_protocol::meta_call::CasAnswer;
use trilog_protocol::producer::Phase;
use trilog_protocol::takeover::{Takeover, TakeoverPhase};

use crate::model::net::{self, Msg, Pid};
use crate::model::reader::Snapshot;
use crate::model::store::Fate;
use crate::model::writers::{Taker, Writer};
use crate::model::{Act, State, Trilog};

fn writing(w: &Writer) -> bool {
    matches!(w.m.phase(), Phase::Writing | Phase::Closing)
}

impl Trilog {
    /// Deliveries and network faults. Only a head is lost: losing a
    /// message further back is the same as losing it once it is the head,
    /// since nothing behind it moves before.
    pub(crate) fn network_steps(&self, s: &State, out: &mut Vec<Act>) {
        let b = &s.budget;
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
    }

    /// Flushes, crashes of a node that holds (or is to hold) a segment,
    /// published or being written by a takeover, and rogue seals.
    pub(crate) fn node_steps(&self, s: &State, out: &mut Vec<Act>) {
        self.rogue_steps(s, out);
        self.learn_steps(s, out);
        for n in &s.nodes {
            if n.dirty() {
                out.push(Act::Flush(n.id));
            }
            let placed = match &s.p2 {
                Taker::Taking { t, .. } => t.next().is_some_and(|x| x.replicas.contains(&n.id)),
                _ => false,
            };
            let copying = s.repair.as_ref().is_some_and(|r| r.target == n.id);
            let replica =
                placed || copying || s.meta.segments.iter().any(|g| g.replicas.contains(&n.id));
            let replica = replica && s.lost != Some(n.id);
            if replica && s.budget.node_crashes > 0 {
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
    }

    /// A replica of a segment the record seals, still open itself, learns
    /// the seal once nothing is staged (the shard's control queue drains
    /// first), at any step.
    fn learn_steps(&self, s: &State, out: &mut Vec<Act>) {
        if s.budget.learnt_seals == 0 {
            return;
        }
        for g in s.meta.segments.iter().filter(|g| g.sealed_len.is_some()) {
            for &node in g.replicas.iter().filter(|n| s.lost != Some(**n)) {
                let seg = s.nodes[node as usize - 1].seg(g.id);
                if !seg.gone && seg.rep.sealed_len().is_none() && seg.drained() {
                    out.push(Act::LearnSeal { node, seg: g.id });
                }
            }
        }
    }

    /// A rogue `Seal{len: 0}` to a replica of a published segment that
    /// knows a commit watermark above 0 (and takes seals: nothing staged).
    fn rogue_steps(&self, s: &State, out: &mut Vec<Act>) {
        if s.budget.rogue_seals == 0 {
            return;
        }
        for g in &s.meta.segments {
            for &node in &g.replicas {
                let n = &s.nodes[node as usize - 1];
                let seg = n.seg(g.id);
                if seg.rep.watermark() > 0 && seg.drained() {
                    out.push(Act::RogueSeal { node, seg: g.id });
                }
            }
        }
    }

    /// Replica failures, timers, metadata CASes and their unknown
    /// outcomes, crashes of the producers.
    pub(crate) fn producer_steps(&self, s: &State, out: &mut Vec<Act>) {
        let b = &s.budget;
        for pid in [1, 2] {
            if let Some(w) = s.writer(pid) {
                // A connection error or a timeout, at any moment.
                if b.replica_failures > 0 && writing(w) {
                    for replica in 0..w.m.segment().replicas.len() {
                        out.push(Act::ReplicaFailed { pid, replica });
                    }
                }
                // A reset connection (a node restart, a network blip).
                if b.connection_losses > 0 && writing(w) {
                    for replica in 0..w.m.segment().replicas.len() {
                        out.push(Act::ConnectionLost { pid, replica });
                    }
                }
                for &(replica, segment) in &w.reconnects {
                    out.push(Act::Reconnected {
                        pid,
                        replica,
                        segment,
                    });
                }
                if w.m.poll_timeout().is_some() {
                    out.push(Act::Timeout(pid));
                }
            }
            if s.cas[pid as usize - 1].is_none() {
                continue;
            }
            out.push(Act::Cas(pid));
            if b.unknown_cas > 0 {
                let mut fates = vec![Fate::Lost];
                if s.cas_would_apply(pid) {
                    fates.push(Fate::Applied);
                }
                if s.store_in_flight.is_none() {
                    fates.push(Fate::Later);
                }
                out.extend(fates.into_iter().map(|fate| Act::CasUnknown { pid, fate }));
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
    }

    /// The takeover's start, its tail read (or its failure), a failed tail
    /// write, its timer.
    pub(crate) fn taker_steps(&self, s: &State, out: &mut Vec<Act>) {
        match &s.p2 {
            Taker::Idle if self.cfg.takeover => out.push(Act::TakeoverStart),
            Taker::Taking { read: Some(_), .. } => {
                out.push(Act::TailRead);
                if self.cfg.tail_read_failures {
                    out.push(Act::TailReadFails);
                }
            }
            Taker::Taking { t, read: None, .. } => {
                if s.budget.tail_write_failures > 0
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
    }

    pub(crate) fn consumer_steps(&self, s: &State, out: &mut Vec<Act>) {
        if !self.cfg.consumer {
            return;
        }
        out.push(Act::Read);
        if s.consumer.meta != Snapshot::of(&s.meta) && self.consumer_stuck(s) {
            out.push(Act::RefreshMeta);
        }
        if s.budget.consumer_failovers > 0 {
            out.push(Act::Failover);
        }
    }

    /// Whether the takeover's timer may fire: a pause of a metadata round,
    /// or the fence resend once no fence or answer is under way any more
    /// (lost, or its node crashed; else resends would pile up answers
    /// without end). The tail read and tail write timeouts are the
    /// `TailReadFails` and `TailWriteFails` faults.
    fn taker_timeout(&self, s: &State, t: &Takeover) -> bool {
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

    /// Takes step `action` in `s`; `false` if it has no effect worth a
    /// state (a read that gets nothing).
    pub(crate) fn take_step(&self, s: &mut State, action: Act) -> bool {
        if self.take_repair_step(s, &action) {
            return true;
        }
        match action {
            Act::Deliver(m) => {
                s.net.remove(&m);
                self.deliver(s, &m, true);
            }
            Act::DeliverUnflushed(m) => {
                s.budget.delayed_flushes -= 1;
                s.net.remove(&m);
                self.deliver(s, &m, false);
            }
            Act::Reorder(m) => {
                s.budget.reorders -= 1;
                s.net.remove(&m);
                self.deliver(s, &m, true);
            }
            Act::Duplicate(m) => {
                s.budget.dups -= 1;
                s.net.remove(&m);
                s.net.send(m.clone());
                self.deliver(s, &m, true);
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
            Act::Read => return self.read(s),
            Act::RefreshMeta => s.consumer.meta = Snapshot::of(&s.meta),
            Act::Failover => {
                s.budget.consumer_failovers -= 1;
                s.consumer.cursor.on_replica_failed();
            }
            Act::RogueSeal { node, seg } => {
                s.budget.rogue_seals -= 1;
                s.ghost.rogue_sealed = true;
                // From no producer: the refusal goes nowhere.
                let seal = Msg::Seal {
                    node,
                    seg,
                    epoch: 0,
                    from: 0,
                    len: 0,
                };
                s.nodes[node as usize - 1].take(&seal, &mut s.net);
            }
            Act::LearnSeal { node, seg } => {
                s.budget.learnt_seals -= 1;
                let Some(g) = s.meta.segments.iter().find(|g| g.id == seg) else {
                    unreachable!("learnt from a segment the record has")
                };
                let (epoch, Some(len)) = (g.epoch, g.sealed_len) else {
                    unreachable!("learnt from a sealed segment")
                };
                let n = &mut s.nodes[node as usize - 1];
                if n.seg(seg).rep.watermark() > len {
                    s.ghost.learnt_below_watermark = true;
                }
                n.learn_seal(seg, epoch, len);
            }
            Act::Sweep { node, seg } => self.take_sweep(s, node, seg),
            trimmer @ (Act::Trim { .. } | Act::Unlink { .. } | Act::DropDeleted) => {
                self.take_trimmer_step(s, trimmer)
            }
            machine => self.take_machine_step(s, machine),
        }
        true
    }

    /// The steps of the producers, the takeover and the metadata store.
    fn take_machine_step(&self, s: &mut State, action: Act) {
        let cfg = &self.cfg;
        match action {
            Act::ReplicaFailed { pid, replica } => {
                s.budget.replica_failures -= 1;
                let seg = s.writer(pid).expect("running").m.segment().id;
                s.drive(cfg, pid, |m, now| {
                    m.handle_replica_failure(replica, seg, now)
                });
            }
            Act::ConnectionLost { pid, replica } => {
                s.budget.connection_losses -= 1;
                let seg = s.writer(pid).expect("running").m.segment().id;
                s.drive(cfg, pid, |m, now| {
                    m.handle_connection_lost(replica, seg, now)
                });
            }
            Act::Reconnected {
                pid,
                replica,
                segment,
            } => {
                let w = s.writer_mut(pid).expect("running");
                w.reconnects.retain(|r| *r != (replica, segment));
                s.ghost.reconnected = true;
                s.drive(cfg, pid, |m, now| {
                    m.handle_reconnected(replica, segment, now)
                });
            }
            Act::Cas(pid) => {
                let answer = s.cas_now(pid);
                s.cas_answer(cfg, pid, answer);
            }
            Act::CasUnknown { pid, fate } => {
                s.budget.unknown_cas -= 1;
                s.cas_unknown(pid, fate);
                s.cas_answer(cfg, pid, CasAnswer::Unknown);
            }
            Act::StoreLands => s.store_lands(),
            Act::Timeout(pid) => self.timeout(s, pid),
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
            Act::TakeoverStart => s.takeover_start(cfg),
            Act::TailRead => s.takeover_read(cfg),
            Act::TailReadFails => s.tail_read_fails(cfg),
            Act::TailWriteFails { node } => {
                s.budget.tail_write_failures -= 1;
                let Taker::Taking { t, .. } = &s.p2 else {
                    unreachable!("a tail write while not taking over")
                };
                let seg = t.next().map(|n| n.id).expect("a placed segment");
                s.ghost.tail_replaced = true;
                s.drive_taker(cfg, |t, now| t.handle_tail_write_failure(node, seg, now));
            }
            other => unreachable!("not a machine step: {other:?}"),
        }
    }

    /// Fires the next timer of producer `pid`: its clock moves to it.
    fn timeout(&self, s: &mut State, pid: Pid) {
        if let Some(w) = s.writer_mut(pid) {
            let at = w.m.poll_timeout().expect("a timer is set");
            w.now = w.now.max(at);
            s.drive(&self.cfg, pid, |m, now| m.handle_timeout(now));
            if let Some(w) = s.writer(pid) {
                s.ghost.slow_left |= !w.m.benched(w.now).is_empty();
            }
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
