//! The scrub's pacing: which sealed segment to re-read next, and when the
//! next read may start, so the scrub reads at most a set number of bytes
//! per second. Pure: the driver (`server/scrub.rs`) does the reads and
//! sleeps, and tells it what it read.
//!
//! Segments are visited in key order, one after the other; after the last
//! one (a pass) the scrub pauses (by default [`SCRUB_PASS_PAUSE_MS`],
//! `--scrub-pass-pause-secs`) before starting again, so a shard of few
//! small segments is not re-read in a loop.

use trilog_protocol::shard::SegmentKey;

/// Default scrub rate per shard.
pub const SCRUB_BYTES_PER_SEC_DEFAULT: u64 = 16 * 1024 * 1024;
/// Default pause after a whole pass over the shard's sealed segments, and
/// when there is none.
pub const SCRUB_PASS_PAUSE_MS: u64 = 60_000;
/// Bytes asked for per scrub read.
pub const SCRUB_READ_BYTES: u32 = 1024 * 1024;

const _: () = assert!(SCRUB_BYTES_PER_SEC_DEFAULT > 0);
const _: () = assert!(SCRUB_READ_BYTES <= trilog_wire::limits::READ_BYTES_MAX);

/// What the scrub does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ScrubStep {
    /// Nothing before `until_ms`.
    Wait { until_ms: u64 },
    /// Re-read segment `key`'s first `len` entries.
    Scrub { key: SegmentKey, len: u64 },
}

/// The pacing of one shard's scrub.
#[derive(Debug, Clone)]
pub struct ScrubPacer {
    bytes_per_sec: u64,
    /// No read starts before this (microseconds, so the rate does not
    /// drift by rounding each read's cost to milliseconds).
    not_before_us: u64,
    /// The segment scrubbed last in this pass.
    last: Option<SegmentKey>,
    pass_pause_ms: u64,
}

impl ScrubPacer {
    pub fn new(bytes_per_sec: u64) -> ScrubPacer {
        assert!(bytes_per_sec > 0, "a scrub rate of 0 bytes/s");
        ScrubPacer {
            bytes_per_sec,
            not_before_us: 0,
            last: None,
            pass_pause_ms: SCRUB_PASS_PAUSE_MS,
        }
    }

    /// Sets the pause between passes from the next pass on.
    pub fn set_pass_pause(&mut self, ms: u64) {
        self.pass_pause_ms = ms;
    }

    /// The next step at `now_ms`, given the shard's scrubbable segments
    /// (sealed, whole, in key order) with their sealed lengths.
    pub fn next(&mut self, now_ms: u64, segments: &[(SegmentKey, u64)]) -> ScrubStep {
        debug_assert!(segments.windows(2).all(|w| w[0].0 < w[1].0), "key order");
        if now_ms.saturating_mul(1000) < self.not_before_us {
            return ScrubStep::Wait {
                until_ms: self.not_before_us.div_ceil(1000),
            };
        }
        let next = segments
            .iter()
            .find(|(key, _)| self.last.is_none_or(|last| *key > last));
        match next {
            Some(&(key, len)) => {
                self.last = Some(key);
                ScrubStep::Scrub { key, len }
            }
            None => {
                // A pass ended (or there is nothing to scrub).
                self.last = None;
                let until_ms = now_ms.saturating_add(self.pass_pause_ms);
                self.not_before_us = until_ms.saturating_mul(1000);
                ScrubStep::Wait { until_ms }
            }
        }
    }

    /// Sets the rate from now on.
    pub fn set_rate(&mut self, bytes_per_sec: u64) {
        assert!(bytes_per_sec > 0, "a scrub rate of 0 bytes/s");
        self.bytes_per_sec = bytes_per_sec;
    }

    /// The scrub read `bytes` at `now_ms`; returns when the next read may
    /// start.
    pub fn on_read(&mut self, now_ms: u64, bytes: u64) -> u64 {
        let cost_us = bytes.saturating_mul(1_000_000).div_ceil(self.bytes_per_sec);
        self.not_before_us = self
            .not_before_us
            .max(now_ms.saturating_mul(1000))
            .saturating_add(cost_us);
        self.not_before_us.div_ceil(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(segment: u64) -> SegmentKey {
        SegmentKey { log_id: 1, segment }
    }

    #[test]
    fn visits_every_segment_in_order_then_pauses() {
        let mut p = ScrubPacer::new(1024);
        let segs = [(key(1), 5), (key(4), 7)];
        assert_eq!(
            p.next(0, &segs),
            ScrubStep::Scrub {
                key: key(1),
                len: 5
            }
        );
        assert_eq!(
            p.next(0, &segs),
            ScrubStep::Scrub {
                key: key(4),
                len: 7
            }
        );
        assert_eq!(
            p.next(10, &segs),
            ScrubStep::Wait {
                until_ms: 10 + SCRUB_PASS_PAUSE_MS
            }
        );
        // A segment sealed meanwhile is in the next pass.
        let segs = [(key(1), 5), (key(2), 3), (key(4), 7)];
        let again = 10 + SCRUB_PASS_PAUSE_MS;
        assert_eq!(
            p.next(again, &segs),
            ScrubStep::Scrub {
                key: key(1),
                len: 5
            }
        );
        // One removed while being scrubbed: the pass goes on after it.
        let segs = [(key(2), 3), (key(4), 7)];
        assert_eq!(
            p.next(again, &segs),
            ScrubStep::Scrub {
                key: key(2),
                len: 3
            }
        );
        let none: [(SegmentKey, u64); 0] = [];
        assert!(matches!(p.next(again, &none), ScrubStep::Wait { .. }));
    }

    #[test]
    fn reads_are_paced_at_the_rate() {
        let mut p = ScrubPacer::new(SCRUB_BYTES_PER_SEC_DEFAULT);
        let segs = [(key(1), 100)];
        assert!(matches!(p.next(0, &segs), ScrubStep::Scrub { .. }));
        // 16 reads of 1 MiB at 16 MiB/s: one second, however fast they ran.
        let mut until = 0;
        for _ in 0..16 {
            until = p.on_read(0, u64::from(SCRUB_READ_BYTES));
        }
        assert_eq!(until, 1000);
        assert_eq!(p.next(500, &segs), ScrubStep::Wait { until_ms: 1000 });
        // Time that passed idle is not saved up for a burst.
        assert_eq!(p.on_read(5000, u64::from(SCRUB_READ_BYTES)), 5063);
    }
}
