//! Choosing the replicas of a new segment.
//!
//! Any R healthy nodes will do; spreading segments at random over them
//! spreads load and, after a failure, spreads the new segments over the
//! survivors. The random draw is the caller's (`seed`), so this stays pure.

use crate::NodeId;

/// Why no replica set could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("need {needed} healthy nodes, only {available} available (excluding {excluded:?})")]
pub struct NotEnoughNodes {
    pub needed: usize,
    pub available: usize,
    pub excluded: Vec<NodeId>,
}

/// Picks `count` distinct nodes of `alive` that are not in `exclude`, in
/// an order drawn from `seed`.
pub fn choose_replicas(
    alive: &[NodeId],
    exclude: &[NodeId],
    count: usize,
    seed: u64,
) -> Result<Vec<NodeId>, NotEnoughNodes> {
    assert!(count > 0, "a segment has replicas");
    let mut pool: Vec<NodeId> = alive
        .iter()
        .copied()
        .filter(|n| !exclude.contains(n))
        .collect();
    pool.sort_unstable();
    pool.dedup();
    if pool.len() < count {
        return Err(NotEnoughNodes {
            needed: count,
            available: pool.len(),
            excluded: exclude.to_vec(),
        });
    }
    // A partial Fisher-Yates shuffle driven by splitmix64.
    let mut state = seed;
    for i in 0..count {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = i + (z % (pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(count);
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_excluded_and_spread() {
        let alive = [1, 2, 3, 4, 5];
        let mut counts = [0u32; 6];
        for seed in 0..300 {
            let r = choose_replicas(&alive, &[3], 3, seed).expect("enough");
            assert_eq!(r.len(), 3);
            assert!(!r.contains(&3));
            let mut d = r.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 3);
            for n in r {
                counts[n as usize] += 1;
            }
        }
        assert!(
            counts[1..]
                .iter()
                .enumerate()
                .all(|(i, c)| i == 2 || *c > 150),
            "{counts:?}"
        );
        assert!(choose_replicas(&alive, &[1, 2, 3], 3, 0).is_err());
    }
}
