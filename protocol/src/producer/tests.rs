use super::*;
use crate::meta_call::{CasAnswer, MetaCall, RecordAnswer, Setback};
use crate::metadata::{open_for_write, seal_last, switch_segment, LogMeta};
use crate::placement::Candidate;

fn cfg(window: usize, batch: u32) -> ProducerConfig {
    ProducerConfig {
        window,
        batch_entries_max: batch,
        batch_bytes_max: 1 << 20,
        ack_timeout_ms: 100,
        replicas: 3,
        seed: 0,
        meta_pause_ms: 10,
        meta_patience_ms: 1_000,
        watermark_refresh_ms: 10_000,
        // Off here: the `slow` tests turn it on.
        slow_lag_floor_ms: u64::MAX,
        slow_bench_ms: 60_000,
        slow_strikes: 1,
        view_refresh_ms: u64::MAX,
    }
}

fn producer(window: usize, batch: u32) -> Producer {
    let seg = OpenSegment {
        id: 0,
        first_seq: 0,
        replicas: vec![10, 11, 12],
    };
    Producer::new(1, 1, seg, 0, cfg(window, batch))
}

/// The record of log 1 as producer 1 opened it: segment 0 on 10, 11, 12.
fn record() -> LogMeta {
    open_for_write(None, 1, &[10, 11, 12]).expect("a new log")
}

fn read(version: u64, record: Option<LogMeta>) -> RecordAnswer {
    RecordAnswer::Read {
        version,
        record,
        alive: Candidate::all_in_one_zone(&[10, 11, 12, 13, 14]),
    }
}

fn entry(i: u8) -> Entry {
    Entry::new(vec![i])
}

fn appends(actions: &[Action]) -> Vec<(usize, u64, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Append {
                replica,
                first_offset,
                count,
                ..
            } => Some((*replica, *first_offset, *count)),
            _ => None,
        })
        .collect()
}

/// The record a `Cas` action proposes.
fn proposed(actions: &[Action]) -> LogMeta {
    match actions {
        [Action::Meta(MetaCall::Cas { record, .. })] => record.clone(),
        other => panic!("expected one CAS, got {other:?}"),
    }
}

fn stopped(actions: &[Action]) -> Option<StopReason> {
    actions.iter().find_map(|a| match a {
        Action::Stopped { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// A producer with entries 0..3 sent, entry 0 committed, replica 2 failed:
/// switching away from segment 0 at 1, its record read asked for.
fn switching() -> Producer {
    let mut p = producer(4, 1);
    for i in 0..3 {
        let _ = p.append(entry(i));
    }
    let _ = p.poll(0);
    for r in 0..3 {
        let _ = p.handle_ack(r, 0, 1, 5);
    }
    let out = p.handle_replica_failure(2, 0, 6);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
    assert_eq!(
        p.phase(),
        &Phase::Switching {
            segment: 0,
            seal_len: 1
        }
    );
    p
}

#[test]
fn a_held_tail_counts_as_committed_and_is_not_sent_again() {
    let seg = OpenSegment {
        id: 4,
        first_seq: 100,
        replicas: vec![10, 11, 12],
    };
    let mut p = Producer::new(1, 2, seg, 3, cfg(2, 1));
    assert_eq!(p.committed(), 103);
    let out = p.begin(0);
    assert!(matches!(
        out.first(),
        Some(Action::Connect { segment: 4, .. })
    ));
    assert!(appends(&out).is_empty(), "{out:?}");
    let told = out
        .iter()
        .filter(|a| matches!(a, Action::Watermark { commit: 3, .. }))
        .count();
    assert_eq!(told, 3, "every replica learns the tail is committed");
    assert_eq!(p.append(entry(7)), Ok(103));
    assert_eq!(appends(&p.poll(0))[0], (0, 3, 1));
}

#[test]
fn pipelines_up_to_the_window_and_commits_in_order() {
    let mut p = producer(2, 1);
    for i in 0..3 {
        assert_eq!(p.append(entry(i)), Ok(u64::from(i)));
    }
    let sent = appends(&p.poll(0));
    // Window 2, batch 1: two appends per replica.
    assert_eq!(sent.len(), 6);
    assert!(sent.iter().all(|(_, off, n)| *n == 1 && *off < 2));
    assert!(p
        .handle_ack(0, 0, 1, 1)
        .iter()
        .all(|a| !matches!(a, Action::Committed { .. })));
    let _ = p.handle_ack(1, 0, 1, 1);
    let out = p.handle_ack(2, 0, 2, 1);
    assert!(out.contains(&Action::Committed { through: 1 }), "{out:?}");
    assert_eq!(p.committed(), 1);
    // Replica 2 freed a slot and got entry 2.
    assert!(appends(&out).contains(&(2, 2, 1)));
}

#[test]
fn batches_when_the_window_is_full_and_sends_the_watermark_when_idle() {
    let mut p = producer(1, 100);
    let _ = p.append(entry(0));
    assert_eq!(appends(&p.poll(0)).len(), 3);
    for i in 1..5 {
        let _ = p.append(entry(i));
    }
    assert!(p.poll(0).is_empty(), "window full");
    let mut out = Vec::new();
    for r in 0..3 {
        out.extend(p.handle_ack(r, 0, 1, 1));
    }
    let sent = appends(&out);
    assert_eq!(
        sent,
        vec![(0, 1, 4), (1, 1, 4), (2, 1, 4)],
        "one batch of 4"
    );
    let mut out = Vec::new();
    for r in 0..3 {
        out.extend(p.handle_ack(r, 0, 5, 2));
    }
    assert!(out.contains(&Action::Committed { through: 5 }));
    let watermarks = out
        .iter()
        .filter(|a| matches!(a, Action::Watermark { commit: 5, .. }))
        .count();
    assert_eq!(watermarks, 3, "idle: the watermark goes alone");
}

#[test]
fn an_overdue_ack_switches_at_the_frozen_watermark_and_resends() {
    let mut p = producer(4, 1);
    for i in 0..3 {
        let _ = p.append(entry(i));
    }
    let _ = p.poll(0);
    for r in 0..3 {
        let _ = p.handle_ack(r, 0, 1, 5);
    }
    let _ = p.handle_ack(0, 0, 3, 5);
    let _ = p.handle_ack(1, 0, 3, 5);
    // Replica 2's second append, sent at 0, is due at 100.
    assert_eq!(p.poll_timeout(), Some(100));
    assert!(p.handle_timeout(99).is_empty());
    let out = p.handle_timeout(100);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
    // A late ack of the old segment commits nothing.
    assert!(p.handle_ack(2, 0, 3, 101).is_empty());
    let next = proposed(&p.handle_record(read(1, Some(record())), 102));
    assert_eq!(next.segments[0].sealed_len, Some(1));
    let new = &next.segments[1];
    assert_eq!((new.id, new.first_seq, new.epoch), (1, 1, 1));
    assert!(
        !new.replicas.contains(&12),
        "the failed replica is left out"
    );
    let out = p.handle_cas(CasAnswer::Applied { version: 2 }, 103);
    let seals = out
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Seal {
                    segment: 0,
                    len: 1,
                    ..
                }
            )
        })
        .count();
    assert_eq!(seals, 3);
    let connect = out
        .iter()
        .position(|a| matches!(a, Action::Connect { segment: 1, .. }));
    let first_send = out.iter().position(|a| matches!(a, Action::Append { .. }));
    assert!(connect < first_send, "connect before sending: {out:?}");
    let sent = appends(&out);
    assert_eq!(
        sent.len(),
        6,
        "entries 1 and 2 go to the new segment: {sent:?}"
    );
    assert!(p.entries(0, 2).map(|e| e.payload[0]).eq([1u8, 2]));
    let mut committed = None;
    for r in 0..3 {
        for a in p.handle_ack(r, 1, 2, 104) {
            if let Action::Committed { through } = a {
                committed = Some(through);
            }
        }
    }
    assert_eq!(committed, Some(3));
}

#[test]
fn an_unknown_switch_outcome_is_read_back_and_the_producer_carries_on() {
    let mut p = switching();
    let mine = proposed(&p.handle_record(read(1, Some(record())), 7));
    // The store timed out: read the record back, never guess.
    let out = p.handle_cas(CasAnswer::Unknown, 8);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
    // It applied. The producer continues on the segment the record names.
    let out = p.handle_record(read(2, Some(mine.clone())), 9);
    assert_eq!(stopped(&out), None, "{out:?}");
    assert_eq!(p.phase(), &Phase::Writing);
    assert_eq!(p.segment().id, 1);
    assert_eq!(p.segment().replicas, mine.segments[1].replicas);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Connect { segment: 1, .. })));
    assert_eq!(appends(&out).len(), 6, "entries 1 and 2 resent: {out:?}");
}

#[test]
fn an_earlier_attempt_that_applied_late_is_recognised_as_ours() {
    let mut p = switching();
    let first = proposed(&p.handle_record(read(1, Some(record())), 7));
    let _ = p.handle_cas(CasAnswer::Unknown, 8);
    // Not there yet: the same version, tried again (placed elsewhere).
    let second = proposed(&p.handle_record(read(1, Some(record())), 9));
    assert_ne!(first.segments[1].replicas, second.segments[1].replicas);
    // Meanwhile the first attempt landed: the second conflicts with it.
    let conflict = CasAnswer::Conflict {
        version: 2,
        record: Some(first.clone()),
    };
    let _ = p.handle_cas(conflict, 10);
    assert_eq!(p.phase(), &Phase::Writing);
    assert_eq!(p.segment().replicas, first.segments[1].replicas);
}

#[test]
fn only_a_newer_epoch_is_a_fence() {
    // In the record read for the switch.
    let mut p = switching();
    let mut taken = crate::metadata::bump_epoch(&record());
    let out = p.handle_record(read(2, Some(taken.clone())), 7);
    assert_eq!(stopped(&out), Some(StopReason::Fenced { by_epoch: 2 }));
    assert_eq!(
        p.append(entry(9)),
        Err(AppendRefused::Stopped {
            reason: StopReason::Fenced { by_epoch: 2 }
        })
    );
    // In a conflict after an unknown outcome.
    let mut p = switching();
    let _ = proposed(&p.handle_record(read(1, Some(record())), 7));
    taken.epoch = 3;
    let conflict = CasAnswer::Conflict {
        version: 3,
        record: Some(taken),
    };
    let out = p.handle_cas(conflict, 8);
    assert_eq!(stopped(&out), Some(StopReason::Fenced { by_epoch: 3 }));
    // A refusal at the producer's own epoch is no fence: the replica is
    // left behind instead.
    let mut p = producer(4, 1);
    let _ = p.append(entry(0));
    let _ = p.poll(0);
    let out = p.handle_refusal(1, 0, Refusal::Fenced { epoch: 1 }, 1);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
    // A newer one is, even while switching; the late CAS answer is ignored.
    let out = p.handle_refusal(0, 0, Refusal::Fenced { epoch: 4 }, 2);
    assert_eq!(stopped(&out), Some(StopReason::Fenced { by_epoch: 4 }));
    assert!(p.handle_record(read(1, Some(record())), 3).is_empty());
}

#[test]
fn a_gap_rewinds_and_a_seal_by_someone_else_stops_the_producer() {
    let mut p = producer(4, 1);
    for i in 0..3 {
        let _ = p.append(entry(i));
    }
    let _ = p.poll(0);
    let out = p.handle_refusal(1, 0, Refusal::Gap { len: 0 }, 1);
    assert_eq!(appends(&out), vec![(1, 0, 1), (1, 1, 1), (1, 2, 1)]);
    let out = p.handle_refusal(0, 0, Refusal::Sealed { len: 0 }, 1);
    assert_eq!(
        &out[..],
        &[Action::Stopped {
            reason: StopReason::SealedElsewhere {
                segment: 0,
                len: Some(0)
            },
            committed: 0
        }]
    );
}

#[test]
fn a_record_that_is_not_ours_stops_with_its_reason() {
    let mut p = switching();
    let out = p.handle_record(read(0, None), 7);
    assert_eq!(stopped(&out), Some(StopReason::LogDeleted));
    // Sealed at another length at our own epoch: not our switch.
    let mut p = switching();
    let other = seal_last(&record(), 1, 0, 0).expect("seal");
    let out = p.handle_record(read(2, Some(other)), 7);
    assert_eq!(
        stopped(&out),
        Some(StopReason::SealedElsewhere {
            segment: 0,
            len: Some(0)
        })
    );
    // A record at a lower epoch was replaced under us.
    let seg = OpenSegment {
        id: 0,
        first_seq: 0,
        replicas: vec![10, 11, 12],
    };
    let mut p = Producer::new(1, 5, seg, 0, cfg(4, 1));
    let _ = p.append(entry(0));
    let _ = p.poll(0);
    let _ = p.handle_replica_failure(0, 0, 1);
    let out = p.handle_record(read(1, Some(record())), 2);
    assert_eq!(stopped(&out), Some(StopReason::LogDeleted));
}

#[test]
fn setbacks_pause_and_the_patience_ends_the_switch() {
    let mut p = switching();
    // The store is down: pause 10 ms, read again.
    assert!(p.handle_record(RecordAnswer::Unavailable, 7).is_empty());
    assert_eq!(p.poll_timeout(), Some(17));
    let out = p.handle_timeout(17);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
    // Too few healthy nodes: pause.
    let few = RecordAnswer::Read {
        version: 1,
        record: Some(record()),
        alive: Candidate::all_in_one_zone(&[10, 11, 12]),
    };
    assert!(p.handle_record(few, 18).is_empty());
    // A conflict at our own epoch with the segment still open: pause.
    let _ = p.handle_timeout(28);
    let _ = proposed(&p.handle_record(read(1, Some(record())), 29));
    let conflict = CasAnswer::Conflict {
        version: 5,
        record: Some(record()),
    };
    assert!(p.handle_cas(conflict, 30).is_empty());
    // Surely not applied: pause.
    let _ = p.handle_timeout(40);
    let _ = proposed(&p.handle_record(read(1, Some(record())), 41));
    assert!(p.handle_cas(CasAnswer::Unavailable, 42).is_empty());
    // Patience (1 s from 6) runs out at the next due round.
    let out = p.handle_timeout(1_006);
    assert_eq!(
        stopped(&out),
        Some(StopReason::GaveUp {
            segment: 0,
            setback: Setback::Unreachable
        })
    );
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn close_waits_for_commit_then_seals_and_resolves_an_unknown_seal() {
    let mut p = producer(4, 8);
    let _ = p.append(entry(0));
    let _ = p.poll(0);
    assert!(p.close(0).is_empty(), "entry 0 not committed yet");
    assert_eq!(p.append(entry(1)), Err(AppendRefused::Closed));
    let _ = p.handle_ack(0, 0, 1, 1);
    let _ = p.handle_ack(1, 0, 1, 1);
    let out = p.handle_ack(2, 0, 1, 1);
    assert!(out.contains(&Action::Meta(MetaCall::ReadRecord)), "{out:?}");
    assert_eq!(p.phase(), &Phase::Sealing { segment: 0, len: 1 });
    let sealed = proposed(&p.handle_record(read(1, Some(record())), 2));
    assert_eq!(sealed, seal_last(&record(), 1, 0, 1).expect("seal"));
    let _ = p.handle_cas(CasAnswer::Unknown, 3);
    let out = p.handle_record(read(2, Some(sealed)), 4);
    assert_eq!(out.len(), 4, "three seals and the stop: {out:?}");
    assert_eq!(stopped(&out), Some(StopReason::Closed));
    assert_eq!(p.append(entry(2)), Err(AppendRefused::Closed));
}

#[test]
fn a_close_asked_while_switching_seals_the_next_segment() {
    let mut p = switching();
    assert!(p.close(7).is_empty());
    let next = proposed(&p.handle_record(read(1, Some(record())), 8));
    let _ = p.handle_cas(CasAnswer::Applied { version: 2 }, 9);
    assert_eq!(p.phase(), &Phase::Closing);
    let mut out = Vec::new();
    for r in 0..3 {
        out.extend(p.handle_ack(r, 1, 2, 10));
    }
    assert!(out.contains(&Action::Committed { through: 3 }));
    assert_eq!(p.phase(), &Phase::Sealing { segment: 1, len: 2 });
    let sealed = proposed(&p.handle_record(read(2, Some(next.clone())), 11));
    assert_eq!(sealed, seal_last(&next, 1, 1, 2).expect("seal"));
    let out = p.handle_cas(CasAnswer::Applied { version: 3 }, 12);
    assert_eq!(stopped(&out), Some(StopReason::Closed));
}

#[test]
fn placements_draw_from_the_seed_in_turn() {
    let mut p = switching();
    let r = record();
    let first = proposed(&p.handle_record(read(1, Some(r.clone())), 7));
    let _ = p.handle_cas(CasAnswer::Unavailable, 8);
    let _ = p.handle_timeout(18);
    let second = proposed(&p.handle_record(read(1, Some(r.clone())), 19));
    let draw = |seed| {
        crate::placement::choose_replicas(
            &Candidate::all_in_one_zone(&[10, 11, 12, 13, 14]),
            &[12],
            3,
            seed,
        )
        .expect("enough")
    };
    assert_eq!(first.segments[1].replicas, draw(0));
    assert_eq!(second.segments[1].replicas, draw(1));
    assert_eq!(
        second,
        switch_segment(&r, 1, 0, 1, &draw(1)).expect("switch"),
        "the same change, placed anew"
    );
}

#[test]
fn an_idle_replica_is_told_the_watermark_again_until_it_is_busy() {
    let mut p = producer(4, 8);
    let _ = p.append(entry(0));
    let _ = p.poll(0);
    for r in 0..3 {
        let _ = p.handle_ack(r, 0, 1, 5);
    }
    // Committed through 1 and idle: the watermark went alone at 5 ms.
    assert_eq!(p.poll_timeout(), Some(10_005));
    assert!(p.handle_timeout(10_004).is_empty(), "not yet");
    let again = p.handle_timeout(10_005);
    let told: Vec<usize> = again
        .iter()
        .filter_map(|a| match a {
            Action::Watermark {
                replica, commit: 1, ..
            } => Some(*replica),
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![0, 1, 2], "every idle replica hears it again");
    assert_eq!(p.poll_timeout(), Some(20_005));
    // A replica with an append in flight is not idle: its ack deadline
    // comes first, and no refresh goes to it.
    let _ = p.append(entry(1));
    let _ = p.poll(20_000);
    assert_eq!(p.poll_timeout(), Some(20_100));
}

fn sends_to(actions: &[Action], replica: usize) -> Vec<(u64, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Append {
                replica: r,
                first_offset,
                count,
                ..
            } if *r == replica => Some((*first_offset, *count)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lost_connection_is_made_again_and_resent_from_the_acked_length() {
    let mut p = producer(4, 1);
    for i in 0..3 {
        let _ = p.append(entry(i));
    }
    let _ = p.poll(0);
    let _ = p.handle_ack(1, 0, 1, 5);
    let lost = p.handle_connection_lost(1, 0, 10);
    assert_eq!(
        &lost[..],
        &[Action::Reconnect {
            replica: 1,
            node: 11,
            segment: 0
        }]
    );
    assert!(
        p.handle_connection_lost(1, 0, 11).is_empty(),
        "the other losses of that connection"
    );
    assert!(
        sends_to(&p.poll(12), 1).is_empty(),
        "nothing goes to a replica being reached again"
    );
    let back = p.handle_reconnected(1, 0, 20);
    assert_eq!(
        sends_to(&back, 1),
        vec![(1, 1), (2, 1)],
        "from its acked length"
    );
    assert_eq!(p.phase(), &Phase::Writing, "no switch");
}

#[test]
fn an_unreachable_replica_is_retried_then_failed_and_a_flapping_one_failed_at_once() {
    let seg = OpenSegment {
        id: 0,
        first_seq: 0,
        replicas: vec![10, 11, 12],
    };
    let patient = ProducerConfig {
        ack_timeout_ms: 1_000,
        ..cfg(4, 1)
    };
    let mut p = Producer::new(1, 1, seg, 0, patient);
    let _ = p.append(entry(0));
    let _ = p.poll(0);
    let _ = p.handle_ack(0, 0, 1, 5);
    let _ = p.handle_ack(1, 0, 1, 5);
    let _ = p.handle_connection_lost(2, 0, 10);
    assert!(p.handle_reconnect_failed(2, 0, 11).is_empty());
    assert_eq!(p.poll_timeout(), Some(11 + RECONNECT_PAUSE_MS));
    let retry = p.handle_timeout(11 + RECONNECT_PAUSE_MS);
    assert!(
        matches!(&retry[..], [Action::Reconnect { replica: 2, .. }]),
        "{retry:?}"
    );
    // Unreachable for an ack timeout: the segment switches.
    assert_eq!(p.poll_timeout(), Some(1_010));
    let out = p.handle_reconnect_failed(2, 0, 1_010);
    assert!(matches!(p.phase(), Phase::Switching { .. }), "{out:?}");

    let mut p = producer(4, 1);
    let _ = p.append(entry(0));
    let _ = p.poll(0);
    let _ = p.handle_connection_lost(0, 0, 10);
    let _ = p.handle_reconnected(0, 0, 15);
    let _ = p.handle_connection_lost(0, 0, 50);
    assert!(
        matches!(p.phase(), Phase::Switching { .. }),
        "lost again within an ack timeout of the last reconnect"
    );
}
