//! The trimmer of the model, driven the way the client's `trim` drives
//! `trilog_protocol::trim`: mark, unlink, drop.
//!
//! A trim reads the record and moves its trim point by CAS
//! ([`trim::trim_record`], the production function) in one step: a CAS
//! that conflicts is read again and retried, which is the same as the
//! step taken later. It bumps the version, so a producer's CAS asked for
//! before it conflicts. The trim point is one of the few seqs where
//! something can happen: the end of a sealed segment, or one seq inside
//! one (never past the end of the sealed segments, which `trim_record`
//! refuses).
//!
//! Each replica of each segment the record lists as deleting is unlinked
//! by its node at any later step ([`Node::unlink`](crate::model::node::Node::unlink)),
//! in any order: the `DeleteSegment` requests are in flight together. The
//! drop ([`trim::drop_deleted`], by CAS) takes out of the record the
//! deleting segments every replica unlinked, with the bookkeeping of
//! [`DeletionRound`]. A trimmer that crashes between the steps just takes
//! none of the later ones (a run may stop anywhere), and whoever trims
//! next finds the deleting segments still listed: no fault is needed for
//! it.

use std::collections::BTreeSet;

use trilog_protocol::metadata::end_of_sealed;
use trilog_protocol::trim::{self, DeletionRound};

use crate::model::{Act, State, Trilog};

/// The trim points worth trying in `s`: past the current one, at most the
/// end of the sealed segments.
fn trim_points(s: &State) -> BTreeSet<u64> {
    let sealed_end = end_of_sealed(&s.meta);
    s.meta
        .segments
        .iter()
        .filter_map(|g| g.sealed_len.map(|len| (g.first_seq, len)))
        .flat_map(|(first, len)| {
            let inside = (len >= 2).then_some(first + 1);
            inside.into_iter().chain([first + len])
        })
        .filter(|p| *p > s.meta.trim_seq && *p <= sealed_end)
        .collect()
}

/// The deleting segments every replica has unlinked.
fn unlinked(s: &State) -> BTreeSet<u64> {
    let deleting = trim::pending(&s.meta);
    let mut round = DeletionRound::new(deleting);
    for g in deleting {
        for &node in &g.replicas {
            if s.nodes[node as usize - 1].seg(g.id).gone {
                round.confirmed(g.id, node);
            }
        }
    }
    round.done()
}

impl Trilog {
    /// Trims (within the budget), unlinks, drops.
    pub(crate) fn trimmer_steps(&self, s: &State, out: &mut Vec<Act>) {
        if self.cfg.trims == 0 {
            return;
        }
        if s.budget.trims > 0 {
            out.extend(
                trim_points(s)
                    .into_iter()
                    .map(|before| Act::Trim { before }),
            );
        }
        for g in trim::pending(&s.meta) {
            for &node in &g.replicas {
                if !s.nodes[node as usize - 1].seg(g.id).gone {
                    out.push(Act::Unlink { node, seg: g.id });
                }
            }
        }
        if !unlinked(s).is_empty() {
            out.push(Act::DropDeleted);
        }
    }

    /// Takes a step of the trimmer or of a node unlinking.
    pub(crate) fn take_trimmer_step(&self, s: &mut State, action: Act) {
        match action {
            Act::Trim { before } => {
                s.budget.trims -= 1;
                let next = trim::trim_record(&s.meta, before)
                    .unwrap_or_else(|e| panic!("a trim point the model offers: {e}"));
                assert_ne!(next, s.meta, "a trim point past the current one");
                // Whoever asked for a CAS before this one now conflicts.
                s.ghost.trim_raced |= s.cas.iter().any(Option::is_some);
                let kept = next.segments.first().map_or(u64::MAX, |g| g.id);
                let out = s.meta.segments.iter().filter(|g| g.id < kept);
                s.ghost.trimmed.extend(out.cloned());
                s.store(next);
            }
            Act::Unlink { node, seg } => s.nodes[node as usize - 1].unlink(seg, &mut s.net),
            Act::DropDeleted => {
                let next = trim::drop_deleted(&s.meta, &unlinked(s));
                assert_ne!(next, s.meta, "a drop with something to drop");
                s.ghost.dropped = true;
                s.store(next);
            }
            other => unreachable!("not a trimmer step: {other:?}"),
        }
    }
}
