//! Many seeds on several threads, and the hunt for a mutant: what the
//! `trilog-sim` binary and the simulator's tests run.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use trilog_protocol::mutant::{self, Mutant};

use crate::run::{run, Outcome, RunConfig};

/// How to run a range of seeds.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub threads: usize,
    /// Entries each producer appends.
    pub entries: u32,
    /// Stop starting seeds past the first one that fails.
    pub stop_on_failure: bool,
    /// Print each seed as it starts (to find one that hangs).
    pub verbose: bool,
}

impl Batch {
    pub fn config(&self, seed: u64) -> RunConfig {
        RunConfig {
            entries: self.entries,
            ..RunConfig::new(seed)
        }
    }
}

/// The machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs `seeds` on `batch.threads` threads. Returns the outcomes of the
/// seeds that ran, in seed order; with `stop_on_failure`, every seed
/// below the first failing one ran.
pub fn run_seeds(batch: &Batch, seeds: Range<u64>) -> Vec<Outcome> {
    assert!(batch.threads > 0, "at least one thread");
    let next = AtomicU64::new(seeds.start);
    let failed = AtomicU64::new(u64::MAX);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..batch.threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                let past_failure = batch.stop_on_failure && failed.load(Ordering::SeqCst) < seed;
                if seed >= seeds.end || past_failure {
                    return;
                }
                if batch.verbose {
                    eprintln!("seed {seed}");
                }
                let o = run(batch.config(seed));
                if o.failure.is_some() {
                    failed.fetch_min(seed, Ordering::SeqCst);
                }
                out.lock().unwrap_or_else(|e| e.into_inner()).push(o);
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
    out.sort_by_key(|o| o.seed);
    out
}

/// The mutants the simulator hunts: every one but those in code it does
/// not run. Repair runs on a node thread of its own (tokio, the metadata
/// store and node connections) that the simulator does not drive; the
/// model check refutes its mutants (heals run there too), and the
/// real-process repair and damage tests check
/// the driver. No simulated actor trims (the client's `trim` is the only
/// caller of `trim_record`); the model check refutes `TrimPastPoint`, and
/// the real-process trim test checks the driver.
pub fn simulated_mutants() -> impl Iterator<Item = Mutant> {
    Mutant::ALL.iter().copied().filter(|m| {
        !matches!(
            m,
            Mutant::RepairPublishedBeforeDurable
                | Mutant::TrimPastPoint
                | Mutant::HealTakesShortCopyAsWhole
                | Mutant::SweepPastLast
        )
    })
}

/// Selects mutant `m` (process-wide), runs `seeds` until one fails, and
/// selects no mutant again. Returns the first failing seed's outcome and
/// how many seeds ran.
pub fn hunt(m: Mutant, batch: &Batch, seeds: Range<u64>) -> (Option<Outcome>, usize) {
    let batch = Batch {
        stop_on_failure: true,
        ..*batch
    };
    mutant::set(Some(m));
    let outcomes = run_seeds(&batch, seeds);
    mutant::set(None);
    let ran = outcomes.len();
    (outcomes.into_iter().find(|o| o.failure.is_some()), ran)
}
