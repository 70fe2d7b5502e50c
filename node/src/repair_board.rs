//! What the shards and the repair thread of a node share:
//! - the copies this node holds that miss entries below their seal and
//!   wait to be healed, which the shards report and the repair thread
//!   reads. Each shard reports its whole list every `HEAL_CHECK_MS` (it
//!   replaces the last one), so a healed, deleted or repaired-away copy
//!   drops out by itself;
//! - the segments the repair thread is writing a new copy of here, which
//!   are unlisted in their records until their job publishes them: the
//!   shards never sweep them as orphans (`ShardMachine::set_repairing`,
//!   updated every `HEAL_CHECK_MS`).
//!
//! Mutexes rather than channels: short lists, written a few times a
//! second and read about as often.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use trilog_protocol::shard::SegmentKey;

/// Per shard, its copies to heal; and the copies under repair.
#[derive(Debug, Default)]
pub struct RepairBoard {
    by_shard: Mutex<BTreeMap<u32, Vec<SegmentKey>>>,
    repairing: Mutex<BTreeSet<SegmentKey>>,
}

impl RepairBoard {
    pub fn new() -> RepairBoard {
        RepairBoard::default()
    }

    /// Shard `shard`'s copies to heal, as of now.
    pub fn report(&self, shard: u32, keys: Vec<SegmentKey>) {
        // A panic elsewhere while holding the lock leaves a list that is
        // still whole (one assignment): take it as it is.
        let mut by_shard = self.by_shard.lock().unwrap_or_else(|e| e.into_inner());
        if keys.is_empty() {
            by_shard.remove(&shard);
        } else {
            by_shard.insert(shard, keys);
        }
    }

    /// The repair thread starts writing a new copy of `key` here (before
    /// its first write).
    pub fn repair_started(&self, key: SegmentKey) {
        let mut r = self.repairing.lock().unwrap_or_else(|e| e.into_inner());
        r.insert(key);
    }

    /// The repair of `key` ended (published, abandoned or failed).
    pub fn repair_ended(&self, key: SegmentKey) {
        let mut r = self.repairing.lock().unwrap_or_else(|e| e.into_inner());
        r.remove(&key);
    }

    /// The copies under repair now.
    pub fn repairing(&self) -> BTreeSet<SegmentKey> {
        self.repairing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every copy to heal, in key order.
    pub fn all(&self) -> Vec<SegmentKey> {
        let by_shard = self.by_shard.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<SegmentKey> = by_shard.values().flatten().copied().collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(log_id: u64, segment: u64) -> SegmentKey {
        SegmentKey { log_id, segment }
    }

    #[test]
    fn each_report_replaces_the_shards_last_one() {
        let list = RepairBoard::new();
        list.report(1, vec![key(5, 2), key(3, 1)]);
        list.report(0, vec![key(4, 0)]);
        assert_eq!(list.all(), vec![key(3, 1), key(4, 0), key(5, 2)]);
        list.report(1, vec![key(5, 2)]);
        list.report(0, Vec::new());
        assert_eq!(list.all(), vec![key(5, 2)]);
    }
}
