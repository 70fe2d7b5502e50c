//! The drivers' clock: milliseconds since a driver started, the `now_ms`
//! its machine takes, and the sleep until the machine's next timer.
//! tokio's clock, so tests may pause and advance it.

use tokio::time::{Duration, Instant};

/// Milliseconds since the driver started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            started: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sleeps until the machine's timer at `at_ms`, or forever without one.
    pub async fn sleep_until(&self, at_ms: Option<u64>) {
        match at_ms {
            Some(at) => {
                tokio::time::sleep_until(self.started + Duration::from_millis(at)).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleeps_until_the_machines_timer() {
        let clock = Clock::new();
        clock.sleep_until(Some(1_500)).await;
        assert_eq!(clock.now_ms(), 1_500);
        let never = tokio::time::timeout(Duration::from_secs(60), clock.sleep_until(None)).await;
        assert!(never.is_err(), "no timer: no wake-up");
    }
}
