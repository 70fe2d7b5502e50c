//! Appending workers for the fault tests, the chaos run and the producer
//! process. Each worker appends self-describing payloads
//! ([`make_payload`], ids 0, 1, 2, ... shared by all workers) through the
//! current producer, one at a time, so `concurrency` appends are in flight,
//! and files every outcome in a [`Ledger`].
//!
//! The producer can be replaced while the workers run (a takeover): each
//! append goes to whichever producer is current when it starts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use trilog_client::Producer;

use crate::ledger::Ledger;
use crate::payload::make_payload;
use crate::wait::{wait_for, TimedOut};

/// Pause of a worker whose append failed (its producer was fenced, or is
/// closing), so it does not spin through ids until a new producer is in
/// place.
const FAILED_PAUSE_MS: u64 = 10;

/// Where a worker reports each committed entry as it happens (seq, id),
/// for a process that prints its acks.
pub type AckSink = std::sync::mpsc::Sender<(u64, u64)>;

struct Shared {
    producer: RwLock<Arc<Producer>>,
    ledger: Mutex<Ledger>,
    next_id: AtomicU64,
    stop: AtomicBool,
    acked: AtomicU64,
    payload_bytes: usize,
    sink: Option<Mutex<AckSink>>,
}

/// Workers appending through a shared, replaceable producer.
pub struct Writers {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `concurrency` workers on `producer`, ids from `first_id`.
    pub fn start(
        producer: Producer,
        concurrency: usize,
        payload_bytes: usize,
        first_id: u64,
        sink: Option<AckSink>,
    ) -> Writers {
        assert!(concurrency > 0, "at least one worker");
        let shared = Arc::new(Shared {
            producer: RwLock::new(Arc::new(producer)),
            ledger: Mutex::new(Ledger::default()),
            next_id: AtomicU64::new(first_id),
            stop: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            payload_bytes,
            sink: sink.map(Mutex::new),
        });
        let tasks = (0..concurrency)
            .map(|_| tokio::spawn(work(shared.clone())))
            .collect();
        Writers { shared, tasks }
    }

    /// Appends acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` appends were acknowledged in all.
    pub async fn wait_acked(&self, n: u64, timeout: Duration) -> Result<(), TimedOut> {
        let what = format!("{n} appends acknowledged");
        let acked = &self.shared.acked;
        let enough = move || std::future::ready((acked.load(Ordering::SeqCst) >= n).then_some(()));
        wait_for(&what, timeout, enough)
            .await
            .map_err(|e| TimedOut {
                what: format!("{} (got {})", e.what, self.acked()),
                ..e
            })
    }

    /// The producer new appends go to.
    pub fn current(&self) -> Arc<Producer> {
        match self.shared.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `next` the producer of every later append; returns the old one.
    pub fn replace(&self, next: Producer) -> Arc<Producer> {
        let mut slot = match self.shared.producer.write() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *slot, Arc::new(next))
    }

    /// Stops the workers once their append in flight resolved; returns the
    /// ledger and the current producer (unique once the workers are done,
    /// unless the caller holds another handle on it).
    pub async fn stop(self) -> (Ledger, Arc<Producer>) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            if let Err(e) = t.await {
                log::error!("a writer task failed: {e}");
            }
        }
        let ledger = match self.shared.ledger.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let producer = match self.shared.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        (ledger, producer)
    }
}

async fn work(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let producer = match shared.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let payload = make_payload(id, shared.payload_bytes);
        let outcome = match producer.submit(payload).await {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        drop(producer);
        if let Ok(seq) = outcome {
            shared.acked.fetch_add(1, Ordering::SeqCst);
            if let Some(sink) = &shared.sink {
                if let Ok(s) = sink.lock() {
                    let _ = s.send((seq, id));
                }
            }
        }
        let failed = outcome.is_err();
        match shared.ledger.lock() {
            Ok(mut l) => l.file(id, &outcome),
            Err(poisoned) => poisoned.into_inner().file(id, &outcome),
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(FAILED_PAUSE_MS)).await;
        }
    }
}

/// Closes a producer once no one else holds it (waits for the last
/// handles, e.g. of workers finishing, up to `timeout` in all).
pub async fn close_producer(producer: Arc<Producer>, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    // Taken out once no worker holds a handle on it any more.
    let slot = &Mutex::new(Some(producer));
    let unique = wait_for("the last handle on the producer", timeout, move || {
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let unique = match slot.take().map(Arc::try_unwrap) {
            Some(Ok(p)) => Some(p),
            Some(Err(still_shared)) => {
                *slot = Some(still_shared);
                None
            }
            None => None,
        };
        std::future::ready(unique)
    })
    .await;
    let p = unique.map_err(|e| format!("close: {e}"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, p.close()).await {
        Ok(r) => r.map_err(|e| format!("close: {e}")),
        Err(_) => Err(format!("close: not done within {timeout:?}")),
    }
}
