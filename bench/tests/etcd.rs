//! The etcd baseline on a real 3-member etcd cluster (Debian's etcd-server):
//! every put the load generator counts is in etcd afterwards.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::GetOptions;
use trilog_bench::etcd::{EtcdCluster, EtcdTarget};
use trilog_bench::load::{run, LoadConfig, Mode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counted_put_is_in_etcd() {
    let cluster = EtcdCluster::start(3)
        .await
        .expect("etcd cluster (apt-get install etcd-server)");
    let target = Arc::new(EtcdTarget::new(cluster.client().await.expect("client")));
    let result = run(
        target,
        LoadConfig {
            mode: Mode::Closed { writers: 4 },
            payload_bytes: 100,
            batch: 2,
            duration: Duration::from_millis(700),
            warmup: Duration::ZERO,
            progress: false,
        },
    )
    .await;
    assert_eq!(result.errors, 0);
    assert!(result.ops > 0);
    let mut c = cluster.client().await.expect("client");
    let got = c
        .get(
            "/trilog-bench/log/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count");
    // Appends still in flight when the run ended may have landed too.
    assert!(
        got.count() as u64 >= result.entries,
        "{} < {}",
        got.count(),
        result.entries
    );
    assert!(got.count() as u64 <= result.entries + 4 * 2);
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
