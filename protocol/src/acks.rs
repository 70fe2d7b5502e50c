//! Acknowledgment watermarks of one segment.
//!
//! The producer keeps, per replica, how many entries that replica has
//! acknowledged as durable and which appends are still in flight to it. An
//! entry is committed once every replica acknowledged it: the commit
//! watermark is the minimum acknowledged length over all replicas.

use std::collections::VecDeque;

use crate::mutant::{self, Mutant};

/// One replica's progress within the open segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaProgress {
    /// Entries this replica acknowledged as durable.
    pub acked: u64,
    /// Entries sent to it (acked or in flight).
    pub sent: u64,
    /// End offsets of the appends in flight, oldest first, with the time
    /// each was sent (for the timeout).
    pub in_flight: VecDeque<(u64, u64)>,
}

/// Acknowledged lengths of every replica of one segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckTracker {
    replicas: Vec<ReplicaProgress>,
    commit: u64,
}

impl AckTracker {
    /// A tracker for `replica_count` replicas that all hold `start` entries
    /// already (0 for a new segment).
    pub fn new(replica_count: usize, start: u64) -> AckTracker {
        assert!(replica_count > 0, "a segment has replicas");
        AckTracker {
            replicas: vec![
                ReplicaProgress {
                    acked: start,
                    sent: start,
                    in_flight: VecDeque::new(),
                };
                replica_count
            ],
            commit: start,
        }
    }

    pub fn replica(&self, i: usize) -> &ReplicaProgress {
        &self.replicas[i]
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// The commit watermark: every replica acknowledged this many entries.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// Records an append of entries up to `end` sent to replica `i`.
    pub fn on_sent(&mut self, i: usize, end: u64, now_ms: u64) {
        let r = &mut self.replicas[i];
        assert!(end > r.sent, "sends to a replica only move forward");
        r.sent = end;
        r.in_flight.push_back((end, now_ms));
    }

    /// Replica `i` acknowledged `durable_len` entries. Returns the new
    /// commit watermark if it moved.
    pub fn on_ack(&mut self, i: usize, durable_len: u64) -> Option<u64> {
        let r = &mut self.replicas[i];
        // An ack past what was sent can only come from a confused replica;
        // counting it would commit entries the replica never received.
        let durable_len = durable_len.min(r.sent);
        if durable_len <= r.acked {
            return None;
        }
        r.acked = durable_len;
        while r
            .in_flight
            .front()
            .is_some_and(|(end, _)| *end <= durable_len)
        {
            r.in_flight.pop_front();
        }
        let min = if mutant::active(Mutant::CommitOnTwoAcks) {
            // MUTANT CommitOnTwoAcks: the second smallest acked length.
            let mut acked: Vec<u64> = self.replicas.iter().map(|r| r.acked).collect();
            acked.sort_unstable();
            acked[1.min(acked.len() - 1)]
        } else {
            self.replicas.iter().map(|r| r.acked).min().unwrap_or(0)
        };
        assert!(min >= self.commit, "the commit watermark never moves back");
        if min > self.commit {
            self.commit = min;
            Some(min)
        } else {
            None
        }
    }

    /// Replica `i` holds only `len` entries: send again from there.
    pub fn rewind(&mut self, i: usize, len: u64) {
        let r = &mut self.replicas[i];
        let len = len.max(r.acked);
        if len < r.sent {
            r.sent = len;
            r.in_flight.clear();
        }
    }

    /// The oldest in-flight send time over all replicas, if any.
    pub fn oldest_in_flight_ms(&self, i: usize) -> Option<u64> {
        self.replicas[i].in_flight.front().map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_min_over_replicas() {
        let mut t = AckTracker::new(3, 0);
        for i in 0..3 {
            t.on_sent(i, 2, 0);
            t.on_sent(i, 5, 0);
        }
        assert_eq!(t.on_ack(0, 5), None);
        assert_eq!(t.on_ack(1, 2), None);
        assert_eq!(t.on_ack(2, 5), Some(2));
        assert_eq!(t.on_ack(1, 5), Some(5));
        assert_eq!(t.commit(), 5);
        assert!(t.replica(1).in_flight.is_empty());
    }

    #[test]
    fn ack_past_sent_is_capped_and_rewind_resends() {
        let mut t = AckTracker::new(3, 0);
        t.on_sent(0, 3, 7);
        assert_eq!(t.oldest_in_flight_ms(0), Some(7));
        assert_eq!(t.on_ack(0, 10), None);
        assert_eq!(t.replica(0).acked, 3);
        t.on_sent(1, 3, 0);
        t.rewind(1, 1);
        assert_eq!(t.replica(1).sent, 1);
        assert!(t.replica(1).in_flight.is_empty());
    }
}
