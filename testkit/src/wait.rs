//! Waiting for a condition with a deadline: the one loop every wait of
//! the kit, the tools and the tests goes through, so none sleeps in the
//! hope that a state was reached.
//!
//! The condition is checked at once, then every [`WAIT_POLL_MS`] until it
//! holds or the deadline passes; it is checked one last time at the
//! deadline, so a condition that became true during the last pause is not
//! reported as timed out. A check that takes long itself (a connect) can
//! make the wait overrun its deadline by that long.

use std::future::Future;
use std::time::{Duration, Instant};

/// Pause between two checks of a condition.
pub const WAIT_POLL_MS: u64 = 10;

/// A condition that did not hold in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {ms} ms waiting for {what}")]
pub struct TimedOut {
    /// What was waited for.
    pub what: String,
    pub ms: u64,
}

/// Waits until `check` gives a value, for at most `timeout`; returns the
/// value, or [`TimedOut`] naming `what`.
///
/// `check` makes a future per check, so a wait can run in a spawned task
/// (an `async ||` closure that borrows would make the wait's future one
/// the compiler cannot prove `Send`). A check that reads the caller's
/// state takes copies of references to it: `let s = &s; move || async
/// move { ... }`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TimedOut {
                what: what.to_string(),
                ms: timeout.as_millis() as u64,
            });
        }
        let pause = Duration::from_millis(WAIT_POLL_MS).min(deadline - now);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn gives_the_value_once_the_condition_holds() {
        let checks = AtomicU32::new(0);
        let c = &checks;
        let got = wait_for(
            "the third check",
            Duration::from_secs(5),
            move || async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n * 10)
            },
        )
        .await;
        assert_eq!(got, Ok(30));
        assert_eq!(checks.into_inner(), 3, "no check after the condition held");
    }

    #[tokio::test]
    async fn times_out_naming_what_it_waited_for_after_a_last_check() {
        let timeout = Duration::from_millis(50);
        let t0 = Instant::now();
        let mut checks = 0u32;
        let got: Result<(), TimedOut> = wait_for("never", timeout, || {
            checks += 1;
            std::future::ready(None)
        })
        .await;
        assert!(t0.elapsed() >= timeout, "waited the whole timeout");
        let e = got.expect_err("times out");
        assert_eq!(e.to_string(), "timed out after 50 ms waiting for never");
        assert!(checks >= 2, "checked at the start and at the deadline");
    }

    #[tokio::test]
    async fn a_zero_timeout_still_checks_once() {
        let got = wait_for("now", Duration::ZERO, || std::future::ready(Some(7))).await;
        assert_eq!(got, Ok(7));
    }

    /// A wait over borrowed state, inside a function, runs in a spawned
    /// task: its future is `Send`.
    async fn counter_reaches(n: &AtomicU32, at_least: u32) -> Result<(), TimedOut> {
        wait_for("the counter", Duration::from_secs(5), move || async move {
            tokio::task::yield_now().await;
            (n.fetch_add(1, Ordering::SeqCst) + 1 >= at_least).then_some(())
        })
        .await
    }

    #[tokio::test]
    async fn a_wait_runs_in_a_spawned_task() {
        let n = Arc::new(AtomicU32::new(0));
        let task = {
            let n = n.clone();
            tokio::spawn(async move { counter_reaches(&n, 3).await })
        };
        assert_eq!(task.await.expect("task"), Ok(()));
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }
}
