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
    /// The acks that moved `acked` past the commit watermark, as
    /// (acknowledged length, time), oldest first: when this replica got
    /// ahead of a slower one. Those at or below the commit are dropped, so
    /// there are at most as many as appends in flight.
    pub acks_past_commit: VecDeque<(u64, u64)>,
    /// Smoothed time from sending an append to its ack, in 1/16 ms; `None`
    /// before the first ack.
    pub latency_x16: Option<u64>,
}

/// Weight of a new latency sample in the smoothed latency: 1/8.
const LATENCY_SMOOTHING_SHIFT: u32 = 3;

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
                    acks_past_commit: VecDeque::new(),
                    latency_x16: None,
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

    /// Replica `i` acknowledged `durable_len` entries at `now_ms`. Returns
    /// the new commit watermark if it moved.
    pub fn on_ack(&mut self, i: usize, durable_len: u64, now_ms: u64) -> Option<u64> {
        let r = &mut self.replicas[i];
        // An ack past what was sent can only come from a confused replica;
        // counting it would commit entries the replica never received.
        let durable_len = durable_len.min(r.sent);
        if durable_len <= r.acked {
            return None;
        }
        r.acked = durable_len;
        while let Some(&(end, sent_at)) = r.in_flight.front() {
            if end > durable_len {
                break;
            }
            r.in_flight.pop_front();
            let sample = now_ms.saturating_sub(sent_at).saturating_mul(16);
            r.latency_x16 = Some(match r.latency_x16 {
                None => sample,
                Some(old) => {
                    let old = old as i128;
                    let moved = (sample as i128 - old) >> LATENCY_SMOOTHING_SHIFT;
                    (old + moved).max(0) as u64
                }
            });
        }
        r.acks_past_commit.push_back((durable_len, now_ms));
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
            for r in &mut self.replicas {
                while r
                    .acks_past_commit
                    .front()
                    .is_some_and(|(len, _)| *len <= min)
                {
                    r.acks_past_commit.pop_front();
                }
            }
            Some(min)
        } else {
            None
        }
    }

    /// The replica alone holding the commit back, if one is, and since
    /// when: the one with appends in flight that every other replica has
    /// acknowledged past what it acknowledged, and the time the last of
    /// them did. With two replicas behind, or with nothing in flight to
    /// it (its connection is down: that is the link's business), none is.
    pub fn laggard(&self) -> Option<(usize, u64)> {
        if self.replicas.len() < 2 {
            return None;
        }
        (0..self.replicas.len()).find_map(|i| {
            let r = &self.replicas[i];
            if r.in_flight.is_empty() {
                return None;
            }
            let mut since = 0;
            for (j, other) in self.replicas.iter().enumerate() {
                if j == i {
                    continue;
                }
                // The first ack of `other` past what `i` holds.
                let (_, at) = other
                    .acks_past_commit
                    .iter()
                    .find(|(len, _)| *len > r.acked)?;
                since = since.max(*at);
            }
            Some((i, since))
        })
    }

    /// The typical ack latency of a healthy replica, in 1/16 ms: the median
    /// of the replicas' smoothed latencies (a single slow one does not move
    /// it), or `None` before any ack.
    pub fn typical_latency_x16(&self) -> Option<u64> {
        let mut known: Vec<u64> = self.replicas.iter().filter_map(|r| r.latency_x16).collect();
        if known.is_empty() {
            return None;
        }
        known.sort_unstable();
        Some(known[(known.len() - 1) / 2])
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
        assert_eq!(t.on_ack(0, 5, 0), None);
        assert_eq!(t.on_ack(1, 2, 0), None);
        assert_eq!(t.on_ack(2, 5, 0), Some(2));
        assert_eq!(t.on_ack(1, 5, 0), Some(5));
        assert_eq!(t.commit(), 5);
        assert!(t.replica(1).in_flight.is_empty());
    }

    #[test]
    fn ack_past_sent_is_capped_and_rewind_resends() {
        let mut t = AckTracker::new(3, 0);
        t.on_sent(0, 3, 7);
        assert_eq!(t.oldest_in_flight_ms(0), Some(7));
        assert_eq!(t.on_ack(0, 10, 0), None);
        assert_eq!(t.replica(0).acked, 3);
        t.on_sent(1, 3, 0);
        t.rewind(1, 1);
        assert_eq!(t.replica(1).sent, 1);
        assert!(t.replica(1).in_flight.is_empty());
    }

    #[test]
    fn the_laggard_is_the_one_replica_behind_all_others_since_the_last_of_them_acked() {
        let mut t = AckTracker::new(3, 0);
        for i in 0..3 {
            t.on_sent(i, 4, 10);
        }
        assert_eq!(t.laggard(), None, "nobody acked yet");
        t.on_ack(0, 4, 12);
        assert_eq!(t.laggard(), None, "two replicas are behind");
        t.on_ack(2, 4, 13);
        assert_eq!(t.laggard(), Some((1, 13)), "held up since the second ack");
        // The median latency ignores the slow one: 2 and 3 ms, in 1/16 ms.
        assert_eq!(t.typical_latency_x16(), Some(2 * 16));
        // A partial ack: still behind, now since the acks past 2, which
        // came at 12 and 13 as well.
        t.on_sent(0, 8, 14);
        t.on_sent(2, 8, 14);
        assert_eq!(t.on_ack(1, 2, 20), Some(2));
        assert_eq!(t.laggard(), Some((1, 13)));
        assert_eq!(t.on_ack(1, 4, 21), Some(4));
        assert_eq!(t.laggard(), None, "caught up, nothing in flight to it");
        t.on_sent(1, 8, 21);
        t.on_ack(0, 8, 22);
        t.on_ack(2, 8, 25);
        assert_eq!(t.laggard(), Some((1, 25)));
        assert!(
            t.replica(0).acks_past_commit.len() <= 1,
            "acks at or below the commit are dropped"
        );
    }

    #[test]
    fn one_replica_has_no_laggard_and_latency_smooths() {
        let mut t = AckTracker::new(1, 0);
        t.on_sent(0, 1, 0);
        t.on_ack(0, 1, 8);
        assert_eq!(t.laggard(), None);
        assert_eq!(t.typical_latency_x16(), Some(8 * 16));
        t.on_sent(0, 2, 8);
        t.on_ack(0, 2, 8);
        // 128 + (0 - 128) / 8 = 112.
        assert_eq!(t.typical_latency_x16(), Some(112));
    }
}
