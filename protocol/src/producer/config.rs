//! The tuning of a producer, checked against the wire's limits.
//!
//! A batch larger than what one append frame may carry would be sent, and
//! the node would close the connection on every append: such a
//! configuration is refused before a producer starts.

use trilog_wire::limits::{APPEND_BYTES_MAX, APPEND_ENTRIES_MAX, REPLICAS_MAX};

/// Appends in flight per replica, at most.
pub const WINDOW_APPENDS_MAX: usize = 4096;
pub const WINDOW_APPENDS_DEFAULT: usize = 8;
pub const BATCH_ENTRIES_DEFAULT: u32 = 1024;
pub const BATCH_BYTES_DEFAULT: u32 = 1024 * 1024;
pub const ACK_TIMEOUT_MS_DEFAULT: u64 = 2_000;
pub const REPLICAS_DEFAULT: usize = 3;
/// Pause between rounds of a metadata change after a setback (a conflict,
/// an unreachable store, too few healthy nodes).
pub const META_PAUSE_MS_DEFAULT: u64 = 50;
/// How long a segment switch or the close's seal keeps trying before the
/// producer stops.
pub const META_PATIENCE_MS_DEFAULT: u64 = 30_000;
/// How often an idle producer tells its replicas the watermark again. A
/// replica forgets a watermark that came alone when it restarts, and one
/// sent on a connection that was reset never arrives: without a new word
/// the last entries would stay unreadable there for as long as the
/// producer is idle. The refresh also finds a dead connection (the send
/// fails, and the segment is switched away from it).
pub const WATERMARK_REFRESH_MS_DEFAULT: u64 = 1_000;
/// The least time one replica may hold the commit back alone (every other
/// replica acknowledged past it) before the producer switches the segment
/// away from it. A healthy replica's ack trails the others' by less than
/// a millisecond to a few; see the `slow` module for the adaptive part.
pub const SLOW_LAG_FLOOR_MS_DEFAULT: u64 = 4;
/// How long a node the producer switched away from for being slow is kept
/// out of its placements (when there are enough other nodes).
pub const SLOW_BENCH_MS_DEFAULT: u64 = 60_000;
/// How many times a replica must be found past the lag limit, each time
/// within [`SLOW_STRIKE_WINDOW_MS`] of the last, before it is left: one
/// stall of a healthy disk (cloud disks have them) is one strike, a slow
/// replica strikes again at its next append.
pub const SLOW_STRIKES_DEFAULT: u8 = 2;
/// Strikes further apart than this start the count again.
pub const SLOW_STRIKE_WINDOW_MS: u64 = 1_000;
/// How old the producer's view of its record and of the alive nodes may
/// grow before it reads them again, so that a switch for a slow replica
/// finds its placement ready and goes straight to the CAS.
pub const VIEW_REFRESH_MS_DEFAULT: u64 = 10_000;

const _: () = assert!(WINDOW_APPENDS_DEFAULT <= WINDOW_APPENDS_MAX);
const _: () = assert!(BATCH_ENTRIES_DEFAULT <= APPEND_ENTRIES_MAX);
const _: () = assert!(BATCH_BYTES_DEFAULT <= APPEND_BYTES_MAX);
const _: () = assert!(REPLICAS_DEFAULT <= REPLICAS_MAX);
// A switch pauses and tries again several times before it gives up.
const _: () = assert!(META_PAUSE_MS_DEFAULT * 10 <= META_PATIENCE_MS_DEFAULT);

/// Tuning of a producer. None of it changes what is committed, only how
/// fast, and when the producer gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerConfig {
    /// Appends in flight per replica.
    pub window: usize,
    /// Entries in one append.
    pub batch_entries_max: u32,
    /// Payload bytes in one append (one entry may exceed it alone).
    pub batch_bytes_max: u32,
    /// An append unanswered this long fails its replica. `u64::MAX`:
    /// never (the model check declares failures itself).
    pub ack_timeout_ms: u64,
    /// Replicas of each new segment.
    pub replicas: usize,
    /// Seeds the placement of new segments; the machine draws from it in
    /// turn, so every placement differs.
    pub seed: u64,
    /// Pause between rounds of a metadata change after a setback.
    pub meta_pause_ms: u64,
    /// How long a switch or the close's seal keeps trying.
    pub meta_patience_ms: u64,
    /// An idle replica is told the watermark again after this long without
    /// a word. `u64::MAX`: never (the model check, whose network loses no
    /// watermark where liveness is judged).
    pub watermark_refresh_ms: u64,
    /// The least time a replica may hold the commit back alone before the
    /// segment is switched away from it (the limit also grows with the
    /// replicas' typical ack latency). `u64::MAX`: never; only a failure
    /// or the ack timeout switches.
    pub slow_lag_floor_ms: u64,
    /// How long a node left for being slow stays out of placements.
    pub slow_bench_ms: u64,
    /// Times a replica is found past the lag limit (each within
    /// [`SLOW_STRIKE_WINDOW_MS`] of the last) before it is left.
    pub slow_strikes: u8,
    /// How often the view a slow switch places from is read again.
    /// `u64::MAX`: only when a metadata change reads the record anyway
    /// (the model check, which answers reads at once).
    pub view_refresh_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            window: WINDOW_APPENDS_DEFAULT,
            batch_entries_max: BATCH_ENTRIES_DEFAULT,
            batch_bytes_max: BATCH_BYTES_DEFAULT,
            ack_timeout_ms: ACK_TIMEOUT_MS_DEFAULT,
            replicas: REPLICAS_DEFAULT,
            seed: 0,
            meta_pause_ms: META_PAUSE_MS_DEFAULT,
            meta_patience_ms: META_PATIENCE_MS_DEFAULT,
            watermark_refresh_ms: WATERMARK_REFRESH_MS_DEFAULT,
            slow_lag_floor_ms: SLOW_LAG_FLOOR_MS_DEFAULT,
            slow_bench_ms: SLOW_BENCH_MS_DEFAULT,
            slow_strikes: SLOW_STRIKES_DEFAULT,
            view_refresh_ms: VIEW_REFRESH_MS_DEFAULT,
        }
    }
}

/// A limit of a [`ProducerConfig`] out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("a window of {window} appends per replica: must be 1..={max}")]
    Window { window: usize, max: usize },
    #[error("a batch of {entries} entries: must be 1..={max}, what one append may hold")]
    BatchEntries { entries: u32, max: u32 },
    #[error("a batch of {bytes} bytes: must be 1..={max}, what one append frame may carry")]
    BatchBytes { bytes: u32, max: u32 },
    #[error("{replicas} replicas per segment: must be 1..={max}")]
    Replicas { replicas: usize, max: usize },
    #[error("{what} of 0 ms")]
    ZeroTime { what: &'static str },
    #[error("a slow replica left after 0 strikes: at least 1")]
    NoStrikes,
}

impl ProducerConfig {
    /// Checks every limit against the wire's.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window == 0 || self.window > WINDOW_APPENDS_MAX {
            return Err(ConfigError::Window {
                window: self.window,
                max: WINDOW_APPENDS_MAX,
            });
        }
        if self.batch_entries_max == 0 || self.batch_entries_max > APPEND_ENTRIES_MAX {
            return Err(ConfigError::BatchEntries {
                entries: self.batch_entries_max,
                max: APPEND_ENTRIES_MAX,
            });
        }
        if self.batch_bytes_max == 0 || self.batch_bytes_max > APPEND_BYTES_MAX {
            return Err(ConfigError::BatchBytes {
                bytes: self.batch_bytes_max,
                max: APPEND_BYTES_MAX,
            });
        }
        if self.replicas == 0 || self.replicas > REPLICAS_MAX {
            return Err(ConfigError::Replicas {
                replicas: self.replicas,
                max: REPLICAS_MAX,
            });
        }
        let times = [
            ("an ack timeout", self.ack_timeout_ms),
            ("a metadata pause", self.meta_pause_ms),
            ("a metadata patience", self.meta_patience_ms),
            ("a watermark refresh", self.watermark_refresh_ms),
            ("a slow replica's lag floor", self.slow_lag_floor_ms),
            ("a slow node's bench time", self.slow_bench_ms),
            ("a view refresh", self.view_refresh_ms),
        ];
        if self.slow_strikes == 0 {
            return Err(ConfigError::NoStrikes);
        }
        match times.iter().find(|(_, ms)| *ms == 0) {
            Some((what, _)) => Err(ConfigError::ZeroTime { what }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_a_batch_past_a_frame_is_refused() {
        assert_eq!(ProducerConfig::default().validate(), Ok(()));
        let big = ProducerConfig {
            batch_bytes_max: APPEND_BYTES_MAX + 1,
            ..ProducerConfig::default()
        };
        assert_eq!(
            big.validate(),
            Err(ConfigError::BatchBytes {
                bytes: APPEND_BYTES_MAX + 1,
                max: APPEND_BYTES_MAX
            })
        );
        let many = ProducerConfig {
            batch_entries_max: APPEND_ENTRIES_MAX + 1,
            ..ProducerConfig::default()
        };
        assert!(matches!(
            many.validate(),
            Err(ConfigError::BatchEntries { .. })
        ));
        let no_window = ProducerConfig {
            window: 0,
            ..ProducerConfig::default()
        };
        assert!(matches!(
            no_window.validate(),
            Err(ConfigError::Window { .. })
        ));
        let replicas = ProducerConfig {
            replicas: REPLICAS_MAX + 1,
            ..ProducerConfig::default()
        };
        assert!(matches!(
            replicas.validate(),
            Err(ConfigError::Replicas { .. })
        ));
        let no_pause = ProducerConfig {
            meta_pause_ms: 0,
            ..ProducerConfig::default()
        };
        assert_eq!(
            no_pause.validate(),
            Err(ConfigError::ZeroTime {
                what: "a metadata pause"
            })
        );
    }
}
