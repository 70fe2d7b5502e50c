//! The load generator: closed loop (N concurrent writers, each waiting for
//! its last append) or open loop (appends started at a fixed rate whatever
//! the system does, each timed from its *intended* start, so a stall is
//! charged to every append it delayed: coordinated omission corrected).
//!
//! The same generator drives every system through [`Target`], with the
//! same payloads, so their numbers compare.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use trilog_testkit::payload::make_payload;

use crate::latency::{new_histogram, record};

/// A future of one append's outcome.
pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A log a load can be put on: one call appends a batch of entries and
/// resolves once all of them are durable on the system's replicas.
pub trait Target: Send + Sync {
    fn name(&self) -> &str;
    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_>;
}

/// The shape of a load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// `writers` writers, each with one batch in flight.
    Closed { writers: usize },
    /// A batch started every `1 / rate_per_s` seconds, at most
    /// `in_flight_max` at once (more are counted as `dropped`).
    Open {
        rate_per_s: f64,
        in_flight_max: usize,
    },
}

impl Mode {
    /// Appends in flight at most: a closed loop's writers, an open loop's
    /// cap.
    pub fn in_flight_max(&self) -> usize {
        match *self {
            Mode::Closed { writers } => writers,
            Mode::Open { in_flight_max, .. } => in_flight_max,
        }
    }
}

/// A load to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub mode: Mode,
    pub payload_bytes: usize,
    /// Entries per append call.
    pub batch: usize,
    pub duration: Duration,
    /// Measured from the start; nothing before it is recorded.
    pub warmup: Duration,
    /// Print a progress line every second.
    pub progress: bool,
}

/// What a load measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Latency of each batch append, in microseconds.
    pub histogram: Histogram<u64>,
    pub ops: u64,
    pub entries: u64,
    pub errors: u64,
    /// Open loop: batches not started because `in_flight_max` were out.
    pub dropped: u64,
    pub measured: Duration,
}

impl LoadResult {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    pub fn payload_bytes_per_s(&self, payload_bytes: usize) -> f64 {
        (self.entries as f64 * payload_bytes as f64) / self.measured.as_secs_f64().max(1e-9)
    }
}

struct Shared {
    hist: Mutex<Histogram<u64>>,
    ops: AtomicU64,
    entries: AtomicU64,
    errors: AtomicU64,
    next_id: AtomicU64,
    stop: AtomicBool,
    measure_from: Instant,
}

impl Shared {
    fn finish(&self, intended: Instant, batch: usize, outcome: Result<(), String>) {
        let done = Instant::now();
        if intended < self.measure_from {
            return;
        }
        match outcome {
            Ok(()) => {
                self.ops.fetch_add(1, Ordering::Relaxed);
                self.entries.fetch_add(batch as u64, Ordering::Relaxed);
                if let Ok(mut h) = self.hist.lock() {
                    record(&mut h, done.duration_since(intended).as_micros() as u64);
                }
            }
            Err(e) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("append failed: {e}");
                }
            }
        }
    }

    fn batch(&self, cfg: &LoadConfig) -> Vec<Vec<u8>> {
        (0..cfg.batch)
            .map(|_| {
                make_payload(
                    self.next_id.fetch_add(1, Ordering::Relaxed),
                    cfg.payload_bytes,
                )
            })
            .collect()
    }
}

/// Runs `cfg` against `target` and returns what it measured.
pub async fn run(target: Arc<dyn Target>, cfg: LoadConfig) -> LoadResult {
    assert!(cfg.batch > 0, "a batch holds entries");
    let start = Instant::now();
    let shared = Arc::new(Shared {
        hist: Mutex::new(new_histogram()),
        ops: AtomicU64::new(0),
        entries: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        next_id: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        measure_from: start + cfg.warmup,
    });
    let end = start + cfg.warmup + cfg.duration;
    let progress = cfg
        .progress
        .then(|| spawn_progress(shared.clone(), target.name().to_string(), start, &cfg));
    let dropped = match cfg.mode {
        Mode::Closed { writers } => {
            closed_loop(&target, &shared, &cfg, writers, end).await;
            0
        }
        Mode::Open {
            rate_per_s,
            in_flight_max,
        } => {
            open_loop(
                &target,
                &shared,
                &cfg,
                rate_per_s,
                in_flight_max,
                start,
                end,
            )
            .await
        }
    };
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let histogram = shared
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| new_histogram());
    LoadResult {
        histogram,
        ops: shared.ops.load(Ordering::Relaxed),
        entries: shared.entries.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        dropped,
        measured: cfg.duration,
    }
}

/// Prints a progress bar of the run on stderr every second until the
/// load stops.
fn spawn_progress(
    shared: Arc<Shared>,
    name: String,
    start: Instant,
    cfg: &LoadConfig,
) -> tokio::task::JoinHandle<()> {
    let total = cfg.warmup + cfg.duration;
    tokio::spawn(async move {
        while !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let done = start.elapsed().min(total).as_secs_f64() / total.as_secs_f64();
            let bar = (done * 30.0) as usize;
            eprint!(
                "\r{name:>8} [{}{}] {:>3.0}%  {} ops ",
                "#".repeat(bar),
                " ".repeat(30 - bar.min(30)),
                done * 100.0,
                shared.ops.load(Ordering::Relaxed)
            );
            let _ = std::io::stderr().flush();
        }
        eprintln!();
    })
}

async fn closed_loop(
    target: &Arc<dyn Target>,
    shared: &Arc<Shared>,
    cfg: &LoadConfig,
    writers: usize,
    end: Instant,
) {
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers {
        let target = target.clone();
        let shared = shared.clone();
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let batch = shared.batch(&cfg);
                let t0 = Instant::now();
                let outcome = target.append_batch(batch).await;
                shared.finish(t0, cfg.batch, outcome);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn open_loop(
    target: &Arc<dyn Target>,
    shared: &Arc<Shared>,
    cfg: &LoadConfig,
    rate_per_s: f64,
    in_flight_max: usize,
    start: Instant,
    end: Instant,
) -> u64 {
    assert!(rate_per_s > 0.0, "an open loop has a rate");
    let interval = Duration::from_secs_f64(1.0 / rate_per_s);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(in_flight_max));
    let mut dropped = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    loop {
        let intended = start + interval.mul_f64(i as f64);
        if intended >= end {
            break;
        }
        i += 1;
        tokio::time::sleep_until(intended.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if intended >= shared.measure_from {
                dropped += 1;
            }
            continue;
        };
        let target = target.clone();
        let shared = shared.clone();
        let batch = shared.batch(cfg);
        let n = cfg.batch;
        tasks.spawn(async move {
            let outcome = target.append_batch(batch).await;
            // Timed from when it should have started, not when it did.
            shared.finish(intended, n, outcome);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    dropped
}

/// Saves a histogram in the HdrHistogram V2 log-compatible base64 form,
/// one line, for plotting with standard tools.
pub fn save_histogram(h: &Histogram<u64>, path: &std::path::Path) -> std::io::Result<()> {
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let mut f = std::fs::File::create(path)?;
    f.write_all(&bytes)?;
    f.sync_all()
}
