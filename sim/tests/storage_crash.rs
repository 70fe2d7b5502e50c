//! The seeded crash test of the storage layer on the simulated disk.
//!
//! Each seed runs a segment through several lives. A life is a random
//! sequence of stages, flushes (some with records staged or a control
//! write made while the flush is in flight), control writes (fences,
//! seals) and reads, cut short at a random point by a power failure; then
//! the disk crashes (unsynced writes torn by sector), sometimes a bit of
//! the unsynced region flips, and recovery runs. After each recovery:
//!
//! - the segment exists exactly if its creation returned;
//! - every record whose flush completed is there, with its payload (up to
//!   the recovered seal);
//! - every record recovered is one that was staged at that offset in that
//!   life, byte for byte: nothing past it is half-valid, nothing stale
//!   comes back;
//! - the control state is the last one completed or the one in flight;
//! - everything is durable, and past the recovered end the data file
//!   reads as zeros (a torn tail was cut, even inside its block).
//!
//! The test also asserts that the interesting cases happened (torn
//! crashes, cut tails, unacknowledged records surviving, an in-flight
//! control write winning, interrupted creates, flipped bits), so a
//! simulator that stopped tearing anything would fail it.
//!
//! `TRILOG_SIM_STORAGE_SEEDS=N` runs N seeds (default
//! [`SEEDS_DEFAULT`]); `TRILOG_SIM_STORAGE_SEED=S` replays seed S alone.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use futures_lite::future::block_on;
use trilog_node::storage::{CtlState, Recovered, ScanStop, SegmentFile};
use trilog_sim::{Rng, SimDisk};
use trilog_wire::limits::ENTRY_BYTES_MAX;

use support::{commit_of, dir, end_of, flush, header, new_disk, read_range, recover_one};

const SEEDS_DEFAULT: u64 = 500;
const LIVES_PER_SEED: u32 = 4;
const OPS_PER_LIFE_MAX: u64 = 40;
/// The power fails after up to this many state-changing disk calls in a
/// life; a life that makes fewer ends with a crash all the same.
const CHANGES_BEFORE_POWER_OFF_MAX: u64 = 90;
const STAGE_BATCH_MAX: u64 = 6;
/// One flush or control write in this many has the power fail inside it
/// (before, during or after its write), where crashes matter most.
const POWER_FAILS_INSIDE_ONE_IN: u64 = 6;
/// One control write in this many seals (a sealed segment takes no more
/// records, so seals are kept rare).
const SEAL_ONE_IN: u64 = 12;

/// The truth the checks compare recovery with.
#[derive(Debug, Default)]
struct Model {
    /// `SegmentFile::create` returned.
    created: bool,
    /// The payload of each offset staged (or recovered) in this life.
    expected: Vec<Vec<u8>>,
    /// The commit field staged with each offset in `expected`.
    commits: Vec<u64>,
    /// The largest durable length the segment reported in this life.
    acked: u64,
    ctl_done: CtlState,
    ctl_in_flight: Option<CtlState>,
}

/// How often each interesting case happened, over all seeds.
#[derive(Debug, Default)]
struct Seen {
    torn_crashes: u64,
    cut_tails: u64,
    unacked_survived: u64,
    in_flight_ctl_won: u64,
    interrupted_creates: u64,
    flips: u64,
    seals: u64,
    flushes: u64,
}

type Seg = SegmentFile<SimDisk>;

/// Payload lengths: record ends on sector and block boundaries, tiny, odd,
/// random, and now and then the largest entry.
fn payload_len(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 0,
        1 => 480,  // a 512-byte record
        2 => 992,  // 1024
        3 => 4064, // 4096
        4 => rng.between(1, 40) as usize,
        5 if rng.chance(1, 10) => ENTRY_BYTES_MAX as usize,
        _ => rng.below(10_000) as usize,
    }
}

fn random_payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Why a life ended early: the power failed (anything else panics).
struct PowerOff;

fn powered_off<E: std::fmt::Debug>(disk: &SimDisk, err: E) -> PowerOff {
    assert!(
        disk.is_powered_off(),
        "a storage call failed with the power on: {err:?}"
    );
    PowerOff
}

fn stage_batch(seg: &mut Seg, model: &mut Model, rng: &mut Rng) {
    if seg.ctl().sealed_len.is_some() || seg.failure().is_some() {
        return;
    }
    for _ in 0..rng.between(1, STAGE_BATCH_MAX) {
        let offset = seg.staged_len();
        assert_eq!(offset, model.expected.len() as u64, "model out of step");
        let len = payload_len(rng);
        let payload = random_payload(rng, len);
        // An honest commit field, as a producer sends it: entries below it
        // are durable here. Recovery relies on that to tell a torn tail (a
        // bad record no later record vouches for) from damage.
        let commit = commit_of(offset).min(model.acked);
        seg.stage(offset, commit, crc32c::crc32c(&payload), &payload);
        model.expected.push(payload);
        model.commits.push(commit);
    }
}

/// A control write of a random next state; seals truncate.
async fn ctl_write(
    disk: &SimDisk,
    seg: &mut Seg,
    model: &mut Model,
    rng: &mut Rng,
    seen: &mut Seen,
) -> Result<(), PowerOff> {
    let done = model.ctl_done;
    let sealed_len = match done.sealed_len {
        Some(len) => Some(len),
        // The node persists a seal only once every entry below it is
        // durable; recovery counts on it (a sealed file shorter than its
        // seal is damage).
        None if rng.chance(1, SEAL_ONE_IN) => Some(rng.between(0, model.acked)),
        None => None,
    };
    let state = CtlState {
        fenced_epoch: done.fenced_epoch + rng.below(2),
        sealed_len,
        watermark: done.watermark.max(rng.between(0, model.acked)),
    };
    model.ctl_in_flight = Some(state);
    maybe_fail_power_inside(disk, rng);
    let write = seg.begin_ctl_write(state);
    write.run().await.map_err(|e| powered_off(disk, e))?;
    seg.complete_ctl_write(state);
    model.ctl_done = state;
    model.ctl_in_flight = None;
    if let (None, Some(len)) = (done.sealed_len, sealed_len) {
        seg.seal_truncate(len);
        seen.seals += 1;
    }
    Ok(())
}

/// A flush during which more records are staged and, sometimes, a control
/// write (perhaps a seal) completes.
async fn flush_with_company(
    disk: &SimDisk,
    seg: &mut Seg,
    model: &mut Model,
    rng: &mut Rng,
    seen: &mut Seen,
) -> Result<(), PowerOff> {
    let Some(job) = seg.begin_flush() else {
        return Ok(());
    };
    maybe_fail_power_inside(disk, rng);
    stage_batch(seg, model, rng);
    if rng.chance(1, 2) {
        // On failure the job is dropped unfinished, which fails it.
        ctl_write(disk, seg, model, rng, seen).await?;
    }
    let done = job.run().await.map_err(|e| powered_off(disk, e))?;
    model.acked = model.acked.max(seg.complete_flush(done));
    seen.flushes += 1;
    Ok(())
}

/// Now and then, has the power fail within the next few changes: inside
/// the flush or control write about to run.
fn maybe_fail_power_inside(disk: &SimDisk, rng: &mut Rng) {
    if !disk.is_powered_off() && rng.chance(1, POWER_FAILS_INSIDE_ONE_IN) {
        disk.power_off_after(rng.below(3));
    }
}

/// Reads a random durable range and checks it against the model.
async fn read_check(
    disk: &SimDisk,
    seg: &Seg,
    model: &Model,
    rng: &mut Rng,
) -> Result<(), PowerOff> {
    let to = seg.durable_len();
    let from = rng.between(0, to);
    let max_bytes = *rng.pick(&[1, 4096, 100_000, 4 << 20]);
    let got = read_range(seg, from, to, max_bytes)
        .await
        .map_err(|e| powered_off(disk, e))?;
    for (offset, payload) in got {
        assert!(
            payload == model.expected[offset as usize],
            "read of {offset}"
        );
    }
    Ok(())
}

/// One life: create if needed, then random operations until they run out
/// or the power fails.
async fn live(
    disk: &SimDisk,
    seg: &mut Option<Seg>,
    model: &mut Model,
    rng: &mut Rng,
    seen: &mut Seen,
) -> Result<(), PowerOff> {
    if seg.is_none() {
        assert!(!model.created);
        match SegmentFile::create(disk, &dir(), header(1)).await {
            Ok(created) => {
                *seg = Some(created);
                model.created = true;
            }
            Err(e) => {
                seen.interrupted_creates += 1;
                return Err(powered_off(disk, e));
            }
        }
    }
    let Some(seg) = seg.as_mut() else {
        unreachable!("created above")
    };
    for _ in 0..rng.between(1, OPS_PER_LIFE_MAX) {
        match rng.below(10) {
            0..=3 => stage_batch(seg, model, rng),
            4..=6 => {
                if seg.has_staged() {
                    maybe_fail_power_inside(disk, rng);
                    let len = flush(seg).await.map_err(|e| powered_off(disk, e))?;
                    model.acked = model.acked.max(len);
                    seen.flushes += 1;
                }
            }
            7 => ctl_write(disk, seg, model, rng, seen).await?,
            8 => flush_with_company(disk, seg, model, rng, seen).await?,
            _ => read_check(disk, seg, model, rng).await?,
        }
    }
    Ok(())
}

/// Flips a random bit between the end of the acknowledged records and the
/// end of everything staged: damage where only unacknowledged data lies.
fn flip_in_unacked_region(disk: &SimDisk, model: &Model, rng: &mut Rng, seen: &mut Seen) {
    let lens = model.expected.iter().map(Vec::len);
    let from = end_of(lens.clone().take(model.acked as usize));
    let to = end_of(lens);
    if from >= to {
        return;
    }
    let path = header(1).key().data_path(&dir());
    // The position may lie past a size the crash took back: no damage then.
    if disk
        .flip_bit(&path, rng.between(from, to - 1), rng.below(8) as u8)
        .is_ok()
    {
        seen.flips += 1;
    }
}

/// Checks a recovery against the model and makes the model that of the
/// next life.
async fn check_recovery(
    disk: &SimDisk,
    found: Option<Recovered<SimDisk>>,
    model: &mut Model,
    rng: &mut Rng,
    seen: &mut Seen,
) -> Option<Seg> {
    let Some(r) = found else {
        assert!(!model.created, "a created segment was lost");
        return None;
    };
    assert!(
        model.created,
        "a segment whose creation failed was recovered"
    );
    assert!(
        r.ctl == model.ctl_done || Some(r.ctl) == model.ctl_in_flight,
        "control state {:?} was never written (done {:?}, in flight {:?})",
        r.ctl,
        model.ctl_done,
        model.ctl_in_flight
    );
    if r.ctl != model.ctl_done {
        seen.in_flight_ctl_won += 1;
    }
    let required = match r.ctl.sealed_len {
        Some(sealed) => model.acked.min(sealed),
        None => model.acked,
    };
    assert!(
        r.len >= required,
        "acknowledged records lost: recovered {} of {required} ({:?})",
        r.len,
        r.stop
    );
    if let Some(sealed) = r.ctl.sealed_len {
        assert!(
            r.len <= sealed,
            "recovered {} past the seal {sealed}",
            r.len
        );
    }
    assert!(
        r.len <= model.expected.len() as u64,
        "recovered {} records, only {} were ever staged",
        r.len,
        model.expected.len()
    );
    seen.unacked_survived += u64::from(r.len > required);
    seen.cut_tails += u64::from(r.stop != ScanStop::CleanEnd);
    assert_eq!(r.damage, None, "a crash judged as damage ({:?})", r.stop);
    let max_commit = model
        .commits
        .iter()
        .take(r.len as usize)
        .copied()
        .max()
        .unwrap_or(0);
    assert_eq!(r.max_commit, max_commit);

    let max_bytes = *rng.pick(&[1, 64 * 1024, 4 << 20]);
    let got = read_range(&r.file, 0, r.len, max_bytes)
        .await
        .expect("recovered records read back");
    for (offset, payload) in &got {
        assert!(
            *payload == model.expected[*offset as usize],
            "record {offset} is not the one staged at that offset in this life"
        );
    }

    assert!(disk.is_synced(), "recovery left something unsynced");
    let end = end_of(model.expected.iter().take(r.len as usize).map(Vec::len));
    if r.ctl.sealed_len.is_none() {
        let stale = disk
            .first_durable_nonzero(r.file.data_path(), end)
            .expect("data file");
        assert_eq!(stale, None, "stale bytes past the recovered end {end}");
    }

    model.expected.truncate(r.len as usize);
    model.commits.truncate(r.len as usize);
    model.acked = r.len;
    model.ctl_done = r.ctl;
    model.ctl_in_flight = None;
    Some(r.file)
}

fn run_seed(seed: u64, seen: &mut Seen) {
    let mut rng = Rng::new(seed);
    block_on(async {
        let disk = new_disk().await;
        let mut model = Model::default();
        let mut seg = None;
        for _ in 0..LIVES_PER_SEED {
            disk.power_off_after(rng.below(CHANGES_BEFORE_POWER_OFF_MAX));
            // Ended by the power or not, the life ends in a crash.
            let _ = live(&disk, &mut seg, &mut model, &mut rng, seen).await;
            drop(seg.take());
            let report = disk.crash(&mut rng);
            seen.torn_crashes += u64::from(report.effect.torn());
            if model.created && rng.chance(1, 3) {
                flip_in_unacked_region(&disk, &model, &mut rng, seen);
            }
            let found = recover_one(&disk, &dir())
                .await
                .expect("recovery after a crash");
            seg = check_recovery(&disk, found, &mut model, &mut rng, seen).await;
        }
    });
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

#[test]
fn every_acknowledged_record_survives_every_crash_and_nothing_else_is_invented() {
    let seeds: Vec<u64> = match env_u64("TRILOG_SIM_STORAGE_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("TRILOG_SIM_STORAGE_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect(),
    };
    let mut seen = Seen::default();
    for &seed in &seeds {
        let ran = catch_unwind(AssertUnwindSafe(|| run_seed(seed, &mut seen)));
        if let Err(panic) = ran {
            eprintln!("storage crash test: seed {seed} failed; replay with TRILOG_SIM_STORAGE_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("storage crash test: seeds={} {seen:?}", seeds.len());
    if seeds.len() as u64 >= SEEDS_DEFAULT {
        let Seen {
            torn_crashes,
            cut_tails,
            unacked_survived,
            in_flight_ctl_won,
            interrupted_creates,
            flips,
            seals,
            flushes,
        } = seen;
        for (what, n) in [
            ("torn crashes", torn_crashes),
            ("cut tails", cut_tails),
            ("unacknowledged records surviving", unacked_survived),
            ("in-flight control writes winning", in_flight_ctl_won),
            ("interrupted creates", interrupted_creates),
            ("flipped bits", flips),
            ("seals", seals),
            ("flushes", flushes),
        ] {
            assert!(n > 0, "never saw {what}: {seen:?}");
        }
    }
}
