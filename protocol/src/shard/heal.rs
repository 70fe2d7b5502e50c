//! Healing a sealed replica that misses entries below its seal: damage
//! found by recovery or the scrub, or a file cut short.
//!
//! The damaged entries are dropped first ([`ShardMachine::rewind_damage`],
//! once the driver can drop them from its index too): the replica then
//! serves the entries before the damage, refuses the rest with `Damaged`
//! as before, and takes the missing entries again as heal appends
//! ([`crate::replica::Replica::healing`]). The node's repair loop sends
//! them, read from a healthy replica with every crc checked
//! ([`crate::repair::heal_task`]); once the replica holds its whole sealed
//! length it serves it all and the scrub reads it again.

use super::{Actions, SegmentKey, ShardMachine};

impl ShardMachine {
    /// The sealed replicas with damage still to drop, with where it starts.
    pub fn damaged_sealed(&self) -> Vec<(SegmentKey, u64)> {
        self.segments
            .iter()
            .filter(|(_, s)| s.failure.is_none() && s.replica.sealed_len().is_some())
            .filter(|(_, s)| s.replica.staged_len() == s.replica.durable_len())
            .filter_map(|(key, s)| s.replica.damaged_from().map(|from| (*key, from)))
            .collect()
    }

    /// Drops the damage of `key`, a replica [`Self::damaged_sealed`] named
    /// (the driver has dropped the same entries from its index). Returns
    /// where the damage started, or `None` if the segment changed since
    /// (deleted, failed, or no longer damaged): then the driver's index
    /// must not change either.
    pub fn rewind_damage(&mut self, key: SegmentKey, from: u64) -> Option<Actions> {
        let still = self.damaged_sealed().contains(&(key, from));
        if !still {
            return None;
        }
        let segment = self.segment_mut(key);
        let rewound = segment.replica.rewind_damage();
        assert_eq!(rewound, from, "{key:?}: rewound elsewhere than asked");
        let mut out = Actions::new();
        // Reads parked on the damaged range are answered as before: the
        // replica misses the same entries.
        self.wake_reads(key, &mut out);
        Some(out)
    }

    /// The sealed replicas that miss entries below their seal and take
    /// heal appends: what the node's repair loop heals.
    pub fn healing(&self) -> Vec<SegmentKey> {
        self.segments
            .iter()
            .filter(|(_, s)| s.failure.is_none() && s.replica.healing())
            .map(|(key, _)| *key)
            .collect()
    }
}
