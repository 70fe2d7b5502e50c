//! The checks every metadata store must pass, as functions over
//! `&dyn MetaStore`, so the embedded store (`meta_embedded.rs`) and etcd
//! (`meta_etcd.rs`) run the very same suite.
//!
//! Nothing here sleeps and hopes: waits are conditions polled against a
//! deadline, and the only timing checked is that a watch with nothing to
//! see waits at least its wait.

#![allow(dead_code)]

use std::time::Duration;

use tokio::time::Instant;
use trilog_meta::{CasOutcome, MetaError, MetaStore, Versioned};
use trilog_wire::meta::{LogMeta, NodeInfo, NodeMode, NodeModeEntry, SegmentMeta};

/// Generous: nothing here waits for it unless the test says so.
pub const TEST_WAIT: Duration = Duration::from_secs(60);

pub fn record(log_id: u64, epoch: u64, segments: Vec<SegmentMeta>) -> LogMeta {
    LogMeta {
        log_id,
        epoch,
        trim_seq: 0,
        segments,
        deleting: Vec::new(),
        deleted: false,
    }
}

pub fn segment(id: u64, first_seq: u64, sealed_len: Option<u64>) -> SegmentMeta {
    SegmentMeta {
        id,
        replicas: vec![1, 2, 3],
        first_seq,
        epoch: 1,
        sealed_len,
    }
}

pub fn node(node_id: u64) -> NodeInfo {
    NodeInfo {
        node_id,
        host: "127.0.0.1".into(),
        shard_ports: vec![9001],
        zone: "a".into(),
        capacity_bytes: 1 << 20,
        incarnation: node_id + 1000,
        bytes_used: 0,
        bytes_free: 0,
        full: false,
    }
}

async fn applied(meta: &dyn MetaStore, log_id: u64, expected: u64, r: LogMeta) -> u64 {
    match meta.cas_log(log_id, expected, r).await.expect("cas") {
        CasOutcome::Applied { version } => version,
        other => panic!("cas of log {log_id} at {expected} did not apply: {other:?}"),
    }
}

/// Absent is version 0; create only if absent; a conflict carries what is
/// there; versions grow; an invalid record is refused and not stored.
pub async fn create_conflict_update(meta: &dyn MetaStore) {
    let absent = Versioned {
        version: 0,
        record: None,
    };
    assert_eq!(meta.get_log(1).await.expect("get"), absent);

    let first = record(1, 1, vec![segment(0, 0, None)]);
    let v1 = applied(meta, 1, 0, first.clone()).await;
    assert!(v1 > 0);
    let again = meta.cas_log(1, 0, first.clone()).await.expect("cas");
    assert_eq!(
        again,
        CasOutcome::Conflict(Versioned {
            version: v1,
            record: Some(first.clone())
        })
    );

    let second = record(1, 2, vec![segment(0, 0, Some(3)), segment(1, 3, None)]);
    let v2 = applied(meta, 1, v1, second.clone()).await;
    assert!(v2 > v1);
    let stale = meta.cas_log(1, v1, first).await.expect("cas");
    let now = Versioned {
        version: v2,
        record: Some(second),
    };
    assert_eq!(stale, CasOutcome::Conflict(now.clone()));
    assert_eq!(meta.get_log(1).await.expect("get"), now);

    // Expecting a version of an absent log conflicts with (0, None).
    let missing = meta.cas_log(5, 3, record(5, 1, vec![])).await.expect("cas");
    assert_eq!(missing, CasOutcome::Conflict(absent.clone()));
    assert_eq!(meta.list_logs().await.expect("list"), vec![1]);

    // Versions come from one counter across logs: a new log's is above.
    let v3 = applied(meta, 2, 0, record(2, 1, vec![])).await;
    assert!(v3 > v2);
    assert_eq!(meta.list_logs().await.expect("list"), vec![1, 2]);

    // A record that breaks the shape of a log is refused, and not stored.
    let broken = record(3, 1, vec![segment(0, 0, None), segment(1, 0, None)]);
    let refused = meta.cas_log(3, 0, broken).await;
    assert!(
        matches!(
            refused,
            Err(MetaError::Server(_) | MetaError::InvalidRecord { log_id: 3, .. })
        ),
        "{refused:?}"
    );
    assert_eq!(meta.get_log(3).await.expect("get"), absent);
}

/// A watch is woken by a CAS from elsewhere, with the new state.
pub async fn watch_woken_by_another_cas(meta: &dyn MetaStore) {
    let v1 = applied(meta, 3, 0, record(3, 1, vec![])).await;
    let started = Instant::now();
    let next = record(3, 2, vec![]);
    let (seen, cas) = tokio::join!(
        meta.watch_log(3, v1, TEST_WAIT),
        meta.cas_log(3, v1, next.clone())
    );
    let CasOutcome::Applied { version: v2 } = cas.expect("cas") else {
        panic!("update did not apply");
    };
    assert_eq!(
        seen.expect("watch"),
        Versioned {
            version: v2,
            record: Some(next)
        }
    );
    assert!(
        started.elapsed() < TEST_WAIT,
        "the watch waited out its wait"
    );

    // A watch that knows an old version returns the current one at once.
    let seen = meta.watch_log(3, v1, TEST_WAIT).await.expect("watch");
    assert_eq!(seen.version, v2);
}

/// With nothing changing, a watch returns the same version after its wait
/// (also for an absent log).
pub async fn watch_times_out(meta: &dyn MetaStore) {
    let v1 = applied(meta, 4, 0, record(4, 1, vec![])).await;
    for (log_id, known) in [(4, v1), (40, 0)] {
        let wait = Duration::from_millis(200);
        let started = Instant::now();
        let same = meta.watch_log(log_id, known, wait).await.expect("watch");
        assert_eq!(same.version, known);
        assert!(started.elapsed() >= wait, "returned before its wait");
    }
}

/// A registered node is listed alive with at most its lease left; a lease
/// of zero is refused; re-registering updates the info.
pub async fn register_and_list_nodes(meta: &dyn MetaStore) {
    let info = node(11);
    meta.register_node(info.clone(), Duration::from_secs(30))
        .await
        .expect("register");
    let nodes = meta.list_nodes(false).await.expect("list");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].info, info);
    assert!(nodes[0].alive);
    assert!(nodes[0].lease_remaining_ms > 0 && nodes[0].lease_remaining_ms <= 30_000);
    let zero = meta.register_node(info.clone(), Duration::ZERO).await;
    assert!(
        matches!(zero, Err(MetaError::InvalidArgument(_))),
        "{zero:?}"
    );

    let mut moved = info;
    moved.host = "10.0.0.2".into();
    meta.register_node(moved.clone(), Duration::from_secs(30))
        .await
        .expect("renew");
    meta.register_node(node(12), Duration::from_secs(30))
        .await
        .expect("register");
    let nodes = meta.list_nodes(false).await.expect("list");
    let ids: Vec<u64> = nodes.iter().map(|n| n.info.node_id).collect();
    assert_eq!(ids, vec![11, 12]);
    assert_eq!(nodes[0].info, moved);
}

/// A node that stops renewing is, once its lease is over, no longer listed
/// alive, and is listed dead with `include_dead`.
pub async fn lease_expires(meta: &dyn MetaStore, lease: Duration) {
    meta.register_node(node(21), Duration::from_secs(60))
        .await
        .expect("register");
    meta.register_node(node(22), lease).await.expect("register");
    let deadline = Instant::now() + TEST_WAIT;
    loop {
        let alive = meta.list_nodes(false).await.expect("list");
        if alive.iter().all(|n| n.info.node_id != 22) {
            assert!(alive.iter().any(|n| n.info.node_id == 21));
            break;
        }
        assert!(Instant::now() < deadline, "node 22 still alive: {alive:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = meta.list_nodes(true).await.expect("list");
    let dead: Vec<_> = all.iter().filter(|n| n.info.node_id == 22).collect();
    assert_eq!(dead.len(), 1, "{all:?}");
    assert!(!dead[0].alive);
    assert_eq!(dead[0].lease_remaining_ms, 0);
    assert!(all.iter().any(|n| n.info.node_id == 21 && n.alive));
}

/// A node that stops on purpose ends its lease at once: listed dead right
/// after, with a minute of lease unused; only its own incarnation can do
/// it, and the id is free for a new process at once.
pub async fn deregistration_ends_the_lease_at_once(meta: &dyn MetaStore) {
    let lease = Duration::from_secs(60);
    let (n51, n52) = (node(51), node(52));
    meta.register_node(n51.clone(), lease)
        .await
        .expect("register");
    meta.register_node(n52.clone(), lease)
        .await
        .expect("register");
    let stranger = meta
        .deregister_node(51, n51.incarnation + 1)
        .await
        .expect("deregister");
    assert!(!stranger, "another incarnation ended node 51's lease");
    assert!(!meta.deregister_node(59, 1).await.expect("deregister"));
    let alive = meta.list_nodes(false).await.expect("list");
    assert!(alive.iter().any(|n| n.info.node_id == 51), "{alive:?}");
    assert!(meta
        .deregister_node(51, n51.incarnation)
        .await
        .expect("deregister"));
    // No waiting: the very next read has it dead.
    let all = meta.list_nodes(true).await.expect("list");
    let of = |id: u64| all.iter().find(|n| n.info.node_id == id);
    let dead = of(51).expect("node 51 listed among the dead");
    assert!(!dead.alive, "{dead:?}");
    assert_eq!(dead.lease_remaining_ms, 0);
    assert!(of(52).is_some_and(|n| n.alive), "{all:?}");
    // Nothing left to end; the id takes a new incarnation at once.
    assert!(!meta
        .deregister_node(51, n51.incarnation)
        .await
        .expect("deregister"));
    let mut next = node(51);
    next.incarnation += 7;
    meta.register_node(next, lease)
        .await
        .expect("the id is free for a new process");
}

/// The cluster id is created once: every call returns the same non-zero id.
pub async fn cluster_id_is_created_once(meta: &dyn MetaStore) {
    let first = meta.cluster_id().await.expect("cluster id");
    assert_ne!(first, 0);
    for _ in 0..3 {
        assert_eq!(meta.cluster_id().await.expect("cluster id"), first);
    }
}

/// A live node id is refused to another incarnation, with the holder's
/// address and time left, and the holder keeps its registration; the
/// holder itself renews; once its lease is over the newcomer takes the id.
pub async fn a_live_id_is_refused_to_another_incarnation(meta: &dyn MetaStore, lease: Duration) {
    let holder = node(41);
    meta.register_node(holder.clone(), lease)
        .await
        .expect("register");
    let mut impostor = node(41);
    impostor.incarnation += 1;
    impostor.shard_ports = vec![9999];
    let refused = meta.register_node(impostor.clone(), lease).await;
    match &refused {
        Err(MetaError::NodeIdTaken(taken)) => {
            assert_eq!(taken.node_id, 41);
            assert_eq!(taken.holder, "127.0.0.1:9001");
            assert!(taken.lease_remaining_ms <= lease.as_millis() as u64);
            let text = refused.as_ref().expect_err("refused").to_string();
            assert!(
                text.contains("node id 41 is registered by another live process at 127.0.0.1:9001"),
                "{text}"
            );
        }
        other => panic!("the impostor was not refused: {other:?}"),
    }
    let alive = meta.list_nodes(false).await.expect("list");
    let listed: Vec<_> = alive.iter().filter(|n| n.info.node_id == 41).collect();
    assert_eq!(listed.len(), 1, "{alive:?}");
    assert_eq!(listed[0].info, holder, "the holder keeps its registration");
    // The holder renews, from another address too (a restart).
    let mut moved = holder.clone();
    moved.shard_ports = vec![9002];
    meta.register_node(moved, lease).await.expect("renew");
    // Once the holder stops renewing, its lease ends and the id is free.
    let deadline = Instant::now() + TEST_WAIT;
    loop {
        match meta.register_node(impostor.clone(), lease).await {
            Ok(_) => break,
            Err(MetaError::NodeIdTaken(_)) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "node 41's lease never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive = meta.list_nodes(false).await.expect("list");
    assert!(alive.iter().any(|n| n.info == impostor), "{alive:?}");
}

/// Node modes: active unless set; a registration answers the mode and
/// `list_nodes` carries it; back to active is allowed while leaving;
/// removed is final, drops the live registration at once, and refuses
/// every later registration of the id (any incarnation) with its own
/// error.
pub async fn node_modes_and_removal(meta: &dyn MetaStore, lease: Duration) {
    assert_eq!(meta.node_modes().await.expect("modes"), vec![]);
    let (n7, n8) = (node(7), node(8));
    assert_eq!(
        meta.register_node(n7.clone(), lease)
            .await
            .expect("register"),
        NodeMode::Active
    );
    meta.register_node(n8.clone(), lease)
        .await
        .expect("register");
    let leaving = NodeModeEntry {
        node_id: 7,
        mode: NodeMode::Leaving,
    };
    assert_eq!(
        meta.set_node_mode(7, NodeMode::Leaving).await.expect("set"),
        vec![leaving]
    );
    // Idempotent.
    assert_eq!(
        meta.set_node_mode(7, NodeMode::Leaving).await.expect("set"),
        vec![leaving]
    );
    assert_eq!(
        meta.register_node(n7.clone(), lease).await.expect("renew"),
        NodeMode::Leaving
    );
    let listed = meta.list_nodes(false).await.expect("list");
    let mode_of = |id: u64| listed.iter().find(|n| n.info.node_id == id).map(|n| n.mode);
    assert_eq!(mode_of(7), Some(NodeMode::Leaving));
    assert_eq!(mode_of(8), Some(NodeMode::Active));
    // Called off: active again.
    assert_eq!(
        meta.set_node_mode(7, NodeMode::Active).await.expect("set"),
        vec![]
    );
    assert_eq!(
        meta.register_node(n7.clone(), lease).await.expect("renew"),
        NodeMode::Active
    );
    // Removed: at once dead, never again registered, never un-removed.
    meta.set_node_mode(7, NodeMode::Leaving).await.expect("set");
    let removed = NodeModeEntry {
        node_id: 7,
        mode: NodeMode::Removed,
    };
    assert_eq!(
        meta.set_node_mode(7, NodeMode::Removed).await.expect("set"),
        vec![removed]
    );
    let alive = meta.list_nodes(false).await.expect("list");
    assert!(
        alive.iter().all(|n| n.info.node_id != 7),
        "a removed node is not alive: {alive:?}"
    );
    match meta.register_node(n7.clone(), lease).await {
        Err(MetaError::NodeRemoved { node_id: 7 }) => {}
        other => panic!("a removed id registered: {other:?}"),
    }
    let mut other_life = n7.clone();
    other_life.incarnation += 1;
    assert!(matches!(
        meta.register_node(other_life, lease).await,
        Err(MetaError::NodeRemoved { node_id: 7 })
    ));
    for mode in [NodeMode::Active, NodeMode::Leaving] {
        let refused = meta.set_node_mode(7, mode).await;
        let text = refused.expect_err("removed is final").to_string();
        assert!(text.contains("node id 7 is removed"), "{text}");
    }
    assert_eq!(meta.node_modes().await.expect("modes"), vec![removed]);
    // Node 8 was never touched.
    assert_eq!(
        meta.register_node(n8, lease).await.expect("renew"),
        NodeMode::Active
    );
}
