//! The producer leaving a slow replica (the `slow` module).

use super::*;
use crate::meta_call::{CasAnswer, MetaCall, RecordAnswer};
use crate::metadata::{open_for_write, LogMeta};
use crate::placement::Candidate;

/// Slow switching on, a floor of 4 ms, one strike, a long ack timeout.
fn cfg() -> ProducerConfig {
    ProducerConfig {
        slow_strikes: 1,
        window: 8,
        batch_entries_max: 1,
        ack_timeout_ms: 2_000,
        slow_lag_floor_ms: 4,
        slow_bench_ms: 60_000,
        view_refresh_ms: 10_000,
        ..ProducerConfig::default()
    }
}

fn record() -> LogMeta {
    open_for_write(None, 1, &[10, 11, 12]).expect("a new log")
}

fn alive(ids: &[NodeId]) -> Vec<Candidate> {
    Candidate::all_in_one_zone(ids)
}

/// A producer on segment 0 (nodes 10, 11, 12) whose first read for the
/// view came back with `nodes` alive.
fn producer(nodes: &[NodeId]) -> Producer {
    producer_with(cfg(), nodes)
}

/// Segment 0 on nodes 10, 11, 12.
fn segment_0() -> OpenSegment {
    OpenSegment {
        id: 0,
        first_seq: 0,
        replicas: vec![10, 11, 12],
    }
}

/// [`producer`] with `cfg`.
fn producer_with(cfg: ProducerConfig, nodes: &[NodeId]) -> Producer {
    let mut p = Producer::new(1, 1, segment_0(), 0, cfg);
    let out = p.begin(0);
    assert!(
        out.contains(&Action::Meta(MetaCall::ReadRecord)),
        "the view is read at once: {out:?}"
    );
    let answer = RecordAnswer::Read {
        version: 1,
        record: Some(record()),
        alive: alive(nodes),
    };
    assert!(p.handle_record(answer, 0).is_empty());
    assert!(p.view().is_some());
    p
}

/// Entry 0 sent at `at - 100` and acked by every replica `ms` later (the
/// segment is created on each); entry 1 sent at `at`, acked by replicas 0
/// and 2 `ms` later; replica 1 silent.
fn lagging(p: &mut Producer, at: u64, ms: u64) {
    let _ = p.append(Entry::new(vec![0]));
    let _ = p.poll(at - 100);
    for r in 0..3 {
        let _ = p.handle_ack(r, 0, 1, at - 100 + ms);
    }
    let _ = p.append(Entry::new(vec![1]));
    let _ = p.poll(at);
    let _ = p.handle_ack(0, 0, 2, at + ms);
    let _ = p.handle_ack(2, 0, 2, at + ms);
}

#[test]
fn a_replica_holding_the_commit_back_is_left_after_the_limit_straight_by_cas() {
    let mut p = producer(&[10, 11, 12, 13]);
    lagging(&mut p, 100, 1);
    // Held up since 101; typical latency 1 ms, so the floor (4 ms) rules.
    assert_eq!(p.lag_limit_ms(), 4);
    assert_eq!(p.poll_timeout(), Some(105));
    assert!(p.handle_timeout(104).is_empty(), "not yet");
    let out = p.handle_timeout(105);
    let [Action::Meta(MetaCall::Cas {
        expected_version: 1,
        record: next,
    })] = &out[..]
    else {
        panic!("one CAS from the view, no read first: {out:?}");
    };
    assert_eq!(
        p.phase(),
        &Phase::Switching {
            segment: 0,
            seal_len: 1
        },
        "sealed at the commit, which the slow replica holds too"
    );
    let placed = &next.segments[1].replicas;
    assert!(!placed.contains(&11), "the slow node is left: {placed:?}");
    assert_eq!(p.benched(105), vec![11]);
    assert!(p.benched(105 + 60_000).is_empty(), "for a while only");
    let out = p.handle_cas(CasAnswer::Applied { version: 2 }, 106);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Append { segment: 1, .. })),
        "the entry goes to the next segment: {out:?}"
    );
    assert_eq!(p.view().map(|v| v.version), Some(2), "the view follows");
}

#[test]
fn a_replica_is_not_judged_before_its_first_answer_in_the_segment() {
    let mut p = producer(&[10, 11, 12, 13]);
    let _ = p.append(Entry::new(vec![0]));
    let _ = p.poll(100);
    let _ = p.handle_ack(0, 0, 1, 101);
    let _ = p.handle_ack(2, 0, 1, 101);
    // Replica 1 is creating the segment: only the ack timeout is set.
    assert_eq!(p.poll_timeout(), Some(2_100));
    assert!(p.handle_timeout(150).is_empty());
    assert_eq!(p.phase(), &Phase::Writing);
}

#[test]
fn one_stall_is_a_strike_and_the_next_one_within_the_window_leaves() {
    let two = ProducerConfig {
        slow_strikes: 2,
        ..cfg()
    };
    let mut p = producer_with(two, &[10, 11, 12, 13]);
    lagging(&mut p, 100, 1);
    assert_eq!(p.poll_timeout(), Some(105));
    assert!(p.handle_timeout(105).is_empty(), "a first strike only");
    assert_eq!(p.phase(), &Phase::Writing);
    assert_ne!(
        p.poll_timeout(),
        Some(105),
        "the episode does not fire again"
    );
    // It catches up, then lags again at the next append: the second
    // strike, within the window, leaves it.
    lag_again(&mut p, 120);
    let at = p.poll_timeout().expect("a lag timer");
    let out = p.handle_timeout(at);
    assert!(
        matches!(&out[..], [Action::Meta(MetaCall::Cas { .. })]),
        "{out:?}"
    );
    assert_eq!(p.benched(at), vec![11]);

    // Strikes further apart than the window start the count again.
    let mut p = producer_with(two, &[10, 11, 12, 13]);
    lagging(&mut p, 100, 1);
    assert!(p.handle_timeout(105).is_empty(), "a first strike");
    lag_again(&mut p, 105 + SLOW_STRIKE_WINDOW_MS + 100);
    let at = p.poll_timeout().expect("a lag timer");
    assert!(p.handle_timeout(at).is_empty(), "a first strike again");
    assert_eq!(p.phase(), &Phase::Writing);
}

/// After [`lagging`]: replica 1 catches up at 110, entry 2 is sent at
/// `at`, and replicas 0 and 2 ack it 1 ms later.
fn lag_again(p: &mut Producer, at: u64) {
    let _ = p.handle_ack(1, 0, 2, 110);
    let _ = p.append(Entry::new(vec![2]));
    let _ = p.poll(at);
    let _ = p.handle_ack(0, 0, 3, at + 1);
    let _ = p.handle_ack(2, 0, 3, at + 1);
}

#[test]
fn the_limit_grows_with_the_typical_latency() {
    let mut p = producer(&[10, 11, 12, 13]);
    lagging(&mut p, 100, 30);
    // 4 x 30 ms: a replica 50 ms behind under such a load is not slow.
    assert_eq!(p.lag_limit_ms(), 120);
    assert_eq!(p.poll_timeout(), Some(130 + 120));
    assert!(p.handle_timeout(180).is_empty());
    assert_eq!(p.phase(), &Phase::Writing);
}

#[test]
fn a_slow_replica_with_nowhere_else_to_go_is_kept_and_the_ack_timeout_remains() {
    let mut p = producer(&[10, 11, 12]);
    lagging(&mut p, 200, 1);
    // The lag timer fires, finds no node to go to and passes the episode
    // over: then only the watermark refresh of the idle replicas (at
    // 1,200) and the ack timeout are set.
    assert_eq!(p.poll_timeout(), Some(205));
    assert!(p.handle_timeout(205).is_empty());
    assert_eq!(p.phase(), &Phase::Writing, "slow, not failed");
    assert_eq!(p.poll_timeout(), Some(1_200));
    let _ = p.handle_timeout(1_200);
    assert_eq!(p.poll_timeout(), Some(2_200));
    let out = p.handle_timeout(2_200);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
}

#[test]
fn an_old_view_costs_a_read_and_a_conflict_reads_again_at_once() {
    let mut p = producer(&[10, 11, 12, 13]);
    // The view was read at 0; at 20,000 it is older than its refresh.
    lagging(&mut p, 20_000, 1);
    let out = p.handle_timeout(20_005);
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);

    let mut p = producer(&[10, 11, 12, 13]);
    lagging(&mut p, 100, 1);
    let out = p.handle_timeout(105);
    assert!(matches!(&out[..], [Action::Meta(MetaCall::Cas { .. })]));
    // Someone (a trim) changed the record: read it now, no pause.
    let out = p.handle_cas(
        CasAnswer::Conflict {
            version: 5,
            record: Some(record()),
        },
        106,
    );
    assert_eq!(&out[..], &[Action::Meta(MetaCall::ReadRecord)]);
    let out = p.handle_record(
        RecordAnswer::Read {
            version: 5,
            record: Some(record()),
            alive: alive(&[10, 11, 12, 13]),
        },
        107,
    );
    let [Action::Meta(MetaCall::Cas {
        expected_version: 5,
        record: next,
    })] = &out[..]
    else {
        panic!("proposed on the fresh record: {out:?}");
    };
    assert!(!next.segments[1].replicas.contains(&11));
}

#[test]
fn a_read_for_the_view_under_way_is_taken_by_a_failure_switch() {
    let mut p = producer(&[10, 11, 12, 13]);
    let _ = p.append(Entry::new(vec![0]));
    let _ = p.poll(10_000);
    let out = p.handle_timeout(10_000);
    assert!(
        out.contains(&Action::Meta(MetaCall::ReadRecord)),
        "refreshed: {out:?}"
    );
    // A replica fails while that read is out: no second call.
    let out = p.handle_replica_failure(0, 0, 10_001);
    assert!(out.is_empty(), "{out:?}");
    let out = p.handle_record(
        RecordAnswer::Read {
            version: 1,
            record: Some(record()),
            alive: alive(&[10, 11, 12, 13]),
        },
        10_002,
    );
    assert!(matches!(&out[..], [Action::Meta(MetaCall::Cas { .. })]));
}

#[test]
fn a_benched_node_is_avoided_by_a_later_switch_while_others_are_alive() {
    let mut p = producer(&[10, 11, 12, 13, 14]);
    lagging(&mut p, 100, 1);
    let out = p.handle_timeout(105);
    let next = match &out[..] {
        [Action::Meta(MetaCall::Cas { record, .. })] => record.clone(),
        other => panic!("{other:?}"),
    };
    let _ = p.handle_cas(CasAnswer::Applied { version: 2 }, 106);
    // A replica of the next segment fails: 11 stays out while it can.
    let _ = p.handle_replica_failure(0, 1, 200);
    let out = p.handle_record(
        RecordAnswer::Read {
            version: 2,
            record: Some(next),
            alive: alive(&[10, 11, 12, 13, 14]),
        },
        201,
    );
    let [Action::Meta(MetaCall::Cas { record, .. })] = &out[..] else {
        panic!("{out:?}");
    };
    let placed = &record.segments[2].replicas;
    assert!(!placed.contains(&11), "{placed:?}");
}

#[test]
fn the_standby_nodes_are_every_placement_a_slow_switch_could_make() {
    let mut p = producer(&[10, 11, 12, 13, 14]);
    let (next, nodes) = p.standby(50).expect("a view, writing, slow switching on");
    assert_eq!(next, 1, "a switch opens the next segment");
    // One placement without each replica in turn: each leaves one of 10,
    // 11, 12 out, and a spare (13 or 14) fills in.
    assert!(nodes.iter().all(|n| (10..=14).contains(n)), "{nodes:?}");
    assert!(nodes.iter().any(|n| *n >= 13), "a spare: {nodes:?}");
    assert!(
        nodes.len() > 3,
        "more than one placement's nodes: {nodes:?}"
    );
    // The switch made when replica 1 lags places within them.
    lagging(&mut p, 100, 1);
    let out = p.handle_timeout(105);
    let [Action::Meta(MetaCall::Cas { record: next, .. })] = &out[..] else {
        panic!("one CAS from the view: {out:?}");
    };
    let placed = &next.segments[1].replicas;
    assert!(
        placed.iter().all(|n| nodes.contains(n)),
        "{placed:?} within {nodes:?}"
    );
    assert_eq!(p.standby(105), None, "not while switching");
    let off = ProducerConfig {
        slow_lag_floor_ms: u64::MAX,
        ..cfg()
    };
    let mut p = Producer::new(1, 1, segment_0(), 0, off);
    let _ = p.begin(0);
    assert_eq!(p.standby(0), None, "slow switching off: no view read");
}

#[test]
fn a_sudden_overload_is_not_taken_for_a_slow_replica() {
    let mut p = producer(&[10, 11, 12, 13]);
    // Entry 0 acked in 1 ms by all: the smoothed latencies say 1 ms.
    // Entry 1, sent at 100, takes the two fast replicas 200 ms: the
    // cluster slowed as a whole, and replica 1 is merely last.
    let _ = p.append(Entry::new(vec![0]));
    let _ = p.poll(0);
    for r in 0..3 {
        let _ = p.handle_ack(r, 0, 1, 1);
    }
    let _ = p.append(Entry::new(vec![1]));
    let _ = p.poll(100);
    let _ = p.handle_ack(0, 0, 2, 300);
    let _ = p.handle_ack(2, 0, 2, 300);
    // Smoothed (1/8 per sample), the two fast replicas' latency is 26 ms.
    assert_eq!(p.lag_limit_ms(), 104, "the smoothed latencies trail");
    assert_eq!(
        p.poll_timeout(),
        Some(300 + 4 * 200),
        "held up since 300, allowed four times what the others took"
    );
    assert!(p.handle_timeout(1_099).is_empty(), "no strike yet");
    assert!(p.benched(1_099).is_empty());
}
