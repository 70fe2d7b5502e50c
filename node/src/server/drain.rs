//! Stopping a node on purpose (SIGTERM): a drain. The node gives its
//! registration up first, so placement stops picking it and producers
//! that lose it switch to other nodes at once rather than a lease later;
//! then each shard stops accepting connections (its listener closes, so
//! new dials are refused by the kernel), stops reading requests, answers
//! the appends it holds once the group commit made them durable, and
//! closes its connections. Reads still waiting (long polls) are not
//! waited for: a reader reads from any replica and asks elsewhere.
//!
//! Nothing acknowledged depends on the drain: an append is answered only
//! after its fdatasync, drain or not. The drain only spares producers the
//! wait for a silent replica: an append being made durable is answered,
//! and every other one is refused by a closed connection the producer sees
//! at once. The whole drain is bounded ([`DRAIN_MS_MAX`]); a shard still
//! busy then is left to the process's exit.
//!
//! The drain crosses threads (the signal arrives on one, shards run on
//! their executors), and a glommio task can only be woken from its own
//! thread: each shard watches the node's [`DrainState`] from a task of its
//! own that looks every [`DRAIN_POLL_MS`], and wakes the shard's tasks
//! with a local event.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::limits::{DRAIN_MS_MAX, DRAIN_POLL_MS};
use crate::runtime::ShardRuntime;
use crate::server::shard::Shard;

/// The node's drain, shared by the thread that asks for it and every
/// shard.
#[derive(Debug)]
pub struct DrainState {
    /// The node is stopping (readiness says so from here on).
    stopping: AtomicBool,
    /// The shards are told to drain.
    asked: AtomicBool,
    /// Shards that have not finished draining (or not started serving).
    shards_left: Mutex<usize>,
    finished: Condvar,
}

impl DrainState {
    pub fn new(shards: usize) -> Arc<DrainState> {
        Arc::new(DrainState {
            stopping: AtomicBool::new(false),
            asked: AtomicBool::new(false),
            shards_left: Mutex::new(shards),
            finished: Condvar::new(),
        })
    }

    /// The node begins to stop; false if it had already.
    pub fn stop(&self) -> bool {
        !self.stopping.swap(true, Ordering::AcqRel)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Asks every shard to drain; false if asked already.
    pub fn ask(&self) -> bool {
        !self.asked.swap(true, Ordering::AcqRel)
    }

    pub fn is_asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// One shard is done: it accepts nothing and holds no connection.
    pub fn shard_finished(&self) {
        let mut left = self.shards_left.lock().unwrap_or_else(|e| e.into_inner());
        assert!(*left > 0, "more shards finished draining than there are");
        *left -= 1;
        self.finished.notify_all();
    }

    /// Waits until every shard finished, or `within` passed; the shards
    /// still busy then.
    pub fn wait_finished(&self, within: Duration) -> usize {
        let left = self.shards_left.lock().unwrap_or_else(|e| e.into_inner());
        let (left, _) = self
            .finished
            .wait_timeout_while(left, within, |left| *left > 0)
            .unwrap_or_else(|e| e.into_inner());
        *left
    }
}

/// What a drain did ([`crate::server::NodeHandle::drain`]).
#[derive(Debug)]
pub struct Drained {
    /// From the ask to the last shard done (or the limit).
    pub took: Duration,
    /// Shards still busy at the limit ([`DRAIN_MS_MAX`]): 0 normally.
    pub shards_left: usize,
    /// Whether the store ended the node's lease at once; `None`: the node
    /// registers nowhere; an error: the store did not answer, and the
    /// lease runs out by itself.
    pub deregistered: Option<Result<bool, trilog_meta::MetaError>>,
}

/// The deregistration's share of the drain: a store out of reach must not
/// hold the node for long (its lease then runs out by itself).
pub const DEREGISTER_MS_MAX: u64 = 1_000;

const _: () = assert!(DEREGISTER_MS_MAX < DRAIN_MS_MAX);

/// Runs on each shard from the start: waits for the node's drain and
/// tells the shard's tasks. Polls (see the module doc); cheap, one timer
/// per shard.
pub async fn watch<R: ShardRuntime>(shard: Rc<Shard<R>>, state: Arc<DrainState>) {
    let poll = Duration::from_millis(DRAIN_POLL_MS);
    while !state.is_asked() {
        shard.rt.sleep(poll).await;
    }
    shard.start_draining();
}

/// A shard's drain after its accept loop ended: waits until its
/// connections are closed (each answers what it owes first; see
/// `conn::serve`), then tells the node.
pub async fn finish<R: ShardRuntime>(shard: Rc<Shard<R>>, state: Arc<DrainState>) {
    let started = Instant::now();
    shard.all_closed().await;
    tracing::info!(
        "shard {}: drained in {} ms",
        shard.shard,
        started.elapsed().as_millis()
    );
    state.shard_finished();
}
