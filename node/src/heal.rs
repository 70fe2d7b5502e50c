//! The copies this node holds that miss entries below their seal and wait
//! to be healed: what the shards report and the repair thread reads.
//!
//! Each shard reports its whole list every `HEAL_CHECK_MS` (it replaces
//! the last one), so a healed, deleted or repaired-away copy drops out by
//! itself and nothing here needs to be told. A mutex rather than a
//! channel: a short list, written by a few shards once a second and read
//! by one thread every few seconds.

use std::collections::BTreeMap;
use std::sync::Mutex;

use trilog_protocol::shard::SegmentKey;

/// Per shard, its copies to heal.
#[derive(Debug, Default)]
pub struct HealList {
    by_shard: Mutex<BTreeMap<u32, Vec<SegmentKey>>>,
}

impl HealList {
    pub fn new() -> HealList {
        HealList::default()
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
        let list = HealList::new();
        list.report(1, vec![key(5, 2), key(3, 1)]);
        list.report(0, vec![key(4, 0)]);
        assert_eq!(list.all(), vec![key(3, 1), key(4, 0), key(5, 2)]);
        list.report(1, vec![key(5, 2)]);
        list.report(0, Vec::new());
        assert_eq!(list.all(), vec![key(5, 2)]);
    }
}
