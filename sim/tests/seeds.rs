//! The simulator over a few hundred seeds: every invariant holds after
//! every step and Progress after the heal, and a seed replays exactly.
//! (The long run is `cargo run --release -p trilog-sim -- --seeds 10000`,
//! docs/verification.md.)

use trilog_sim::run::run;
use trilog_sim::seeds::{cores, run_seeds, Batch};

/// Seeds a test run: 300 took 6 s on the 2-core machine of README.md in
/// the test profile.
const SEEDS: u64 = 2_000;

fn batch() -> Batch {
    Batch {
        threads: cores(),
        entries: 40,
        stop_on_failure: false,
        verbose: false,
    }
}

#[test]
fn every_seed_keeps_every_invariant_and_makes_progress() {
    let outcomes = run_seeds(&batch(), 0..SEEDS);
    assert_eq!(outcomes.len() as u64, SEEDS, "every seed ran");
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let v = o.failure.as_ref()?;
            Some(format!(
                "seed {}: {v} (replay: cargo run --release -p trilog-sim -- --seed {})",
                o.seed, o.seed
            ))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failing seeds:\n{}",
        failures.join("\n")
    );
    // The runs did something: faults were drawn, entries acknowledged and
    // read back.
    let faults: u32 = outcomes.iter().map(|o| o.faults).sum();
    let acked: usize = outcomes.iter().map(|o| o.acked).sum();
    let read: u64 = outcomes.iter().map(|o| o.read).sum();
    println!("sim: seeds={SEEDS} faults={faults} acked={acked} read={read}");
    assert!(faults > SEEDS as u32, "faults drawn: {faults}");
    assert!(acked > 0 && read > 0, "acked {acked}, read {read}");
}

#[test]
fn a_seed_replays_step_for_step() {
    for seed in [3, 1124] {
        let a = run(batch().config(seed));
        let b = run(batch().config(seed));
        assert_eq!(a.steps, b.steps, "seed {seed}: steps");
        assert_eq!(a.virtual_time, b.virtual_time, "seed {seed}: time");
        assert_eq!(a.trace, b.trace, "seed {seed}: trace");
        assert_eq!((a.acked, a.read), (b.acked, b.read), "seed {seed}");
    }
}
