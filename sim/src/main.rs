//! `trilog-sim`: runs the deterministic simulator over many seeds, one
//! seed, or every mutant of the model check.
//!
//! - `trilog-sim --seeds N [--start S]`: seeds S..S+N on every core;
//!   prints `sim: seeds=N steps=X faults=F failures=K` and exits non-zero
//!   if any seed fails (each failing seed prints its violation and its
//!   trace, and the command that replays it).
//! - `trilog-sim --seed S`: one seed, with its trace.
//! - `trilog-sim --mutants`: for every mutant of `trilog_protocol::mutant`,
//!   seeds until one fails; prints `sim-mutant: <name> caught seed=S` and
//!   fails unless every mutant is caught.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use trilog_protocol::mutant::{self, Mutant};
use trilog_sim::run::{run, Outcome};
use trilog_sim::seeds::{cores, hunt, run_seeds, simulated_mutants, Batch};

#[derive(Debug, Parser)]
#[command(
    name = "trilog-sim",
    about = "deterministic simulation of trilog's shipped code"
)]
struct Args {
    /// Run this many seeds.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of `--seeds`.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run only this seed and print its trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Run every mutant of the model check until the simulator catches it.
    #[arg(long)]
    mutants: bool,
    /// Seeds tried per mutant before it counts as missed.
    #[arg(long, default_value_t = 2_000)]
    seeds_per_mutant: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Select this mutant (by name, e.g. `CommitOnTwoAcks`) for `--seed`
    /// or `--seeds`.
    #[arg(long)]
    mutant: Option<String>,
    /// Capture the node's and client's own log lines, up to this level
    /// (error, warn, info, debug, trace), into the trace of `--seed`.
    #[arg(long)]
    log: Option<log::LevelFilter>,
    /// Print each seed as it starts (to find one that hangs).
    #[arg(long)]
    verbose: bool,
    /// Entries each producer appends.
    #[arg(long, default_value_t = 40)]
    entries: u32,
}

fn batch(args: &Args) -> Batch {
    Batch {
        threads: args.threads.unwrap_or_else(cores),
        entries: args.entries,
        stop_on_failure: false,
        verbose: args.verbose,
    }
}

fn print_failure(o: &Outcome) {
    let Some(v) = &o.failure else { return };
    println!("sim: seed {} FAILED: {v}", o.seed);
    for line in &o.trace {
        println!("  {line}");
    }
    println!(
        "sim: seed {} failed after {} steps at {:?} virtual; replay: cargo run --release -p trilog-sim -- --seed {}",
        o.seed, o.steps, o.virtual_time, o.seed
    );
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A seed whose run panics (an assertion of the shipped code) is
    // reported with its trace by `run`; the default hook would only add
    // noise, from every thread.
    std::panic::set_hook(Box::new(|info| {
        if std::env::var_os("TRILOG_SIM_PANICS").is_some() {
            eprintln!("{info}");
        }
    }));
    if let Some(level) = args.log {
        trilog_sim::logs::enable(level);
    }
    if let Some(name) = &args.mutant {
        match Mutant::ALL.iter().find(|m| format!("{m:?}") == *name) {
            Some(m) => mutant::set(Some(*m)),
            None => {
                eprintln!(
                    "trilog-sim: no mutant {name:?}; the mutants: {:?}",
                    Mutant::ALL
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Some(seed) = args.seed {
        let o = run(batch(&args).config(seed));
        if o.failure.is_some() {
            print_failure(&o);
            return ExitCode::FAILURE;
        }
        for line in &o.trace {
            println!("  {line}");
        }
        println!(
            "sim: seed={seed} steps={} faults={} acked={} read={} virtual={:?} ok",
            o.steps, o.faults, o.acked, o.read, o.virtual_time
        );
        return ExitCode::SUCCESS;
    }
    if args.mutants {
        return mutants(&args);
    }
    let started = Instant::now();
    let outcomes = run_seeds(&batch(&args), args.start..args.start + args.seeds);
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    for o in &failures {
        print_failure(o);
    }
    let steps: u64 = outcomes.iter().map(|o| o.steps).sum();
    let faults: u64 = outcomes.iter().map(|o| u64::from(o.faults)).sum();
    println!(
        "sim: seeds={} steps={steps} faults={faults} failures={}",
        outcomes.len(),
        failures.len(),
    );
    println!(
        "sim: {:.1} s on {} threads",
        started.elapsed().as_secs_f64(),
        batch(&args).threads
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn mutants(args: &Args) -> ExitCode {
    let mut missed = Vec::new();
    for m in simulated_mutants() {
        let started = Instant::now();
        let (caught, ran) = hunt(m, &batch(args), 0..args.seeds_per_mutant);
        match caught {
            Some(o) => {
                let property = o.failure.as_ref().map_or("", |v| v.property);
                println!("sim-mutant: {m:?} caught seed={}", o.seed);
                println!(
                    "  by {property}, after {ran} seeds ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            None => {
                println!(
                    "sim-mutant: {m:?} MISSED in {} seeds",
                    args.seeds_per_mutant
                );
                missed.push(m);
            }
        }
    }
    if missed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("sim: {} mutants missed: {missed:?}", missed.len());
        ExitCode::FAILURE
    }
}
