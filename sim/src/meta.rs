//! The metadata store of a simulated cluster: the embedded store's own pure
//! state ([`trilog_meta::state::MetaState`], the code that ships) behind
//! the [`MetaStore`] interface, reached over a simulated link that is slow
//! and fails.
//!
//! Every call pays a latency each way. A call may fail before it reaches
//! the store (nothing applied) or after the store applied it (the answer is
//! lost): either way the caller sees a timeout and cannot tell which, which
//! is exactly the "unknown outcome" a real store leaves after an error. The
//! store may also be down for a while: every call then fails after its
//! timeout. Watches are woken by the CAS that changes the log, as in the
//! real store.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use trilog_meta::state::{CasError, MetaState, RegisterError};
use trilog_meta::store::{CasOutcome, MetaFuture, MetaStore, Versioned};
use trilog_meta::MetaError;
use trilog_wire::meta::{LogMeta, NodeInfo, NodeMode, NodeModeEntry, NodeStatus};

use crate::executor::SimHandle;
use crate::rng::Rng;

/// How the store's link fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaFaults {
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Per mille of calls lost on the way to the store (not applied).
    pub lost_before_per_mille: u64,
    /// Per mille of calls whose answer is lost (applied, caller not told).
    pub lost_after_per_mille: u64,
    /// How long a failed call takes to fail.
    pub timeout: Duration,
}

impl MetaFaults {
    /// A store that never fails.
    pub fn none() -> MetaFaults {
        MetaFaults {
            latency_min: Duration::from_micros(200),
            latency_max: Duration::from_micros(900),
            lost_before_per_mille: 0,
            lost_after_per_mille: 0,
            timeout: Duration::from_millis(500),
        }
    }
}

/// What the store's faults did, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaCounts {
    pub calls: u64,
    pub lost_before: u64,
    /// CAS calls applied whose caller was told nothing.
    pub unknown_applied: u64,
    pub down_calls: u64,
}

struct State {
    store: MetaState,
    rng: Rng,
    faults: MetaFaults,
    /// The store answers nothing before this time.
    down_until: Duration,
    counts: MetaCounts,
}

/// The simulated store. Cloning shares it.
#[derive(Clone)]
pub struct SimMeta {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    sim: SimHandle,
}

impl std::fmt::Debug for SimMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimMeta")
    }
}

/// Where a call is lost, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Delivered,
    LostBefore,
    LostAfter,
    Down,
}

impl SimMeta {
    pub fn new(sim: SimHandle, faults: MetaFaults, rng: Rng) -> SimMeta {
        assert!(faults.latency_min <= faults.latency_max, "latency bounds");
        assert!(
            faults.lost_before_per_mille + faults.lost_after_per_mille <= 1000,
            "fault rates"
        );
        SimMeta {
            state: Arc::new(Mutex::new(State {
                store: MetaState::default(),
                rng,
                faults,
                down_until: Duration::ZERO,
                counts: MetaCounts::default(),
            })),
            changed: Arc::new(Notify::new()),
            sim,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes how the link fails from now on.
    pub fn set_faults(&self, faults: MetaFaults) {
        self.lock().faults = faults;
    }

    /// The store answers nothing for `how_long` from now.
    pub fn go_down(&self, how_long: Duration) {
        let until = self.sim.now() + how_long;
        let mut st = self.lock();
        st.down_until = st.down_until.max(until);
    }

    /// The log's record as the store holds it now (for the checker).
    pub fn record(&self, log_id: u64) -> (u64, Option<LogMeta>) {
        let st = self.lock();
        let (version, record) = st.store.get(log_id);
        (version, record.cloned())
    }

    pub fn counts(&self) -> MetaCounts {
        self.lock().counts
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.sim.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Draws the latency of one leg and whether the call is lost.
    fn plan(&self) -> (Duration, Duration, Fate) {
        let now = self.sim.now();
        let mut st = self.lock();
        st.counts.calls += 1;
        let f = st.faults;
        let lo = u64::try_from(f.latency_min.as_nanos()).unwrap_or(u64::MAX);
        let hi = u64::try_from(f.latency_max.as_nanos()).unwrap_or(u64::MAX);
        let there = Duration::from_nanos(st.rng.between(lo, hi));
        let back = Duration::from_nanos(st.rng.between(lo, hi));
        if now < st.down_until {
            st.counts.down_calls += 1;
            return (f.timeout, back, Fate::Down);
        }
        let draw = st.rng.below(1000);
        let fate = if draw < f.lost_before_per_mille {
            st.counts.lost_before += 1;
            Fate::LostBefore
        } else if draw < f.lost_before_per_mille + f.lost_after_per_mille {
            Fate::LostAfter
        } else {
            Fate::Delivered
        };
        (there, back, fate)
    }

    fn timeout_error(what: &'static str, after: Duration) -> MetaError {
        MetaError::Timeout {
            what,
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Runs `apply` on the store as one call over the simulated link.
    async fn call<T>(
        &self,
        what: &'static str,
        apply: impl FnOnce(&mut State, u64) -> T,
    ) -> Result<T, MetaError> {
        let (there, back, fate) = self.plan();
        let timeout = self.lock().faults.timeout;
        match fate {
            Fate::Down | Fate::LostBefore => {
                self.sim.sleep(timeout).await;
                return Err(Self::timeout_error(what, timeout));
            }
            Fate::Delivered | Fate::LostAfter => {}
        }
        self.sim.sleep(there).await;
        // The store may have gone down while the call was on its way.
        if self.sim.now() < self.lock().down_until {
            self.sim.sleep(timeout).await;
            return Err(Self::timeout_error(what, timeout));
        }
        let now_ms = self.now_ms();
        let out = {
            let mut st = self.lock();
            apply(&mut st, now_ms)
        };
        if fate == Fate::LostAfter {
            self.sim.sleep(timeout).await;
            return Err(Self::timeout_error(what, timeout));
        }
        self.sim.sleep(back).await;
        Ok(out)
    }

    async fn cas(
        &self,
        log_id: u64,
        expected_version: u64,
        record: LogMeta,
    ) -> Result<CasOutcome, MetaError> {
        let changed = self.changed.clone();
        let applied = std::sync::atomic::AtomicBool::new(false);
        let out = self
            .call("cas_log", |st, _| {
                let r = st.store.cas(log_id, expected_version, record);
                if r.is_ok() {
                    changed.notify_waiters();
                    applied.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                r
            })
            .await;
        match out {
            Ok(Ok(version)) => Ok(CasOutcome::Applied { version }),
            Ok(Err(CasError::Conflict { version, current })) => {
                Ok(CasOutcome::Conflict(Versioned {
                    version,
                    record: current,
                }))
            }
            Ok(Err(e)) => Err(MetaError::Server(e.to_string())),
            Err(e) => {
                if applied.load(std::sync::atomic::Ordering::Relaxed) {
                    self.lock().counts.unknown_applied += 1;
                }
                Err(e)
            }
        }
    }

    async fn watch(
        &self,
        log_id: u64,
        known_version: u64,
        wait: Duration,
    ) -> Result<Versioned, MetaError> {
        let deadline = self.sim.now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let seen = self.get(log_id).await?;
            let now = self.sim.now();
            if seen.version != known_version || now >= deadline {
                return Ok(seen);
            }
            let sleep = self.sim.sleep(deadline - now);
            tokio::select! {
                biased;
                _ = notified => {}
                _ = sleep => {}
            }
        }
    }

    async fn get(&self, log_id: u64) -> Result<Versioned, MetaError> {
        self.call("get_log", |st, _| {
            let (version, record) = st.store.get(log_id);
            Versioned {
                version,
                record: record.cloned(),
            }
        })
        .await
    }
}

impl MetaStore for SimMeta {
    fn get_log(&self, log_id: u64) -> MetaFuture<'_, Versioned> {
        Box::pin(self.get(log_id))
    }

    fn watch_log(
        &self,
        log_id: u64,
        known_version: u64,
        wait: Duration,
    ) -> MetaFuture<'_, Versioned> {
        Box::pin(self.watch(log_id, known_version, wait))
    }

    fn cas_log(
        &self,
        log_id: u64,
        expected_version: u64,
        record: LogMeta,
    ) -> MetaFuture<'_, CasOutcome> {
        Box::pin(self.cas(log_id, expected_version, record))
    }

    fn list_logs(&self) -> MetaFuture<'_, Vec<u64>> {
        Box::pin(self.call("list_logs", |st, _| st.store.list_logs()))
    }

    fn register_node(&self, node: NodeInfo, lease: Duration) -> MetaFuture<'_, NodeMode> {
        Box::pin(async move {
            let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
            let node_id = node.node_id;
            self.call("register_node", |st, now_ms| {
                st.store
                    .register(node, lease_ms, now_ms)
                    .map(|_| st.store.mode(node_id))
            })
            .await?
            .map_err(|e| match (e.node_id_taken(), e) {
                (Some(taken), _) => MetaError::NodeIdTaken(taken),
                (None, RegisterError::Removed { node_id }) => MetaError::NodeRemoved { node_id },
                (None, e) => MetaError::Server(e.to_string()),
            })
        })
    }

    fn deregister_node(&self, node_id: u64, incarnation: u64) -> MetaFuture<'_, bool> {
        Box::pin(self.call("deregister_node", move |st, now_ms| {
            st.store.deregister(node_id, incarnation, now_ms)
        }))
    }

    fn set_node_mode(&self, node_id: u64, mode: NodeMode) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        Box::pin(async move {
            self.call("set_node_mode", move |st, _| {
                st.store.set_mode(node_id, mode).map(|_| st.store.modes())
            })
            .await?
            .map_err(|e| MetaError::Server(e.to_string()))
        })
    }

    fn node_modes(&self) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        Box::pin(self.call("node_modes", |st, _| st.store.modes()))
    }

    fn list_nodes(&self, include_dead: bool) -> MetaFuture<'_, Vec<NodeStatus>> {
        Box::pin(self.call("list_nodes", move |st, now_ms| {
            st.store.nodes(now_ms, include_dead)
        }))
    }

    /// Created on first use from the store's own random stream, so a seed
    /// replays (no simulated node asks for it today: identity checks are
    /// `trilog-node`'s start-up, outside the shard code the simulator runs).
    fn cluster_id(&self) -> MetaFuture<'_, u64> {
        Box::pin(
            self.call("cluster_id", |st, _| match st.store.cluster_id() {
                Some(id) => id,
                None => {
                    let candidate = st.rng.below(u64::MAX - 1) + 1;
                    st.store.cluster_id_or_create(candidate)
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{spawn_with_output, Sim};

    fn record(epoch: u64) -> LogMeta {
        LogMeta {
            log_id: 1,
            epoch,
            trim_seq: 0,
            segments: vec![],
            deleting: Vec::new(),
            deleted: false,
        }
    }

    #[test]
    fn an_answer_lost_after_the_cas_leaves_it_applied() {
        let mut sim = Sim::new(Rng::new(1));
        let faults = MetaFaults {
            lost_after_per_mille: 1000,
            ..MetaFaults::none()
        };
        let meta = SimMeta::new(sim.handle().clone(), faults, Rng::new(2));
        let m = meta.clone();
        let out = spawn_with_output(sim.handle(), 1, async move {
            m.cas_log(1, 0, record(1)).await.map_err(|e| e.to_string())
        });
        assert!(sim.run_until(Duration::from_secs(5), |_| out.is_done()));
        assert!(matches!(out.take(), Some(Err(e)) if e.contains("timed out")));
        assert_eq!(
            meta.record(1).0,
            1,
            "applied although the caller saw an error"
        );
        assert_eq!(meta.counts().unknown_applied, 1);
    }

    #[test]
    fn a_watch_wakes_on_the_cas_and_a_down_store_times_out() {
        let mut sim = Sim::new(Rng::new(3));
        let meta = SimMeta::new(sim.handle().clone(), MetaFaults::none(), Rng::new(4));
        let m = meta.clone();
        let watch = spawn_with_output(sim.handle(), 1, async move {
            m.watch_log(1, 0, Duration::from_secs(10))
                .await
                .map(|v| v.version)
                .map_err(|e| e.to_string())
        });
        let m = meta.clone();
        let h = sim.handle().clone();
        let cas = spawn_with_output(sim.handle(), 2, async move {
            h.sleep(Duration::from_millis(100)).await;
            m.cas_log(1, 0, record(1)).await.map_err(|e| e.to_string())
        });
        assert!(sim.run_until(Duration::from_secs(20), |_| watch.is_done()));
        assert!(matches!(
            cas.take(),
            Some(Ok(CasOutcome::Applied { version: 1 }))
        ));
        assert_eq!(watch.take(), Some(Ok(1)));
        assert!(sim.now() < Duration::from_secs(1), "woken, not timed out");
        meta.go_down(Duration::from_secs(3));
        let m = meta.clone();
        let down = spawn_with_output(sim.handle(), 1, async move { m.get_log(1).await.is_err() });
        assert!(sim.run_until(Duration::from_secs(20), |_| down.is_done()));
        assert_eq!(down.take(), Some(true));
    }
}
