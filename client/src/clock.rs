//! The drivers' clock: milliseconds since a driver started, the `now_ms`
//! its machine takes, and the sleep until the machine's next timer, on the
//! pool's [`Runtime`] (tokio's clock in production, so tests may pause and
//! advance it; the simulator's virtual clock in the simulator).

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::Runtime;

/// Milliseconds since the driver started.
#[derive(Debug, Clone)]
pub struct Clock {
    rt: Arc<dyn Runtime>,
    started: Duration,
}

impl Clock {
    pub fn new(rt: Arc<dyn Runtime>) -> Clock {
        let started = rt.now();
        Clock { rt, started }
    }

    pub fn now_ms(&self) -> u64 {
        let since = self.rt.now().saturating_sub(self.started);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Sleeps until the machine's timer at `at_ms`, or forever without one.
    pub async fn sleep_until(&self, at_ms: Option<u64>) {
        match at_ms {
            Some(at) => {
                let due = self.started + Duration::from_millis(at);
                let left = due.saturating_sub(self.rt.now());
                self.rt.sleep(left).await;
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TokioRuntime;

    #[tokio::test(start_paused = true)]
    async fn sleeps_until_the_machines_timer() {
        let clock = Clock::new(Arc::new(TokioRuntime::new()));
        clock.sleep_until(Some(1_500)).await;
        assert_eq!(clock.now_ms(), 1_500);
        let never = tokio::time::timeout(Duration::from_secs(60), clock.sleep_until(None)).await;
        assert!(never.is_err(), "no timer: no wake-up");
    }
}
