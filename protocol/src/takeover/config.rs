//! The timers of a takeover.

use crate::producer::{ConfigError, ProducerConfig};

/// How long one fence may go unanswered before it is sent again.
pub const FENCE_RESEND_MS_DEFAULT: u64 = 2_000;
/// How long a takeover waits, in all, for a fence answer: with none, the
/// entries of the open segment may be committed and nothing else holds
/// them, so the log must wait (and the caller may try again).
pub const FENCE_WAIT_MS_MAX_DEFAULT: u64 = 60_000;
/// How long one tail read may take before another replica is tried.
pub const TAIL_READ_TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// How long a new replica may go without acknowledging more of the tail
/// before it is left out and the next segment placed again.
pub const TAIL_WRITE_TIMEOUT_MS_DEFAULT: u64 = 5_000;

const _: () = assert!(FENCE_RESEND_MS_DEFAULT < FENCE_WAIT_MS_MAX_DEFAULT);

/// Tuning of a takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TakeoverConfig {
    /// The producer that continues the log: its replicas per segment and
    /// placement seed, its batch limits and window (the tail goes to the
    /// next segment in appends within them), its metadata pause and
    /// patience (for the epoch bump, the placement and the sealing CAS).
    pub producer: ProducerConfig,
    pub fence_resend_ms: u64,
    pub fence_wait_ms_max: u64,
    pub tail_read_timeout_ms: u64,
    pub tail_write_timeout_ms: u64,
}

impl TakeoverConfig {
    /// The default timers around `producer`.
    pub fn new(producer: ProducerConfig) -> TakeoverConfig {
        TakeoverConfig {
            producer,
            fence_resend_ms: FENCE_RESEND_MS_DEFAULT,
            fence_wait_ms_max: FENCE_WAIT_MS_MAX_DEFAULT,
            tail_read_timeout_ms: TAIL_READ_TIMEOUT_MS_DEFAULT,
            tail_write_timeout_ms: TAIL_WRITE_TIMEOUT_MS_DEFAULT,
        }
    }

    /// Checks the producer's limits and that no timer is 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.producer.validate()?;
        let times = [
            ("a fence resend", self.fence_resend_ms),
            ("a fence wait", self.fence_wait_ms_max),
            ("a tail read timeout", self.tail_read_timeout_ms),
            ("a tail write timeout", self.tail_write_timeout_ms),
        ];
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
    fn the_default_is_valid_and_zero_timers_are_refused() {
        let cfg = TakeoverConfig::new(ProducerConfig::default());
        assert_eq!(cfg.validate(), Ok(()));
        let cfg = TakeoverConfig {
            tail_write_timeout_ms: 0,
            ..cfg
        };
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::ZeroTime {
                what: "a tail write timeout"
            })
        );
    }
}
