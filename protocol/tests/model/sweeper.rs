//! The orphan sweep in the model: at any step, a node may unlink any copy
//! it holds that the current record shows unlisted for good
//! (`trilog_protocol::shard::sweepable`, the rule the shard follows).
//!
//! The model is harsher than the node: the node also waits for two answers
//! a whole sweep period apart, and never sweeps a copy its repair is
//! filling; here one read of the record is enough (repair does not run
//! beside the sweeper). What it checks is the rule itself, above all the
//! one exception it makes: a copy of a segment past the record's last one
//! (a takeover's tail, written before its CAS publishes the segment) is
//! kept. The mutant `SweepPastLast` drops that exception.

use trilog_protocol::replica::Durable;
use trilog_protocol::shard::sweepable;

use crate::model::writers::all_nodes;
use crate::model::{Act, State, Trilog};

impl Trilog {
    /// Sweeps (within the budget) of copies unlisted for good.
    pub(crate) fn sweeper_steps(&self, s: &State, out: &mut Vec<Act>) {
        if s.budget.sweeps == 0 {
            return;
        }
        for node in all_nodes(&self.cfg) {
            if s.lost == Some(node) {
                continue;
            }
            let n = &s.nodes[node as usize - 1];
            for (seg, g) in n.segs.iter().enumerate() {
                let held = !g.recs.is_empty() || g.persisted != Durable::default();
                if !g.gone && held && sweepable(Some(&s.meta), seg as u64, node) {
                    out.push(Act::Sweep {
                        node,
                        seg: seg as u64,
                    });
                }
            }
        }
    }

    pub(crate) fn take_sweep(&self, s: &mut State, node: u64, seg: u64) {
        s.budget.sweeps -= 1;
        s.ghost.swept = true;
        s.nodes[node as usize - 1].unlink(seg, &mut s.net);
    }
}
