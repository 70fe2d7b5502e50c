use super::*;

const GRACE: u64 = 1_000;

fn view(id: NodeId, zone: &str, alive: bool) -> NodeView {
    NodeView {
        id,
        zone: zone.into(),
        alive,
        writable: alive,
        mode: NodeMode::Active,
    }
}

/// Nodes 1-6 in zones a, b, c (two each), node 3 (zone c) dead.
fn cluster(now: u64) -> LostNodes {
    let mut nodes = LostNodes::new(GRACE);
    nodes.observe(
        now,
        &[
            view(1, "a", true),
            view(2, "b", true),
            view(3, "c", false),
            view(4, "a", true),
            view(5, "b", true),
            view(6, "c", true),
        ],
    );
    nodes
}

fn seg(id: u64, replicas: &[NodeId], sealed: Option<u64>) -> SegmentMeta {
    SegmentMeta {
        id,
        replicas: replicas.to_vec(),
        first_seq: id * 100,
        epoch: 1,
        sealed_len: sealed,
    }
}

fn record(segments: Vec<SegmentMeta>) -> LogMeta {
    LogMeta {
        log_id: 9,
        epoch: 1,
        trim_seq: 0,
        segments,
        deleting: Vec::new(),
        deleted: false,
    }
}

#[test]
fn a_node_is_lost_only_after_the_grace_period_and_found_again_at_once() {
    let mut nodes = cluster(0);
    assert!(!nodes.is_lost(3, GRACE - 1));
    assert!(nodes.is_lost(3, GRACE));
    // Never listed: dead from the first question.
    assert!(!nodes.is_lost(42, 5_000));
    assert!(nodes.is_lost(42, 5_000 + GRACE));
    // Back: not lost, and a new death starts a new grace period.
    nodes.observe(2 * GRACE, &[view(3, "c", true)]);
    assert!(!nodes.is_lost(3, 2 * GRACE));
    nodes.observe(3 * GRACE, &[view(3, "c", false)]);
    assert!(!nodes.is_lost(3, 4 * GRACE - 1));
    assert!(nodes.is_lost(3, 4 * GRACE));
}

#[test]
fn a_leaving_node_is_lost_at_once_yet_a_source_and_its_return_cancels_nothing() {
    let leaving = NodeView {
        writable: false,
        mode: NodeMode::Leaving,
        ..view(2, "b", true)
    };
    let views = [
        view(1, "a", true),
        leaving.clone(),
        view(3, "c", true),
        view(4, "a", true),
        view(5, "b", true),
        view(6, "c", true),
    ];
    let mut nodes = LostNodes::new(GRACE);
    nodes.observe(0, &views);
    // No grace: lost at the first look, while alive.
    assert!(nodes.is_lost(2, 0));
    assert!(!nodes.is_lost(1, 0));
    let r = record(vec![seg(0, &[1, 2, 3], Some(10)), seg(1, &[2, 4, 6], None)]);
    let mut planned = Vec::new();
    for me in 1..=6 {
        for task in plan(&r, me, &mut nodes, 0) {
            planned.push((me, task));
        }
    }
    // The sealed segment moves; the open one is its producer's to switch.
    assert_eq!(planned.len(), 1, "{planned:?}");
    let (me, task) = &planned[0];
    assert_eq!(*me, 5, "the one writable node of zone b outside the set");
    assert_eq!(task.lost, 2);
    assert!(
        task.sources.contains(&2),
        "the leaving node is still read from: {:?}",
        task.sources
    );
    // A leaving node alive is no reason to cancel; an active one is.
    assert!(!lost_node_back(&views, 2));
    assert!(lost_node_back(&[view(2, "b", true)], 2));
    assert!(!lost_node_back(&[view(2, "b", false)], 2));
    // Leaving makes scans due every interval until the node is removed.
    let mut schedule = ScanSchedule::new();
    schedule.scanned(0, 0);
    assert!(!schedule.due(REPAIR_SCAN_INTERVAL_MS - 1, &nodes));
    assert!(schedule.due(REPAIR_SCAN_INTERVAL_MS, &nodes));
    let removed = NodeView {
        alive: false,
        mode: NodeMode::Removed,
        ..leaving
    };
    let mut after = views.clone();
    after[1] = removed;
    nodes.observe(1, &after);
    assert!(nodes.is_lost(2, 1), "a removed node is lost at once too");
    // Nobody leaving: back to the slow schedule.
    schedule.scanned(10_000, 0);
    assert!(!schedule.due(10_000 + REPAIR_SCAN_INTERVAL_MS, &nodes));
}

#[test]
fn exactly_one_node_is_picked_and_it_keeps_three_zones() {
    let r = record(vec![
        seg(0, &[1, 2, 3], Some(10)),
        seg(1, &[1, 2, 4], Some(0)),
        seg(2, &[1, 2, 3], None),
    ]);
    for now in [0, GRACE - 1] {
        for me in 1..=6 {
            assert!(plan(&r, me, &mut cluster(0), now).is_empty());
        }
    }
    let mut planned = Vec::new();
    for me in 1..=6 {
        for task in plan(&r, me, &mut cluster(0), GRACE) {
            planned.push((me, task));
        }
    }
    // Segment 0 only: segment 1 lost nothing, segment 2 is open.
    assert_eq!(planned.len(), 1, "{planned:?}");
    let (me, task) = &planned[0];
    assert_eq!(*me, 6, "the one node in zone c that is not a replica");
    assert_eq!((task.segment.id, task.lost, task.sealed_len), (0, 3, 10));
    assert_eq!(task.sources, vec![1, 2]);
}

#[test]
fn without_a_fresh_zone_any_writable_node_will_do_and_full_ones_never() {
    let mut nodes = LostNodes::new(GRACE);
    let mut full = view(5, "a", true);
    full.writable = false;
    nodes.observe(
        0,
        &[
            view(1, "a", true),
            view(2, "a", true),
            view(3, "a", false),
            view(4, "a", true),
            full,
        ],
    );
    let s = seg(0, &[1, 2, 3], Some(4));
    assert_eq!(repair_target(9, &s, 3, &nodes), Some(4));
    let mut nodes = LostNodes::new(GRACE);
    nodes.observe(
        0,
        &[view(1, "a", true), view(2, "a", true), view(3, "a", false)],
    );
    assert_eq!(repair_target(9, &s, 3, &nodes), None);
}

#[test]
fn no_source_no_task() {
    let mut nodes = LostNodes::new(GRACE);
    nodes.observe(
        0,
        &[
            view(1, "a", false),
            view(2, "b", false),
            view(3, "c", false),
            view(4, "a", true),
        ],
    );
    let r = record(vec![seg(0, &[1, 2, 3], Some(5))]);
    assert!(plan(&r, 4, &mut nodes, GRACE).is_empty());
    let short = shortfalls(&r, &mut nodes, GRACE);
    assert_eq!(short.len(), 1);
    assert!(short[0].alive.is_empty());
}

fn task() -> RepairTask {
    RepairTask {
        log_id: 9,
        segment: seg(0, &[1, 2, 3], Some(10)),
        sealed_len: 10,
        lost: 3,
        sources: vec![1, 2],
    }
}

#[test]
fn a_job_copies_seals_and_only_then_publishes() {
    let mut job = RepairJob::new(task(), 6);
    assert_eq!(job.on_probed(None), JobAction::Copy { from: 0, limit: 10 });
    assert_eq!(job.on_sent(4), None);
    assert_eq!(job.on_durable(4), JobAction::Copy { from: 4, limit: 10 });
    // Everything sent is not everything durable.
    assert_eq!(job.on_sent(10), None);
    assert_eq!(job.on_durable(10), JobAction::Seal { len: 10 });
    assert_eq!(*job.state(), JobState::Sealing);
    assert_eq!(job.on_sealed(10), JobAction::Publish);
    let r = record(vec![seg(0, &[1, 2, 3], Some(10)), seg(1, &[1, 2, 4], None)]);
    let next = job.publish(&r).expect("applies");
    assert_eq!(next.segments[0].replicas, vec![1, 2, 6]);
    assert_eq!(next.segments[1], r.segments[1]);
    job.on_published();
    assert_eq!(*job.state(), JobState::Done);
}

#[test]
fn a_job_resumes_from_what_the_copy_holds() {
    let mut job = RepairJob::new(task(), 6);
    assert_eq!(
        job.on_probed(Some((7, None))),
        JobAction::Copy { from: 7, limit: 10 }
    );
    let mut job = RepairJob::new(task(), 6);
    assert_eq!(job.on_probed(Some((10, None))), JobAction::Seal { len: 10 });
    let mut job = RepairJob::new(task(), 6);
    assert_eq!(job.on_probed(Some((10, Some(10)))), JobAction::Publish);
    let mut job = RepairJob::new(task(), 6);
    assert_eq!(job.on_probed(Some((3, Some(3)))), JobAction::Stop);
    assert!(matches!(job.state(), JobState::Abandoned { .. }));
}

#[test]
fn publishing_applies_only_to_the_record_it_was_made_for() {
    let mut job = RepairJob::new(task(), 6);
    let _ = job.on_probed(Some((10, Some(10))));
    let stale = |segments| job.publish(&record(segments)).expect_err("stale");
    assert_eq!(
        stale(vec![seg(1, &[1, 2, 4], None)]),
        Stale::Gone { segment: 0 }
    );
    assert!(matches!(
        stale(vec![seg(0, &[1, 2, 3], Some(9))]),
        Stale::OtherSeal { .. }
    ));
    assert!(matches!(
        stale(vec![seg(0, &[1, 2, 5], Some(10))]),
        Stale::LostReplaced { lost: 3, .. }
    ));
    assert!(matches!(
        stale(vec![seg(0, &[6, 2, 3], Some(10))]),
        Stale::AlreadyReplica { me: 6, .. }
    ));
}

#[test]
#[should_panic(expected = "published before the copy sealed")]
fn publishing_before_the_seal_answer_is_a_bug() {
    let mut job = RepairJob::new(task(), 6);
    let _ = job.on_probed(None);
    let _ = job.publish(&record(vec![seg(0, &[1, 2, 3], Some(10))]));
}

#[test]
fn a_refill_copies_and_seals_but_publishes_nothing() {
    let mut nodes = cluster(0);
    let r = record(vec![
        seg(0, &[1, 2, 3], Some(10)),
        seg(1, &[1, 2, 4], Some(5)),
        seg(2, &[2, 4, 5], Some(3)),
        seg(3, &[1, 2, 4], None),
    ]);
    // Node 4 replaces a lost node 4: its sealed segments 1 and 2.
    nodes.observe(
        0,
        &[
            view(1, "a", true),
            view(2, "b", true),
            view(4, "a", true),
            view(5, "b", true),
        ],
    );
    let tasks = refills(&r, 4, &nodes);
    let ids: Vec<u64> = tasks.iter().map(|t| t.segment.id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(tasks[0].sources, vec![1, 2]);
    let mut job = RepairJob::refill(tasks[0].clone(), 4);
    assert_eq!(job.on_probed(None), JobAction::Copy { from: 0, limit: 5 });
    assert_eq!(job.on_sent(5), None);
    assert_eq!(job.on_durable(5), JobAction::Seal { len: 5 });
    assert_eq!(job.on_sealed(5), JobAction::Stop);
    assert_eq!(*job.state(), JobState::Done);
    // A copy that is there already: nothing to do.
    let mut job = RepairJob::refill(tasks[1].clone(), 4);
    assert_eq!(job.on_probed(Some((3, Some(3)))), JobAction::Stop);
    assert_eq!(*job.state(), JobState::Done);
}

#[test]
fn a_copy_short_of_its_seal_is_healed_from_where_it_stops() {
    let mut nodes = cluster(0);
    let r = record(vec![
        seg(0, &[1, 2, 4], Some(10)),
        seg(1, &[1, 2, 3], Some(5)),
        seg(2, &[1, 2, 4], None),
    ]);
    let task = heal_task(&r, 4, 0, &nodes).expect("a heal of segment 0");
    assert_eq!((task.lost, task.sources.clone()), (4, vec![1, 2]));
    assert_eq!(heal_task(&r, 4, 1, &nodes), None, "not a replica any more");
    assert_eq!(heal_task(&r, 4, 2, &nodes), None, "open: the producer's");
    assert_eq!(heal_task(&r, 4, 7, &nodes), None, "trimmed");
    nodes.observe(
        0,
        &[view(1, "a", false), view(2, "b", false), view(4, "a", true)],
    );
    assert_eq!(heal_task(&r, 4, 0, &nodes), None, "no source alive");

    let mut job = RepairJob::refill(task, 4);
    assert_eq!(
        job.on_probed(Some((6, Some(10)))),
        JobAction::Copy { from: 6, limit: 10 }
    );
    assert_eq!(job.on_durable(10), JobAction::Seal { len: 10 });
    assert_eq!(job.on_sealed(10), JobAction::Stop);
    assert_eq!(*job.state(), JobState::Done);
    // A new copy sealed short (a seal learnt too early) is not published
    // until it holds everything.
    let mut job = RepairJob::new(self::task(), 6);
    assert_eq!(
        job.on_probed(Some((4, Some(10)))),
        JobAction::Copy { from: 4, limit: 10 }
    );
}

#[test]
fn scans_come_when_a_node_is_lost_while_work_is_left_and_else_rarely() {
    let nodes = cluster(0);
    let mut sched = ScanSchedule::new();
    assert!(sched.due(0, &nodes), "the first scan at once");
    sched.scanned(0, 0);
    // Node 3 died at 0: lost at GRACE, and a scan is due then, not before.
    assert!(!sched.due(GRACE - 1, &nodes));
    assert!(sched.due(GRACE, &nodes));
    sched.scanned(GRACE, 2);
    // Work found: again after the short interval.
    assert!(!sched.due(GRACE + REPAIR_SCAN_INTERVAL_MS - 1, &nodes));
    assert!(sched.due(GRACE + REPAIR_SCAN_INTERVAL_MS, &nodes));
    sched.scanned(GRACE + REPAIR_SCAN_INTERVAL_MS, 0);
    // Nothing left: only the full interval.
    let t = GRACE + REPAIR_SCAN_INTERVAL_MS;
    assert!(!sched.due(t + REPAIR_FULL_SCAN_INTERVAL_MS - 1, &nodes));
    assert!(sched.due(t + REPAIR_FULL_SCAN_INTERVAL_MS, &nodes));
    // A node that vanishes from the list (its registration deleted) dies
    // then, and is lost a grace period later.
    let mut fresh = LostNodes::new(GRACE);
    fresh.observe(0, &[view(7, "a", true)]);
    fresh.observe(10, &[]);
    assert!(!fresh.is_lost(7, 10 + GRACE - 1));
    assert!(fresh.is_lost(7, 10 + GRACE));
    assert!(fresh.newly_lost(10, 10 + GRACE));
}

#[test]
fn chunks_follow_the_rate_within_the_read_limits() {
    assert_eq!(repair_chunk_bytes(1), REPAIR_CHUNK_BYTES_MIN);
    assert_eq!(repair_chunk_bytes(8 * 1024 * 1024), 1024 * 1024);
    assert_eq!(
        repair_chunk_bytes(u64::MAX),
        trilog_wire::limits::READ_BYTES_MAX
    );
}
