//! A check that a model has no cycle, so that stateright judges its
//! `eventually` properties at real terminal states.
//!
//! stateright's checker treats a state whose successors were all seen
//! before as non-terminal, so a run that loops forever is never judged and
//! an `eventually` property passes falsely on it. A depth-first search
//! that meets a state still on its own stack has found such a loop.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use stateright::Model;

fn fingerprint<S: Hash>(s: &S) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Explores every state of `model`; panics on a cycle (with the states of
/// the cycle's path). Returns the number of states.
pub fn assert_acyclic<M>(model: &M) -> usize
where
    M: Model,
    M::State: Hash + std::fmt::Debug,
{
    let mut done: HashSet<u64> = HashSet::new();
    let mut on_path: HashSet<u64> = HashSet::new();
    // (fingerprint, the successors not yet visited)
    let mut path: Vec<(u64, Vec<M::State>)> = Vec::new();
    for init in model.init_states() {
        let fp = fingerprint(&init);
        if done.contains(&fp) {
            continue;
        }
        on_path.insert(fp);
        path.push((fp, model.next_states(&init)));
        while let Some((fp, next)) = path.last_mut() {
            let Some(s) = next.pop() else {
                let fp = *fp;
                on_path.remove(&fp);
                done.insert(fp);
                path.pop();
                continue;
            };
            let sfp = fingerprint(&s);
            assert!(
                !on_path.contains(&sfp),
                "the liveness model has a cycle through {s:#?}"
            );
            if done.contains(&sfp) {
                continue;
            }
            on_path.insert(sfp);
            let succ = model.next_states(&s);
            path.push((sfp, succ));
        }
    }
    done.len()
}
