//! Choosing the replicas of a new segment.
//!
//! Any R healthy nodes will do for safety; spreading segments at random
//! over them spreads load and, after a failure, spreads the new segments
//! over the survivors. For availability the replicas go to R different
//! zones whenever R zones have candidates: a zone (a rack, a power domain,
//! an availability zone) that fails then takes at most one replica of a
//! segment. With fewer zones, the set spans as many as there are and the
//! rest is filled at random. The random draw is the caller's (`seed`), so
//! this stays pure.

use trilog_wire::meta::{NodeMode, NodeStatus};

use crate::NodeId;

/// A node a new segment may be placed on: alive, with room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub id: NodeId,
    /// Its failure domain; nodes with the same zone (the empty one
    /// included) share one.
    pub zone: String,
}

impl Candidate {
    /// Candidates in one zone (tests, and stores that know no zones).
    pub fn all_in_one_zone(ids: &[NodeId]) -> Vec<Candidate> {
        ids.iter()
            .map(|id| Candidate {
                id: *id,
                zone: String::new(),
            })
            .collect()
    }
}

/// The registered nodes a new segment (or a repaired replica) may go to:
/// alive, active (not being decommissioned) and not read-only for a full
/// disk. A full or leaving node keeps its lease (it still serves reads,
/// seals and deletes) but would refuse the segment's first append, so
/// placing on it would only cost a switch.
pub fn writable_candidates(nodes: &[NodeStatus]) -> Vec<Candidate> {
    nodes
        .iter()
        .filter(|n| n.alive && !n.info.full && n.mode == NodeMode::Active)
        .map(|n| Candidate {
            id: n.info.node_id,
            zone: n.info.zone.clone(),
        })
        .collect()
}

/// Why no replica set could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("need {needed} healthy nodes, only {available} available (excluding {excluded:?})")]
pub struct NotEnoughNodes {
    pub needed: usize,
    pub available: usize,
    pub excluded: Vec<NodeId>,
}

/// Picks `count` distinct nodes of `alive` that are not in `exclude`: in
/// an order drawn from `seed`, each from a zone none of the earlier ones
/// is in while there is one, then the rest in that order.
pub fn choose_replicas(
    alive: &[Candidate],
    exclude: &[NodeId],
    count: usize,
    seed: u64,
) -> Result<Vec<NodeId>, NotEnoughNodes> {
    assert!(count > 0, "a segment has replicas");
    let mut pool: Vec<&Candidate> = alive.iter().filter(|c| !exclude.contains(&c.id)).collect();
    pool.sort_unstable_by_key(|c| c.id);
    pool.dedup_by_key(|c| c.id);
    if pool.len() < count {
        return Err(NotEnoughNodes {
            needed: count,
            available: pool.len(),
            excluded: exclude.to_vec(),
        });
    }
    shuffle(&mut pool, seed);
    let mut chosen: Vec<&Candidate> = Vec::with_capacity(count);
    for c in &pool {
        if chosen.len() < count && chosen.iter().all(|d| d.zone != c.zone) {
            chosen.push(c);
        }
    }
    for c in &pool {
        if chosen.len() < count && !chosen.iter().any(|d| d.id == c.id) {
            chosen.push(c);
        }
    }
    assert_eq!(chosen.len(), count, "the pool had enough nodes");
    Ok(chosen.into_iter().map(|c| c.id).collect())
}

/// A Fisher-Yates shuffle driven by splitmix64 from `seed`.
pub(crate) fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    for i in 0..items.len() {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = i + (z % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trilog_wire::meta::NodeInfo;

    #[test]
    fn full_dead_and_leaving_nodes_are_not_candidates() {
        let status = |node_id: NodeId, alive: bool, full: bool| NodeStatus {
            info: NodeInfo {
                node_id,
                host: "127.0.0.1".into(),
                shard_ports: vec![7000],
                zone: format!("z{node_id}"),
                capacity_bytes: 0,
                incarnation: 1,
                bytes_used: 0,
                bytes_free: 0,
                full,
            },
            alive,
            lease_remaining_ms: 0,
            mode: NodeMode::Active,
        };
        let leaving = |node_id: NodeId, mode: NodeMode| NodeStatus {
            mode,
            ..status(node_id, true, false)
        };
        let nodes = [
            status(1, true, false),
            status(2, true, true),
            status(3, false, false),
            status(4, true, false),
            leaving(5, NodeMode::Leaving),
            leaving(6, NodeMode::Removed),
        ];
        assert_eq!(
            writable_candidates(&nodes),
            zoned(&[(1, "z1"), (4, "z4")]),
            "the full node 2, the dead node 3 and the leaving or removed nodes 5 and 6 are skipped"
        );
    }

    fn zoned(nodes: &[(NodeId, &str)]) -> Vec<Candidate> {
        nodes
            .iter()
            .map(|(id, zone)| Candidate {
                id: *id,
                zone: zone.to_string(),
            })
            .collect()
    }

    #[test]
    fn replicas_span_distinct_zones_when_there_are_enough() {
        let alive = zoned(&[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")]);
        let zone_of = |id: NodeId| alive.iter().find(|c| c.id == id).map(|c| c.zone.clone());
        let mut counts = [0u32; 7];
        for seed in 0..300 {
            let r = choose_replicas(&alive, &[], 3, seed).expect("enough");
            let mut zones: Vec<_> = r.iter().map(|n| zone_of(*n)).collect();
            zones.sort();
            zones.dedup();
            assert_eq!(zones.len(), 3, "seed {seed}: {r:?}");
            for n in r {
                counts[n as usize] += 1;
            }
        }
        // Node 6 is the only one in zone c: in every set.
        assert_eq!(counts[6], 300);
        assert!(counts[1..6].iter().all(|c| *c > 50), "{counts:?}");
        // Zone c excluded: two zones left, the third replica fills in.
        let r = choose_replicas(&alive, &[6], 3, 7).expect("enough");
        let mut zones: Vec<_> = r.iter().map(|n| zone_of(*n)).collect();
        zones.sort();
        zones.dedup();
        assert_eq!(zones.len(), 2, "{r:?}");
    }

    #[test]
    fn distinct_excluded_and_spread() {
        let alive = Candidate::all_in_one_zone(&[1, 2, 3, 4, 5]);
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
