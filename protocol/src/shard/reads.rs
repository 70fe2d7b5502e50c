//! Long-poll reads waiting for something to read, for their segment to
//! exist, or for their deadline: indexed by segment (to re-check them when
//! it changes) and by deadline (for the shard's one timer).

use std::collections::{BTreeMap, BTreeSet};

use super::action::{ConnId, SegmentKey};

/// A read that found nothing to answer yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParkedRead {
    pub conn: ConnId,
    pub request_id: u64,
    pub key: SegmentKey,
    pub from: u64,
    pub limit: u64,
    pub max_bytes: u32,
    pub deadline_ms: u64,
}

/// Every parked read of a shard. Ids are given in arrival order, so every
/// iteration (by segment, by deadline) is deterministic and fair.
#[derive(Debug, Default)]
pub(super) struct ParkedReads {
    next_id: u64,
    by_id: BTreeMap<u64, ParkedRead>,
    by_deadline: BTreeSet<(u64, u64)>,
    by_key: BTreeMap<SegmentKey, BTreeSet<u64>>,
}

impl ParkedReads {
    pub fn park(&mut self, read: ParkedRead) {
        let id = self.next_id;
        self.next_id += 1;
        self.by_deadline.insert((read.deadline_ms, id));
        self.by_key.entry(read.key).or_default().insert(id);
        let old = self.by_id.insert(id, read);
        assert!(old.is_none(), "read id {id} given twice");
        self.check_sizes();
    }

    /// Removes and returns every read parked on `key`, in arrival order.
    pub fn take_key(&mut self, key: SegmentKey) -> Vec<ParkedRead> {
        let ids = self.by_key.remove(&key).unwrap_or_default();
        let reads = ids.into_iter().map(|id| self.unindex(id)).collect();
        self.check_sizes();
        reads
    }

    /// Removes and returns every read whose deadline is at or before
    /// `now_ms`, earliest deadline first.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<ParkedRead> {
        let expired: Vec<u64> = self
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        let reads = expired
            .into_iter()
            .map(|id| {
                let read = self.unindex(id);
                self.remove_from_key(read.key, id);
                read
            })
            .collect();
        self.check_sizes();
        reads
    }

    /// Forgets every read of `conn`.
    pub fn forget_conn(&mut self, conn: ConnId) {
        let ids: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, r)| r.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let read = self.unindex(id);
            self.remove_from_key(read.key, id);
        }
        self.check_sizes();
    }

    /// The earliest deadline of a parked read.
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Removes `id` from every index but `by_key`.
    fn unindex(&mut self, id: u64) -> ParkedRead {
        let Some(read) = self.by_id.remove(&id) else {
            panic!("parked read {id} indexed but not held");
        };
        let was = self.by_deadline.remove(&(read.deadline_ms, id));
        assert!(was, "parked read {id} missing from the deadlines");
        read
    }

    fn remove_from_key(&mut self, key: SegmentKey, id: u64) {
        let Some(ids) = self.by_key.get_mut(&key) else {
            panic!("parked read {id} missing from {key:?}");
        };
        let was = ids.remove(&id);
        assert!(was, "parked read {id} missing from {key:?}");
        if ids.is_empty() {
            self.by_key.remove(&key);
        }
    }

    fn check_sizes(&self) {
        assert_eq!(self.by_id.len(), self.by_deadline.len());
        debug_assert_eq!(
            self.by_id.len(),
            self.by_key.values().map(BTreeSet::len).sum::<usize>()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(conn: u64, segment: u64, deadline_ms: u64) -> ParkedRead {
        ParkedRead {
            conn: ConnId(conn),
            request_id: 0,
            key: SegmentKey { log_id: 1, segment },
            from: 0,
            limit: u64::MAX,
            max_bytes: 1,
            deadline_ms,
        }
    }

    #[test]
    fn indexes_stay_in_step() {
        let mut reads = ParkedReads::default();
        reads.park(read(1, 0, 30));
        reads.park(read(2, 0, 10));
        reads.park(read(1, 1, 20));
        assert_eq!(reads.earliest_deadline(), Some(10));
        let expired = reads.take_expired(20);
        assert_eq!(
            expired.iter().map(|r| r.deadline_ms).collect::<Vec<_>>(),
            [10, 20]
        );
        assert_eq!(reads.earliest_deadline(), Some(30));
        reads.park(read(2, 0, 40));
        reads.forget_conn(ConnId(1));
        assert_eq!(reads.len(), 1);
        let on_key = reads.take_key(SegmentKey {
            log_id: 1,
            segment: 0,
        });
        assert_eq!(on_key.len(), 1);
        assert_eq!(on_key[0].conn, ConnId(2));
        assert_eq!(reads.earliest_deadline(), None);
    }
}
