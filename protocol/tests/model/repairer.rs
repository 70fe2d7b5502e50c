//! Repair in the model: a node lost for good (its disk gone) and the
//! production [`RepairJob`] bringing a sealed segment it held back to full
//! strength on another node, driven the way `node/src/repair/copy.rs`
//! drives it.
//!
//! One job at a time, on the node `repair::plan` gives it to. Its steps:
//! - **copy**: the entries of the segment, read from a surviving replica's
//!   disk, are appended to the target (staged there; an append is acked
//!   only after a flush, as on a node), and the job is told they were sent
//!   ([`RepairJob::on_sent`]);
//! - **durable**: once a flush made them durable on the target (the
//!   append's ack), the job is told ([`RepairJob::on_durable`]) and seals
//!   the copy; the seal is applied once nothing is staged, and answered;
//! - **publish**: one atomic CAS of the record with the job's change.
//!
//! The target may crash anywhere in between (the node crash fault), losing
//! what was staged.
//!
//! A decommission ([`Act::Decommission`]) is the other way a replica comes
//! to be replaced: the node is marked leaving in the registrations
//! repair sees (alive, not writable, `NodeMode::Leaving`), keeps its disk
//! and serves on; the same plan and job move its copy, and the leaving
//! node may be the job's source. Repair's messages never travel the model's network:
//! the job talks to nodes within its own steps (its answers would reach
//! no producer), which only removes interleavings among its own requests,
//! not between them and the faults.

use trilog_protocol::metadata::NodeMode;
use trilog_protocol::repair::{
    heal_task, plan, repair_target, JobAction, JobState, LostNodes, NodeView, RepairJob,
};
use trilog_protocol::NodeId;

use crate::model::net::{Addr, Msg, Pid};
use crate::model::node::Seg;
use crate::model::writers::all_nodes;
use crate::model::{Act, State, Trilog};

/// The repairer's connections, told apart from the producers'.
pub const REPAIRER: Pid = 3;

/// A running repair: the job, its target and what it does next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repair {
    pub job: RepairJob,
    pub target: NodeId,
    pub next: JobAction,
    /// Appends were sent and their ack is awaited (it comes once a flush
    /// made them durable on the target).
    pub awaiting_ack: bool,
    /// A heal of the target's own damaged copy (a refill job), not a
    /// repair onto a new node.
    pub heal: bool,
}

/// The node ids of the model and their liveness: every node is alive but
/// the lost one, all in one zone; a lost node is lost at once (the grace
/// period is a matter of time, which the model has not); a leaving node is
/// alive but takes no new copy.
fn lost_view(s: &State, cfg: &crate::model::Config) -> LostNodes {
    let mut nodes = LostNodes::new(0);
    let views: Vec<NodeView> = all_nodes(cfg)
        .into_iter()
        .map(|id| {
            let alive = s.lost != Some(id);
            let leaving = s.leaving == Some(id);
            NodeView {
                id,
                zone: String::new(),
                alive,
                writable: alive && !leaving,
                mode: if leaving {
                    NodeMode::Leaving
                } else {
                    NodeMode::Active
                },
            }
        })
        .collect();
    nodes.observe(0, &views);
    nodes
}

impl Trilog {
    /// Losing a node for good, and the repair's steps.
    pub(crate) fn repair_steps(&self, s: &State, out: &mut Vec<Act>) {
        if s.budget.node_losses > 0 && s.lost.is_none() {
            out.extend(self.holding_sealed(s).map(Act::LoseNode));
        }
        if s.budget.decommissions > 0 && s.leaving.is_none() && s.lost.is_none() {
            out.extend(self.holding_sealed(s).map(Act::Decommission));
        }
        self.damage_steps(s, out);
        let replacing = s.lost.or(s.leaving).is_some();
        match &s.repair {
            None if self.cfg.repair && replacing && self.first_task(s).is_some() => {
                out.push(Act::RepairStart)
            }
            None if self.heal_job(s).is_some() => out.push(Act::HealStart),
            None => {}
            Some(r) => {
                // An ack, and a seal's answer, come once nothing the job
                // sent is staged any more on the target.
                let seg = s.nodes[r.target as usize - 1].seg(r.job.task().segment.id);
                match r.next {
                    _ if r.awaiting_ack => {
                        if seg.drained() {
                            out.push(Act::RepairAck);
                        }
                    }
                    JobAction::Copy { .. } => out.push(Act::RepairCopy),
                    JobAction::Seal { .. } => {
                        if seg.drained() {
                            out.push(Act::RepairSeal);
                        }
                    }
                    JobAction::Publish => out.push(Act::RepairPublish),
                    JobAction::Stop => {}
                }
            }
        }
    }

    /// The nodes the record lists as a replica of some sealed segment: the
    /// ones whose loss or decommission a repair must make up for.
    fn holding_sealed<'a>(&self, s: &'a State) -> impl Iterator<Item = u64> + 'a {
        all_nodes(&self.cfg).into_iter().filter(move |n| {
            s.meta
                .segments
                .iter()
                .any(|g| g.sealed_len.is_some() && g.replicas.contains(n))
        })
    }

    /// Damage to a sealed replica the record lists, whole on disk, while
    /// no job runs and no other copy is being healed.
    fn damage_steps(&self, s: &State, out: &mut Vec<Act>) {
        if s.budget.damages == 0 || s.repair.is_some() || s.ghost.healing.is_some() {
            return;
        }
        for seg in &s.meta.segments {
            let Some(len) = seg.sealed_len else { continue };
            for &node in seg.replicas.iter().filter(|n| s.lost != Some(**n)) {
                let g = s.nodes[node as usize - 1].seg(seg.id);
                let whole = !g.gone
                    && g.drained()
                    && g.rep.sealed_len() == Some(len)
                    && g.rep.durable_len() == len;
                if whole {
                    for from in 0..len {
                        out.push(Act::Damage {
                            node,
                            seg: seg.id,
                            from,
                        });
                    }
                }
            }
        }
    }

    /// The heal of the damaged copy, once its node can answer the job's
    /// probe (a fence, answered after the drain) and another replica is
    /// alive to copy from.
    fn heal_job(&self, s: &State) -> Option<(RepairJob, NodeId)> {
        let (seg, node) = s.ghost.healing?;
        if !s.nodes[node as usize - 1].seg(seg).drained() {
            return None;
        }
        let task = heal_task(&s.meta, node, seg, &lost_view(s, &self.cfg))?;
        Some((RepairJob::refill(task, node), node))
    }

    /// A heal that ended: the copy is held to every property again.
    fn end_heal(s: &mut State) {
        let Some(r) = &s.repair else { return };
        if !r.heal || *r.job.state() != JobState::Done {
            return;
        }
        let (seg, target) = (r.job.task().segment.id, r.target);
        assert_eq!(s.ghost.healing, Some((seg, target)), "healed another copy");
        s.ghost.healing = None;
        s.ghost.healed = true;
        s.ghost.repaired.insert((seg, target));
        s.repair = None;
    }

    fn first_task(&self, s: &State) -> Option<(RepairJob, NodeId)> {
        let lost = s.lost.or(s.leaving)?;
        let mut nodes = lost_view(s, &self.cfg);
        for seg in s
            .meta
            .segments
            .iter()
            .filter(|g| g.replicas.contains(&lost))
        {
            let Some(target) = repair_target(s.meta.log_id, seg, lost, &nodes) else {
                continue;
            };
            if let Some(task) = plan(&s.meta, target, &mut nodes, 0).into_iter().next() {
                return Some((RepairJob::new(task, target), target));
            }
        }
        None
    }

    /// Carries out a repair step; `false` if it is not one.
    pub(crate) fn take_repair_step(&self, s: &mut State, action: &Act) -> bool {
        match action {
            Act::LoseNode(n) => {
                s.budget.node_losses -= 1;
                s.lost = Some(*n);
                let node = &mut s.nodes[*n as usize - 1];
                for seg in &mut node.segs {
                    *seg = Seg::default();
                }
                let lost = Addr::Node(*n);
                s.net.retain(|m| m.route().1 != lost);
            }
            Act::Decommission(n) => {
                s.budget.decommissions -= 1;
                s.leaving = Some(*n);
            }
            Act::RepairStart => {
                let Some((mut job, target)) = self.first_task(s) else {
                    unreachable!("started only with a task");
                };
                // The target has no copy yet (a lost node's data is gone,
                // and the target was no replica).
                let next = job.on_probed(None);
                s.repair = Some(Repair {
                    job,
                    target,
                    next,
                    awaiting_ack: false,
                    heal: false,
                });
            }
            Act::Damage { node, seg, from } => {
                s.budget.damages -= 1;
                let g = &mut s.nodes[*node as usize - 1].segs[*seg as usize];
                g.rep.mark_damaged(*from);
                assert_eq!(g.rep.rewind_damage(), *from);
                g.recs.truncate(*from as usize);
                s.ghost.healing = Some((*seg, *node));
            }
            Act::HealStart => {
                let Some((mut job, target)) = self.heal_job(s) else {
                    unreachable!("started only with a heal to run");
                };
                // The probe: the fence's answer, after the drain.
                let g = s.nodes[target as usize - 1].seg(job.task().segment.id);
                let next = job.on_probed(Some((g.rep.durable_len(), g.rep.sealed_len())));
                s.repair = Some(Repair {
                    job,
                    target,
                    next,
                    awaiting_ack: false,
                    heal: true,
                });
                Self::end_heal(s);
            }
            Act::RepairCopy => self.repair_copy(s),
            Act::RepairAck => {
                let Some(r) = &mut s.repair else {
                    unreachable!("an ack without a job")
                };
                let durable = s.nodes[r.target as usize - 1]
                    .seg(r.job.task().segment.id)
                    .rep
                    .durable_len();
                r.awaiting_ack = false;
                r.next = r.job.on_durable(durable);
            }
            Act::RepairSeal => {
                let Some(r) = &mut s.repair else {
                    unreachable!("a seal step without a job")
                };
                let JobAction::Seal { len } = r.next else {
                    unreachable!("a seal step while {:?}", r.next)
                };
                let task = r.job.task();
                let seg = task.segment.id;
                let seal = Msg::Seal {
                    node: r.target,
                    seg,
                    epoch: task.segment.epoch,
                    from: REPAIRER,
                    len,
                };
                let node = &mut s.nodes[r.target as usize - 1];
                node.take(&seal, &mut s.net);
                let sealed = node.seg(seg).rep.sealed_len();
                assert_eq!(sealed, Some(len), "the copy took its seal");
                r.next = r.job.on_sealed(len);
                Self::end_heal(s);
            }
            Act::RepairPublish => {
                let Some(r) = &mut s.repair else {
                    unreachable!("a publish step without a job")
                };
                match r.job.publish(&s.meta) {
                    Ok(next) => {
                        r.job.on_published();
                        r.next = JobAction::Stop;
                        let (seg, target) = (r.job.task().segment.id, r.target);
                        s.ghost.repaired.insert((seg, target));
                        s.store(next);
                    }
                    Err(stale) => r.next = r.job.abandon(stale.to_string()),
                }
            }
            _ => return false,
        }
        // The job's connections answer the job, not a producer.
        s.net.retain(|m| m.route().1 != Addr::Producer(REPAIRER));
        true
    }

    /// Appends the entries the job asks for, read from the disk of its
    /// first source, to the target (staged, not flushed).
    fn repair_copy(&self, s: &mut State) {
        let Some(r) = &mut s.repair else {
            unreachable!("a copy step without a job")
        };
        let JobAction::Copy { from, limit } = r.next else {
            unreachable!("a copy step while {:?}", r.next)
        };
        let task = r.job.task().clone();
        let source = task.sources[0];
        let recs = s.nodes[source as usize - 1].seg(task.segment.id).durable();
        let tags: Vec<_> = recs[from as usize..limit as usize]
            .iter()
            .map(|(t, _)| *t)
            .collect();
        let append = Msg::Append {
            node: r.target,
            seg: task.segment.id,
            epoch: task.segment.epoch,
            from: REPAIRER,
            replica: 0,
            first_offset: from,
            tags,
            commit: from,
        };
        s.nodes[r.target as usize - 1].take(&append, &mut s.net);
        match r.job.on_sent(limit) {
            Some(action) => r.next = action,
            None => r.awaiting_ack = true,
        }
    }
}
