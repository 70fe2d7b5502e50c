//! The etcd baseline on a real 3-member etcd cluster (Debian's etcd-server):
//! every put the log acknowledges is in etcd afterwards, and nothing else.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::GetOptions;
use trilog_baselines::etcd::{EtcdCluster, EtcdLog, LOG_KEY_PREFIX};
use trilog_testkit::payload::make_payload;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counted_put_is_in_etcd() {
    const WRITERS: u64 = 4;
    const BATCH: u64 = 2;
    let cluster = EtcdCluster::start(3)
        .await
        .expect("etcd cluster (apt-get install etcd-server)");
    let log = Arc::new(EtcdLog::new(cluster.client().await.expect("client")));
    // Writers append batches for a while, as the load generator does, and
    // count what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let entries = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (log, stop, entries) = (log.clone(), stop.clone(), entries.clone());
        tasks.spawn(async move {
            let mut id = w << 32;
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..BATCH).map(|i| make_payload(id + i, 100)).collect();
                log.append_batch(batch).await.expect("append");
                entries.fetch_add(BATCH, Ordering::Relaxed);
                id += BATCH;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(t) = tasks.join_next().await {
        t.expect("writer");
    }
    let entries = entries.load(Ordering::Relaxed);
    assert!(entries > 0);
    let mut c = cluster.client().await.expect("client");
    let got = c
        .get(
            LOG_KEY_PREFIX,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count");
    // Every writer finished its last batch: exactly what was counted.
    assert_eq!(got.count() as u64, entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_round_trip_slows_every_put() {
    let one_way = Duration::from_millis(3);
    let cluster = EtcdCluster::start_with_delay(3, Some(one_way))
        .await
        .expect("etcd cluster behind delay proxies");
    let mut c = cluster.client().await.expect("client");
    for i in 0..5 {
        let t0 = std::time::Instant::now();
        c.put(format!("/k/{i}"), "v", None).await.expect("put");
        // A put crosses at least the client's round trip to the leader and
        // the leader's to a follower: a lower bound, so no slow machine can
        // break it.
        assert!(t0.elapsed() >= one_way * 4, "{:?}", t0.elapsed());
    }
}
