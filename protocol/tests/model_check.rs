//! Model check of the trilog replication protocol with stateright.
//!
//! The model (`model/`) runs the production state machines of this crate,
//! not copies of them: each log node holds one [`Replica`] per segment,
//! producer 1 and producer 2 are production [`Producer`]s, producer 2
//! takes the log over with a production [`Takeover`], every metadata
//! decision (the switch, the epoch bump, the placement, the sealing CAS,
//! what to make of an unknown outcome) is the machines' own, taken on the
//! answers of a model metadata store (one record, one atomic CAS per step,
//! `meta_record::validate_record` on every record stored), and the
//! consumer is a production [`Cursor`]. The drivers around them do what
//! `node/` and `client/` do: a node acks an append only once it is
//! flushed, answers a fence only once nothing staged is left, applies a
//! seal only then too, and rebuilds a replica after a crash with
//! `Replica::recovered` from its records' commit fields and the control
//! state it persisted; a producer's driver carries out every action and
//! feeds every answer back.
//!
//! Faults: messages are lost, duplicated and reordered; a node crashes and
//! restarts (losing what was staged and not flushed, the appends and
//! fences waiting for the flush and the watermark it learnt in memory, or
//! keeping records that reached the disk unacknowledged); producer 1
//! crashes; producer 2 takes over while producer 1 still writes; a
//! producer decides at any moment that a replica failed and switches
//! segments; a producer's connection to a replica is lost (it connects
//! again and resends from what the replica acknowledged, or fails the
//! replica when it loses it again or never gets it back); a rogue sender
//! sends one replica a `Seal{len: 0}` below the watermark it knows; a
//! metadata CAS has an unknown outcome (applied, lost, or
//! landing later) and the machine is told so; a trimmer moves the trim
//! point by CAS with the production `trim::trim_record`, nodes unlink
//! the deleting segments' replicas one by one, and `trim::drop_deleted`
//! drops them by CAS; a takeover's tail read
//! times out; the consumer gives up on a replica and reads the next one,
//! and reads with a stale record (which may name segments trimmed and
//! unlinked since).
//!
//! Every configuration has 4 nodes, 3 replicas per segment, a window of 2
//! appends in flight per replica (one entry per append), and a consumer
//! (but trim: see `scenarios::trim`; trim-read has one).
//! Faults are budgets per run; each scenario below takes a few, because
//! the state space is the product of them. Release bounds (the test
//! profile, with debug assertions, runs the same scenarios smaller, still
//! every property and every mutant):
//!
//! | scenario        | producer 1 | takeover | faults per run                                      |
//! |-----------------|------------|----------|-----------------------------------------------------|
//! | network         | 3 entries  | no       | 1 loss, 1 duplicate, 1 reordering                   |
//! | crash           | 3 entries  | no       | 1 node crash (+ torn write), 1 delayed flush, 1 failover |
//! | reconnect       | 2 entries  | no       | 2 lost connections, 1 node crash, 1 delayed flush   |
//! | switch          | 3 entries  | no       | 1 replica failure (switch), 1 loss, 1 failover      |
//! | switch-unknown  | 3 entries  | no       | 1 replica failure, 1 unknown CAS outcome, 1 failover |
//! | race            | 3 entries  | + 1      | none (the race itself)                              |
//! | race-flush      | 2 entries  | + 1      | producer 1 crash, 1 delayed flush, 1 failover       |
//! | race-crash      | 2 entries  | + 1      | 1 node crash, producer 2 crash                      |
//! | race-loss       | 2 entries  | + 1      | 1 loss, producer 2 crash                            |
//! | race-unknown    | 2 entries  | + 1      | 1 unknown CAS outcome, producer 2 crash             |
//! | race-tail       | 1 entry    | + 0      | 1 tail write failure, producer 2 crash; all async   |
//! | rogue-seal      | 2 entries  | no       | 1 rogue `Seal{len: 0}`, 1 replica failure, 1 loss   |
//! | trim            | 2 entries  | no       | 2 replica failures, 2 trims (unlinks, drop); no consumer |
//! | trim-read       | 2 entries  | no       | 1 replica failure, 2 trims (unlinks, drop)          |
//! | slow            | 3 entries  | no       | slow replicas left (lag timer), 1 trim, 1 loss, 1 failover |
//! | liveness-switch | 3 entries  | no       | 1 replica failure, 1 failover (FIFO, no loss)       |
//! | liveness-unknown | 2 entries | no       | 1 replica failure, 1 unknown CAS outcome, 1 failover |
//! | liveness-race   | 2 entries  | + 1      | none                                                |
//! | liveness-slow   | 2 entries  | no       | slow replicas left, 1 failover                      |
//!
//! Appends are flushed as they arrive unless the checker spends a "delayed
//! flush"; segments opened by a switch or a takeover run on a synchronous
//! network (the race on the first segment is fully asynchronous), except
//! in race-tail, where the tail written to the next segment before its
//! CAS is asynchronous too. See
//! `docs/verification.md` for these reductions and what they leave out.
//!
//! Progress is judged only in the four liveness configurations, which
//! have no loss, duplicate or crash; stateright judges `eventually` only at
//! terminal states, so each first checks that its state graph is acyclic
//! (`model/acyclic.rs`).
//!
//! Each scenario, each liveness configuration and each mutant is its own
//! `#[test]` (`scenario_race_loss`, `liveness_switch`,
//! `mutant_no_tail_copy`, ...), so one failure hides no other; they take a
//! process-wide lock, since the mutant selected is process-wide and the
//! checker runs its own threads. Run:
//! `cargo test --release -p trilog-protocol --test model_check -- --nocapture`
//! (a test name after `--` runs that one alone). It prints
//! `model: <property> holds states=N in <scenario>` for every property of
//! every scenario, `model: <discovery> reached in <scenario>` for the
//! interesting states, `mutant: <name> refuted by <property> depth=D` for
//! every deliberately broken variant (see `trilog_protocol::mutant`; D is
//! the length of the shortest counterexample). With `TRILOG_MC_TRACE=1` it
//! also prints each counterexample's steps.
//!
//! [`Replica`]: trilog_protocol::replica::Replica
//! [`Producer`]: trilog_protocol::producer::Producer
//! [`Takeover`]: trilog_protocol::takeover::Takeover
//! [`Cursor`]: trilog_protocol::consumer::Cursor

mod model;

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use stateright::{Checker, Expectation, HasDiscoveries, Model, Property};
use trilog_protocol::mutant::{self, Mutant};

use model::props::{self, INVARIANTS};
use model::scenarios::*;
use model::{Config, Trilog};

const THREADS: usize = 2;

/// One check at a time: a mutant is selected for the whole process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A check that failed poisons the lock; the others still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_scenario(sc: Scenario) {
    let _one = one_at_a_time();
    let started = Instant::now();
    let mut properties: Vec<Property<Trilog>> =
        INVARIANTS.iter().map(|n| props::invariant(n)).collect();
    properties.extend(sc.discoveries.iter().map(|n| props::discovery(n)));
    let checker = Trilog::new(sc.cfg, properties)
        .checker()
        .threads(THREADS)
        .spawn_dfs()
        .join();
    let states = checker.unique_state_count();
    for name in INVARIANTS {
        if let Some(path) = checker.discovery(name) {
            panic!("{name} fails in {}:\n{}", sc.name, describe(path));
        }
        println!("model: {name} holds states={states} in {}", sc.name);
    }
    for name in sc.discoveries {
        assert!(
            checker.discovery(name).is_some(),
            "{name} is never reached in {}",
            sc.name
        );
        println!("model: {name} reached in {}", sc.name);
    }
    eprintln!(
        "  [{}: {states} states, depth {}, {:.1} s]",
        sc.name,
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
}

fn check_progress(name: &str, cfg: Config) {
    let _one = one_at_a_time();
    let started = Instant::now();
    let states = model::acyclic::assert_acyclic(&Trilog::new(cfg.clone(), Vec::new()));
    let checker = Trilog::new(cfg, vec![props::progress()])
        .checker()
        .threads(THREADS)
        .spawn_dfs()
        .join();
    assert_eq!(checker.unique_state_count(), states, "one state space");
    if let Some(path) = checker.discovery(props::PROGRESS) {
        panic!("Progress fails in {name}:\n{}", describe(path));
    }
    println!("model: Progress holds states={states} in {name}");
    eprintln!(
        "  [{name}: {states} states, acyclic, {:.1} s]",
        started.elapsed().as_secs_f64()
    );
}

fn describe(path: stateright::Path<model::State, model::Act>) -> String {
    let mut out = String::new();
    for (state, action) in path.into_vec() {
        match action {
            Some(a) => out.push_str(&format!("  {a:?}\n")),
            None => out.push_str(&format!("  final: {state:#?}\n")),
        }
    }
    out
}

/// Runs `cfg` against `property` alone, breadth first, until the first
/// counterexample; returns its length (the path's steps), or `None`.
fn counterexample(cfg: Config, property: Property<Trilog>) -> Option<usize> {
    let name = property.name;
    assert_ne!(property.expectation, Expectation::Sometimes);
    let checker = Trilog::new(cfg, vec![property])
        .checker()
        .threads(THREADS)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let path = checker.discovery(name)?;
    if std::env::var_os("TRILOG_MC_TRACE").is_some() {
        for a in path.clone().into_actions() {
            eprintln!("    {a:?}");
        }
    }
    Some(path.into_actions().len())
}

/// Unselects the mutant when dropped, even if the check panicked.
struct Selected;

impl Drop for Selected {
    fn drop(&mut self) {
        mutant::set(None);
    }
}

/// The checker must refute mutant `m` with a counterexample to the
/// property it breaks, in the smallest configuration that shows it.
fn refute(m: Mutant) {
    let _one = one_at_a_time();
    let (property, cfg) = mutant_case(m);
    let name = property.name;
    let started = Instant::now();
    mutant::set(Some(m));
    let selected = Selected;
    let found = counterexample(cfg, property);
    drop(selected);
    let depth = found.unwrap_or_else(|| panic!("mutant {m:?} is not refuted by {name}"));
    println!("mutant: {m:?} refuted by {name} depth={depth}");
    eprintln!("  [{:.1} s]", started.elapsed().as_secs_f64());
}

#[test]
fn scenario_slow() {
    check_scenario(slow());
}

#[test]
fn liveness_slow() {
    check_progress("liveness-slow", liveness_slow_config());
}

#[test]
fn mutant_slow_replica_counted_as_acked() {
    refute(Mutant::SlowReplicaCountedAsAcked);
}

#[test]
fn scenario_network() {
    check_scenario(network());
}

#[test]
fn scenario_crash() {
    check_scenario(crash());
}

#[test]
fn scenario_reconnect() {
    check_scenario(reconnect());
}

#[test]
fn scenario_switch() {
    check_scenario(switch());
}

#[test]
fn scenario_switch_unknown() {
    check_scenario(switch_unknown());
}

#[test]
fn scenario_race() {
    check_scenario(race());
}

#[test]
fn scenario_race_flush() {
    check_scenario(race_flush());
}

#[test]
fn scenario_race_crash() {
    check_scenario(race_crash());
}

#[test]
fn scenario_race_loss() {
    check_scenario(race_loss());
}

#[test]
fn scenario_race_unknown() {
    check_scenario(race_unknown());
}

#[test]
fn scenario_race_tail() {
    check_scenario(race_tail());
}

#[test]
fn scenario_rogue_seal() {
    check_scenario(rogue_seal());
}

#[test]
fn scenario_learn_seal() {
    check_scenario(learn_seal());
}

#[test]
fn scenario_repair() {
    check_scenario(repair());
}

#[test]
fn scenario_decommission() {
    check_scenario(decommission());
}

#[test]
fn scenario_heal() {
    check_scenario(heal());
}

#[test]
fn scenario_sweep() {
    check_scenario(sweep());
}

#[test]
fn scenario_trim() {
    check_scenario(trim());
}

#[test]
fn scenario_trim_read() {
    check_scenario(trim_read());
}

#[test]
fn liveness_switch() {
    check_progress("liveness-switch", liveness_switch_config());
}

#[test]
fn liveness_unknown() {
    check_progress("liveness-unknown", liveness_unknown_config());
}

#[test]
fn liveness_race() {
    check_progress("liveness-race", liveness_race_config());
}

#[test]
fn mutant_repair_published_before_durable() {
    refute(Mutant::RepairPublishedBeforeDurable);
}

/// The same mutant where the replica replaced is a leaving node's, which
/// keeps its copy: once the record stops listing it, a copy published
/// before it is durable loses entries all the same.
#[test]
fn mutant_repair_published_before_durable_in_a_decommission() {
    let _one = one_at_a_time();
    let (property, cfg) = mutant_case(Mutant::RepairPublishedBeforeDurable);
    let cfg = Config {
        node_losses: 0,
        decommissions: 1,
        ..cfg
    };
    let name = property.name;
    mutant::set(Some(Mutant::RepairPublishedBeforeDurable));
    let selected = Selected;
    let found = counterexample(cfg, property);
    drop(selected);
    let depth = found.unwrap_or_else(|| panic!("not refuted by {name} in a decommission"));
    println!(
        "mutant: RepairPublishedBeforeDurable refuted by {name} in a decommission depth={depth}"
    );
}

#[test]
fn mutant_heal_takes_short_copy_as_whole() {
    refute(Mutant::HealTakesShortCopyAsWhole);
}

#[test]
fn mutant_sweep_past_last() {
    refute(Mutant::SweepPastLast);
}

#[test]
fn mutant_commit_on_two_acks() {
    refute(Mutant::CommitOnTwoAcks);
}

#[test]
fn mutant_read_past_watermark() {
    refute(Mutant::ReadPastWatermark);
}

#[test]
fn mutant_resend_stored_twice() {
    refute(Mutant::ResendStoredTwice);
}

#[test]
fn mutant_no_tail_copy() {
    refute(Mutant::NoTailCopy);
}

#[test]
fn mutant_fence_answered_before_drain() {
    refute(Mutant::FenceAnsweredBeforeDrain);
}

#[test]
fn mutant_takeover_without_fence() {
    refute(Mutant::TakeoverWithoutFence);
}

#[test]
fn mutant_fence_not_durable() {
    refute(Mutant::FenceNotDurable);
}

#[test]
fn mutant_seal_at_longest() {
    refute(Mutant::SealAtLongest);
}

#[test]
fn mutant_watermark_not_sent() {
    refute(Mutant::WatermarkNotSent);
}

#[test]
fn mutant_seal_before_tail_durable() {
    refute(Mutant::SealBeforeTailDurable);
}

#[test]
fn mutant_unknown_cas_is_fence() {
    refute(Mutant::UnknownCasIsFence);
}

#[test]
fn mutant_seal_below_watermark() {
    refute(Mutant::SealBelowWatermark);
}

#[test]
fn mutant_trim_past_point() {
    refute(Mutant::TrimPastPoint);
}
