//! Learning seals from the metadata record.
//!
//! A producer tells the replicas of a segment it sealed best effort: a seal
//! message lost, or never sent because the producer's process exited right
//! after its sealing CAS, leaves a replica open for good. So the shard asks
//! the record itself: every [`SEAL_LEARN_IDLE_MS`] it sweeps its segments,
//! and for each log with an unsealed segment that saw no append, watermark,
//! fence or seal during the whole sweep interval (an idle segment, the one
//! whose seal may have been missed), it asks its driver for the log's record
//! ([`super::Action::LookupLog`]), at most [`SEAL_LOOKUPS_IN_FLIGHT_MAX`]
//! logs at a time. When the record seals a segment this replica holds open,
//! the seal goes through the segment's control queue like a seal message
//! (answering nobody, after the same drain), decided by
//! [`crate::replica::Replica::learn_seal`]: the record is the truth, so the
//! replica takes it below the watermark it knows (a takeover whose fenced
//! replicas knew a lower watermark carried the entries past its seal into
//! the next segment) and past what it holds (a damaged or cut copy, then
//! healed). Only a replica sealed already at another length refuses; that
//! is reported loudly ([`super::Action::LearntSealRefused`]) and never
//! asked about again.
//!
//! An idle open segment of a live producer is asked about once per sweep;
//! the bound on lookups in flight keeps a shard with many idle logs from
//! flooding the store.

use crate::NodeId;
use std::collections::BTreeSet;

use super::action::SegmentKey;

/// How long a segment must see no request before the shard asks the record
/// whether it was sealed; also the sweep period.
pub const SEAL_LEARN_IDLE_MS: u64 = 3_000;

/// Logs whose record one shard asks for at a time.
pub const SEAL_LOOKUPS_IN_FLIGHT_MAX: usize = 4;

const _: () = assert!(SEAL_LEARN_IDLE_MS >= 1_000, "a sweep is rare");
const _: () = assert!(SEAL_LOOKUPS_IN_FLIGHT_MAX >= 1);

/// The shard's seal learning state (present only if the driver has a
/// metadata store to ask).
#[derive(Debug)]
pub(super) struct SealLearning {
    /// This node: only the seals of segments the record lists it as a
    /// replica of are learnt (a copy a repair is still filling is not one
    /// yet, and is sealed by its repair).
    pub(super) me: NodeId,
    next_sweep_ms: u64,
    /// Logs whose record was asked for and not yet answered.
    in_flight: BTreeSet<u64>,
    /// Segments that saw a request since the last sweep.
    touched: BTreeSet<SegmentKey>,
    /// Segments whose learnt seal was refused: left for repair.
    given_up: BTreeSet<SegmentKey>,
}

impl SealLearning {
    pub fn new(now_ms: u64, me: NodeId) -> SealLearning {
        SealLearning {
            me,
            next_sweep_ms: now_ms.saturating_add(SEAL_LEARN_IDLE_MS),
            in_flight: BTreeSet::new(),
            touched: BTreeSet::new(),
            given_up: BTreeSet::new(),
        }
    }

    pub fn next_sweep_ms(&self) -> u64 {
        self.next_sweep_ms
    }

    pub fn touch(&mut self, key: SegmentKey) {
        self.touched.insert(key);
    }

    pub fn give_up(&mut self, key: SegmentKey) {
        self.given_up.insert(key);
    }

    /// If a sweep is due at `now_ms`: the logs to ask about now, given the
    /// unsealed segments (in key order). Starts the next interval.
    pub fn sweep(&mut self, now_ms: u64, unsealed: impl Iterator<Item = SegmentKey>) -> Vec<u64> {
        if now_ms < self.next_sweep_ms {
            return Vec::new();
        }
        self.next_sweep_ms = now_ms.saturating_add(SEAL_LEARN_IDLE_MS);
        let mut ask = Vec::new();
        for key in unsealed {
            if self.in_flight.len() >= SEAL_LOOKUPS_IN_FLIGHT_MAX {
                break;
            }
            if self.touched.contains(&key) || self.given_up.contains(&key) {
                continue;
            }
            if self.in_flight.insert(key.log_id) {
                ask.push(key.log_id);
            }
        }
        self.touched.clear();
        assert!(self.in_flight.len() <= SEAL_LOOKUPS_IN_FLIGHT_MAX);
        ask
    }

    /// Whether the record of `log_id` was asked for and not yet answered.
    pub fn asking(&self, log_id: u64) -> bool {
        self.in_flight.contains(&log_id)
    }

    /// The record of `log_id` came back (or its lookup failed): the log may
    /// be asked about again.
    pub fn answered(&mut self, log_id: u64) -> bool {
        self.in_flight.remove(&log_id)
    }
}
