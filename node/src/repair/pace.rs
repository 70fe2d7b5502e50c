//! The repair copy rate: a node copies at most so many entry bytes per
//! second, so a repair after a node loss never starves the appends and
//! reads the node serves (BookKeeper's autorecovery learnt this the hard
//! way: unthrottled re-replication can take a cluster down).

use std::time::{Duration, Instant};

/// Paces a stream of bytes to a rate, measured from the first byte.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_sec: u64,
    started: Option<Instant>,
    spent: u64,
}

impl Pacer {
    pub fn new(bytes_per_sec: u64) -> Pacer {
        assert!(bytes_per_sec > 0, "a repair rate of 0 never copies");
        Pacer {
            bytes_per_sec,
            started: None,
            spent: 0,
        }
    }

    /// Counts `bytes` copied and sleeps until the rate allows them.
    pub async fn spend(&mut self, bytes: u64) {
        let started = *self.started.get_or_insert_with(Instant::now);
        self.spent = self.spent.saturating_add(bytes);
        let due = Duration::from_secs_f64(self.spent as f64 / self.bytes_per_sec as f64);
        let elapsed = started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }

    /// Forgets the past: an idle node does not earn a burst.
    pub fn idle(&mut self) {
        self.started = None;
        self.spent = 0;
    }
}
