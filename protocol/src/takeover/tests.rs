use super::*;
use crate::meta_call::{CasAnswer, RecordAnswer};
use crate::metadata::{bump_epoch, seal_last, switch_segment, LogMeta};
use crate::placement::Candidate;
use crate::producer::ProducerConfig;

fn seg() -> SegmentMeta {
    SegmentMeta {
        id: 3,
        replicas: vec![1, 2, 3],
        first_seq: 100,
        epoch: 1,
        sealed_len: None,
    }
}

/// Log 9 at epoch 1, its open segment 3 (seqs from 100) on nodes 1, 2, 3.
fn record() -> LogMeta {
    LogMeta {
        log_id: 9,
        epoch: 1,
        trim_seq: 0,
        segments: vec![seg()],
        deleting: Vec::new(),
        deleted: false,
    }
}

fn cfg() -> TakeoverConfig {
    TakeoverConfig {
        producer: ProducerConfig {
            window: 2,
            batch_entries_max: 2,
            batch_bytes_max: 1 << 20,
            ack_timeout_ms: 100,
            replicas: 3,
            seed: 0,
            meta_pause_ms: 10,
            meta_patience_ms: 1_000,
            watermark_refresh_ms: 10_000,
            slow_lag_floor_ms: u64::MAX,
            slow_bench_ms: 60_000,
            slow_strikes: 1,
            view_refresh_ms: u64::MAX,
        },
        fence_resend_ms: 100,
        fence_wait_ms_max: 1_000,
        tail_read_timeout_ms: 50,
        tail_write_timeout_ms: 200,
    }
}

fn read(version: u64, record: Option<LogMeta>, alive: &[u64]) -> RecordAnswer {
    RecordAnswer::Read {
        version,
        record,
        alive: Candidate::all_in_one_zone(alive),
    }
}

const ALIVE: [u64; 7] = [1, 2, 3, 4, 5, 6, 7];

fn e(b: u8) -> Entry {
    Entry::new(vec![b])
}

fn ans(durable_len: u64, watermark: u64, sealed_len: Option<u64>) -> FenceAnswer {
    FenceAnswer {
        epoch: 2,
        durable_len,
        watermark,
        sealed_len,
    }
}

fn proposed(out: &[TakeoverAction]) -> LogMeta {
    match out {
        [TakeoverAction::Meta(MetaCall::Cas { record, .. })] => record.clone(),
        other => panic!("expected one CAS, got {other:?}"),
    }
}

/// A takeover of `record()` whose bump to epoch 2 applied at time 0.
fn fencing() -> (Takeover, Actions<TakeoverAction>) {
    let (mut t, out) = Takeover::start(9, cfg(), 0);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    let bumped = proposed(&t.handle_record(read(1, Some(record()), &ALIVE), 0));
    assert_eq!(bumped, bump_epoch(&record()));
    let fences = t.handle_cas(CasAnswer::Applied { version: 2 }, 0);
    assert_eq!(t.epoch(), 2);
    assert_eq!(t.phase(), &TakeoverPhase::Fencing);
    (t, fences)
}

/// Places the next segment on the nodes the seed draws from `alive`.
fn place(t: &mut Takeover, version: u64, alive: &[u64]) -> Actions<TakeoverAction> {
    let current = bump_epoch(&record());
    t.handle_record(read(version, Some(current), alive), 0)
}

/// Acknowledges the whole tail from every replica of the next segment;
/// returns what the last ack asked for.
fn ack_all(t: &mut Takeover, now: u64) -> Actions<TakeoverAction> {
    let next = t.next().expect("placed").clone();
    let len = t.tail().len() as u64;
    let mut out = Actions::new();
    for n in &next.replicas {
        assert!(out.is_empty(), "sealed before every replica has the tail");
        out = t.handle_tail_ack(*n, next.id, len, now);
    }
    out
}

#[test]
fn one_answer_suffices_and_the_longest_tail_is_copied() {
    let (mut t, fences) = fencing();
    assert_eq!(fences.len(), 3);
    let out = t.handle_fence_answer(1, ans(5, 3, None), 1);
    assert_eq!(
        &out[..],
        &[TakeoverAction::ReadTail {
            replica: 1,
            node: 2,
            segment: 3,
            from: 3,
            to: 5
        }]
    );
    // A later answer with a longer log does not restart the read.
    assert!(t.handle_fence_answer(0, ans(6, 4, None), 1).is_empty());
    let out = t.handle_tail(1, 3, vec![e(3)], 2);
    assert!(matches!(
        &out[..],
        [TakeoverAction::ReadTail { from: 4, .. }]
    ));
    // An answer to a read abandoned since is ignored.
    assert!(t.handle_tail(0, 4, vec![e(8)], 2).is_empty());
    let out = t.handle_tail(1, 4, vec![e(4), e(99)], 3);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    assert_eq!(t.tail(), &[e(3), e(4)]);
}

#[test]
fn the_tail_is_durable_on_every_new_replica_before_the_seal() {
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(5, 2, None), 1);
    let _ = t.handle_tail(0, 2, vec![e(2), e(3), e(4)], 2);
    // Segment 3 was created at epoch 1: epoch 2 skips no id.
    assert_eq!(t.next_id(), Some(4));
    let writes = place(&mut t, 2, &[4, 5, 6]);
    let next = t.next().expect("placed").clone();
    assert_eq!((next.id, next.first_seq), (4, 102));
    // Batches of 2 entries: two appends per replica, within the window.
    assert_eq!(writes.len(), 6);
    assert!(writes.contains(&TakeoverAction::WriteTail {
        node: next.replicas[1],
        segment: 4,
        epoch: 2,
        first_seq: 102,
        first_offset: 2,
        count: 1
    }));
    assert_eq!(t.tail_entries(2, 1), &[e(4)]);
    let (a, b, c) = (next.replicas[0], next.replicas[1], next.replicas[2]);
    assert!(t.handle_tail_ack(a, 4, 3, 3).is_empty());
    assert!(t.handle_tail_ack(b, 4, 2, 3).is_empty(), "a short ack");
    assert!(t.handle_tail_ack(9, 4, 3, 3).is_empty(), "not a replica");
    assert!(t.handle_tail_ack(b, 7, 3, 3).is_empty(), "another segment");
    assert!(t.handle_tail_ack(b, 4, 3, 3).is_empty());
    let out = t.handle_tail_ack(c, 4, 3, 4);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    let current = bump_epoch(&record());
    let sealed = proposed(&t.handle_record(read(2, Some(current.clone()), &ALIVE), 5));
    let expected = switch_segment(&current, 2, 3, 2, &next.replicas).expect("switch");
    assert_eq!(sealed, expected);
    let out = t.handle_cas(CasAnswer::Applied { version: 3 }, 6);
    let seals = out
        .iter()
        .filter(|a| {
            matches!(
                a,
                TakeoverAction::Seal {
                    segment: 3,
                    len: 2,
                    epoch: 2,
                    ..
                }
            )
        })
        .count();
    assert_eq!(seals, 3, "the old replicas learn the seal");
    assert_eq!(
        out.last(),
        Some(&TakeoverAction::Done {
            epoch: 2,
            segment: next,
            held: 3
        })
    );
    assert_eq!(t.phase(), &TakeoverPhase::Done);
}

#[test]
fn a_node_that_fails_to_take_the_tail_is_replaced() {
    let (mut t, _) = Takeover::start(9, cfg(), 0);
    let mut at3 = record();
    at3.epoch = 3;
    let bumped = proposed(&t.handle_record(read(1, Some(at3), &ALIVE), 0));
    assert_eq!(bumped.epoch, 4);
    let _ = t.handle_cas(CasAnswer::Applied { version: 2 }, 0);
    let _ = t.handle_fence_answer(
        2,
        FenceAnswer {
            epoch: 4,
            ..ans(2, 1, None)
        },
        1,
    );
    let _ = t.handle_tail(2, 1, vec![e(1)], 1);
    // Epoch 4 follows a segment of epoch 1: ids 4 and 5 belong to
    // takeovers at epochs 2 and 3 that may have written them.
    assert_eq!(t.next_id(), Some(6));
    let mut bumped4 = bumped.clone();
    bumped4.epoch = 4;
    let _ = t.handle_record(read(2, Some(bumped4.clone()), &[4, 5, 6]), 2);
    assert!(t.handle_tail_ack(4, 6, 1, 3).is_empty());
    let out = t.handle_tail_write_failure(5, 6, 3);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    assert!(
        t.handle_tail_ack(6, 6, 1, 4).is_empty(),
        "acks of the abandoned placement count for nothing"
    );
    let _ = t.handle_record(read(2, Some(bumped4), &[4, 5, 6, 7]), 4);
    let next = t.next().expect("placed again").clone();
    assert!(!next.replicas.contains(&5), "{next:?}");
    let out = ack_all(&mut t, 5);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
}

#[test]
fn a_stalled_new_replica_is_left_out_after_the_write_timeout() {
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(3, 2, None), 10);
    let _ = t.handle_tail(0, 2, vec![e(2)], 10);
    let _ = place(&mut t, 2, &[4, 5, 6]);
    let next = t.next().expect("placed").clone();
    // Placed at 0: each new replica has until 200 to make progress.
    assert_eq!(t.poll_timeout(), Some(200));
    assert!(t.handle_tail_ack(next.replicas[0], 4, 1, 100).is_empty());
    assert!(t.handle_tail_ack(next.replicas[1], 4, 1, 100).is_empty());
    assert!(t.handle_timeout(199).is_empty());
    let out = t.handle_timeout(200);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    assert_eq!(t.phase(), &TakeoverPhase::Placing { seal_len: 2 });
    // Only the stalled node is left out: with it gone, too few remain.
    let out = place(&mut t, 2, &[4, 5, 6]);
    assert!(out.is_empty(), "paused for lack of nodes: {out:?}");
}

#[test]
fn a_failed_or_stalled_tail_read_moves_to_another_replica() {
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(4, 2, None), 1);
    let _ = t.handle_fence_answer(2, ans(3, 2, None), 1);
    let out = t.handle_tail_failure(0, 2);
    assert_eq!(
        &out[..],
        &[TakeoverAction::ReadTail {
            replica: 2,
            node: 3,
            segment: 3,
            from: 2,
            to: 3
        }]
    );
    // The read from replica 2 went out at 2; it times out at 52, and no
    // replica is left to read from: fencing resumes.
    assert_eq!(t.poll_timeout(), Some(52));
    assert!(t.handle_timeout(52).is_empty());
    assert_eq!(t.phase(), &TakeoverPhase::Fencing);
    // A read that serves nothing fails too.
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(4, 2, None), 1);
    let _ = t.handle_fence_answer(1, ans(4, 2, None), 1);
    let out = t.handle_tail(0, 2, Vec::new(), 2);
    assert!(matches!(
        &out[..],
        [TakeoverAction::ReadTail { replica: 1, .. }]
    ));
}

#[test]
fn nothing_past_the_watermark_seals_at_once_and_a_known_seal_wins() {
    let (mut t, _) = fencing();
    let out = t.handle_fence_answer(2, ans(4, 4, None), 1);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    // No tail: the seal is proposed on the placement's read.
    let sealed = proposed(&place(&mut t, 2, &[1, 2, 3]));
    assert_eq!(sealed.segments[0].sealed_len, Some(4));
    let (mut t, _) = fencing();
    // A replica holding a seal at 2 (past its watermark of 1): no tail.
    let _ = t.handle_fence_answer(0, ans(4, 1, Some(2)), 1);
    let sealed = proposed(&place(&mut t, 2, &[1, 2, 3]));
    assert_eq!(sealed.segments[0].sealed_len, Some(2));
}

#[test]
fn fences_are_resent_until_the_wait_ends() {
    let (mut t, fences) = fencing();
    assert_eq!(fences.len(), 3);
    let _ = t.handle_fence_answer(1, ans(4, 0, None), 1);
    let _ = t.handle_tail_failure(1, 2);
    assert_eq!(t.phase(), &TakeoverPhase::Fencing);
    assert_eq!(t.poll_timeout(), Some(100));
    let out = t.handle_timeout(100);
    assert_eq!(out.len(), 2, "the unanswered fences again: {out:?}");
    assert_eq!(t.poll_timeout(), Some(200));
    let out = t.handle_timeout(1_000);
    assert_eq!(
        &out[..],
        &[TakeoverAction::Stopped(TakeoverStop::NoFenceAnswer {
            segment: 3,
            waited_ms: 1_000
        })]
    );
}

#[test]
fn a_newer_epoch_in_an_answer_or_the_record_supersedes_the_takeover() {
    let (mut t, _) = fencing();
    let newer = FenceAnswer {
        epoch: 5,
        ..ans(4, 1, None)
    };
    let out = t.handle_fence_answer(0, newer, 1);
    assert_eq!(
        &out[..],
        &[TakeoverAction::Stopped(TakeoverStop::Superseded {
            by_epoch: 5
        })]
    );
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(4, 4, None), 1);
    let mut at3 = bump_epoch(&record());
    at3.epoch = 3;
    let out = t.handle_record(read(3, Some(at3), &ALIVE), 2);
    assert_eq!(
        &out[..],
        &[TakeoverAction::Stopped(TakeoverStop::Superseded {
            by_epoch: 3
        })]
    );
}

#[test]
fn an_unknown_bump_bumps_again_and_a_sealed_log_is_opened_instead() {
    let (mut t, _) = Takeover::start(9, cfg(), 0);
    let _ = t.handle_record(read(1, Some(record()), &ALIVE), 0);
    let out = t.handle_cas(CasAnswer::Unknown, 1);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    // The bump to 2 is there, ours or a rival's: bump again, to 3.
    let again = proposed(&t.handle_record(read(2, Some(bump_epoch(&record())), &ALIVE), 2));
    assert_eq!(again.epoch, 3);
    let _ = t.handle_cas(CasAnswer::Applied { version: 3 }, 3);
    assert_eq!(t.epoch(), 3);
    // A sealed last segment: nothing to fence.
    let (mut t, _) = Takeover::start(9, cfg(), 0);
    let sealed = seal_last(&record(), 1, 3, 0).expect("seal");
    let out = t.handle_record(read(2, Some(sealed), &ALIVE), 0);
    assert_eq!(&out[..], &[TakeoverAction::NothingOpen]);
    assert!(t.ended());
}

#[test]
fn an_unknown_seal_is_resolved_from_the_record() {
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(3, 2, None), 1);
    let _ = t.handle_tail(0, 2, vec![e(2)], 1);
    let _ = place(&mut t, 2, &[4, 5, 6]);
    let _ = ack_all(&mut t, 2);
    let current = bump_epoch(&record());
    let sealed = proposed(&t.handle_record(read(2, Some(current.clone()), &ALIVE), 3));
    let out = t.handle_cas(CasAnswer::Unknown, 4);
    assert_eq!(&out[..], &[TakeoverAction::Meta(MetaCall::ReadRecord)]);
    // Not applied: proposed again at the same version.
    let again = proposed(&t.handle_record(read(2, Some(current), &ALIVE), 5));
    assert_eq!(again, sealed);
    // The first landed meanwhile: the conflict shows our own seal.
    let conflict = CasAnswer::Conflict {
        version: 3,
        record: Some(sealed),
    };
    let out = t.handle_cas(conflict, 6);
    assert!(matches!(
        out.last(),
        Some(TakeoverAction::Done { held: 1, .. })
    ));
}

#[test]
fn the_seal_is_refused_if_the_record_changed() {
    let (mut t, _) = fencing();
    let _ = t.handle_fence_answer(0, ans(3, 3, None), 1);
    let current = bump_epoch(&record());
    let _ = place(&mut t, 2, &[4, 5, 6]);
    let _ = t.handle_cas(CasAnswer::Unavailable, 2);
    let _ = t.handle_timeout(12);
    // Segment 3 sealed elsewhere at this epoch: not this takeover's seal.
    let other = seal_last(&current, 2, 3, 1).expect("seal");
    let out = t.handle_record(read(3, Some(other), &ALIVE), 13);
    assert_eq!(
        &out[..],
        &[TakeoverAction::Stopped(TakeoverStop::RecordChanged)]
    );
}

#[test]
fn the_tail_goes_in_appends_that_fit_the_batch_limits() {
    let mut small = cfg();
    small.producer.batch_bytes_max = 3;
    small.producer.batch_entries_max = 10;
    small.producer.window = 8;
    let (mut t, _) = Takeover::start(9, small, 0);
    let _ = t.handle_record(read(1, Some(record()), &ALIVE), 0);
    let _ = t.handle_cas(CasAnswer::Applied { version: 2 }, 0);
    let _ = t.handle_fence_answer(0, ans(5, 0, None), 1);
    let tail = vec![
        Entry::new(vec![1, 1]),
        Entry::new(vec![2]),
        Entry::new(vec![3, 3, 3, 3]),
        Entry::new(vec![4]),
        Entry::new(vec![5]),
    ];
    let _ = t.handle_tail(0, 0, tail, 1);
    let writes = place(&mut t, 2, &[4, 5, 6]);
    let node = t.next().expect("placed").replicas[0];
    let chunks: Vec<(u64, u32)> = writes
        .iter()
        .filter_map(|a| match a {
            TakeoverAction::WriteTail {
                node: n,
                first_offset,
                count,
                ..
            } if *n == node => Some((*first_offset, *count)),
            _ => None,
        })
        .collect();
    // 2+1 bytes; an entry over the limit goes alone; 1+1.
    assert_eq!(chunks, vec![(0, 2), (2, 1), (3, 2)]);
}
