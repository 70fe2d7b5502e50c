//! Appending workers for the fault tests, the chaos run and the producer
//! process. Each worker appends self-describing payloads
//! ([`make_payload`], ids 0, 1, 2, ... shared by all workers) through the
//! current producer, one at a time, so `concurrency` appends are in flight,
//! and files every outcome in a [`Ledger`]:
//!
//! - committed: the append resolved to a seq; the entry must be read back
//!   at that seq, once;
//! - maybe: the outcome is unknown (`AppendError::Indeterminate`); the
//!   entry may be read back, at most once;
//! - refused: the producer never took the entry (`AppendError::Closed`);
//!   it must never be read back, so it is *not* in the maybe set.
//!
//! The producer can be replaced while the workers run (a takeover): each
//! append goes to whichever producer is current when it starts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use trilog_client::{AppendError, Producer};

use crate::verify::{make_payload, verify, Verdict};

/// Pause of a worker whose append failed (its producer was fenced, or is
/// closing), so it does not spin through ids until a new producer is in
/// place.
const FAILED_PAUSE_MS: u64 = 10;

/// What became of every append.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// seq -> id of every append that resolved to a seq.
    pub committed: HashMap<u64, u64>,
    /// Ids whose outcome is unknown.
    pub maybe: Vec<u64>,
    /// Ids no producer took.
    pub refused: Vec<u64>,
    /// Ids handed to a producer (all of the above).
    pub appended: u64,
    /// Seqs that two appends resolved to (must stay 0).
    pub seq_reused: u64,
    /// The later (seq, id) of each such pair: `committed` keeps the first.
    pub reused: Vec<(u64, u64)>,
    /// The first errors seen, for the report.
    pub first_errors: Vec<String>,
}

/// How many error messages a ledger keeps.
const LEDGER_ERRORS_MAX: usize = 8;

impl Ledger {
    fn file(&mut self, id: u64, outcome: &Result<u64, AppendError>) {
        self.appended += 1;
        match outcome {
            Ok(seq) => match self.committed.entry(*seq) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(id);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.seq_reused += 1;
                    self.reused.push((*seq, id));
                }
            },
            Err(AppendError::Indeterminate { .. }) => self.maybe.push(id),
            Err(AppendError::Closed | AppendError::TooLarge { .. }) => self.refused.push(id),
        }
        if let Err(e) = outcome {
            if self.first_errors.len() < LEDGER_ERRORS_MAX {
                self.first_errors.push(format!("append {id}: {e}"));
            }
        }
    }
}

impl Ledger {
    /// Checks `reads` (seq, payload id, in the order read) against every
    /// acknowledged append, `maybe` holding the ids of unknown outcome.
    /// Two appends acknowledged at one seq cannot both be read there: the
    /// one not read counts as lost.
    pub fn verify(&self, reads: &[(u64, Option<u64>)], maybe: &[u64]) -> Verdict {
        let mut v = verify(&self.committed, reads, maybe);
        if !self.reused.is_empty() {
            let at: HashMap<u64, Option<u64>> = reads.iter().copied().collect();
            for (seq, id) in &self.reused {
                if at.get(seq) != Some(&Some(*id)) {
                    v.lost += 1;
                }
            }
        }
        v
    }
}

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
    pub async fn wait_acked(&self, n: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} appends acknowledged after {} ms, waiting for {n}",
                    self.acked(),
                    timeout.as_millis()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
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
/// handles, e.g. of workers finishing, up to `timeout`).
pub async fn close_producer(mut producer: Arc<Producer>, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match Arc::try_unwrap(producer) {
            Ok(p) => {
                let left = deadline.saturating_duration_since(Instant::now());
                return match tokio::time::timeout(left, p.close()).await {
                    Ok(r) => r.map_err(|e| format!("close: {e}")),
                    Err(_) => Err(format!("close: not done within {timeout:?}")),
                };
            }
            Err(shared) => {
                if Instant::now() >= deadline {
                    return Err("close: the producer is still shared".into());
                }
                producer = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
