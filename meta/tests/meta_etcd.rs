//! The metadata store suite (`meta_suite`) against a real etcd: each test
//! starts a single-member etcd (`/usr/bin/etcd`, or `ETCD_BIN`) on free
//! loopback ports in a temporary directory, and kills it when done.

mod meta_suite;

mod etcd_proc;

use std::time::Duration;

use std::net::TcpListener;

use etcd_proc::Etcd;
use tokio::time::Instant;
use trilog_meta::{EtcdMeta, MetaStore};

/// Runs one suite check against a fresh etcd.
macro_rules! etcd_test {
    ($name:ident, $check:path) => {
        #[tokio::test]
        async fn $name() {
            let etcd = Etcd::start();
            let meta = etcd.meta().await;
            $check(&meta).await;
        }
    };
}

etcd_test!(
    etcd_create_conflict_update,
    meta_suite::create_conflict_update
);
etcd_test!(
    etcd_watch_woken_by_another_cas,
    meta_suite::watch_woken_by_another_cas
);
etcd_test!(etcd_watch_times_out, meta_suite::watch_times_out);
etcd_test!(
    etcd_register_and_list_nodes,
    meta_suite::register_and_list_nodes
);
etcd_test!(
    etcd_deregistration_ends_the_lease_at_once,
    meta_suite::deregistration_ends_the_lease_at_once
);

etcd_test!(
    etcd_cluster_id_is_created_once,
    meta_suite::cluster_id_is_created_once
);

/// The registration of a live node id by another incarnation is refused by
/// etcd's transaction on `nodes/owner/<id>`.
#[tokio::test]
async fn etcd_a_live_id_is_refused_to_another_incarnation() {
    let etcd = Etcd::start();
    let meta = etcd.meta().await;
    // etcd's shortest TTL is 1 s.
    meta_suite::a_live_id_is_refused_to_another_incarnation(&meta, Duration::from_secs(1)).await;
}

/// Node modes in etcd's `nodes/leaving/` and `nodes/removed/` keys; the
/// removal is guarded in the registration's own transaction.
#[tokio::test]
async fn etcd_node_modes_and_removal() {
    let etcd = Etcd::start();
    let meta = etcd.meta().await;
    meta_suite::node_modes_and_removal(&meta, Duration::from_secs(30)).await;
}

/// Two clients racing to create the cluster id agree on one.
#[tokio::test]
async fn etcd_cluster_id_race_agrees() {
    let etcd = Etcd::start();
    let a = etcd.meta().await;
    let b = etcd.meta().await;
    let (x, y) = tokio::join!(a.cluster_id(), b.cluster_id());
    assert_eq!(x.expect("a"), y.expect("b"));
}

#[tokio::test]
async fn etcd_lease_expires() {
    let etcd = Etcd::start();
    let meta = etcd.meta().await;
    // etcd's shortest TTL is 1 s (and a member may raise it a little).
    meta_suite::lease_expires(&meta, Duration::from_secs(1)).await;
}

/// A value that is not a record (written by hand) is an error naming the
/// key, never a record.
#[tokio::test]
async fn etcd_bad_value_is_an_error() {
    let etcd = Etcd::start();
    let meta = etcd.meta().await;
    let mut raw = etcd_client::Client::connect([etcd.client_url.as_str()], None)
        .await
        .expect("raw client");
    let key = "/trilog/logs/00000000000000000009";
    raw.put(key, "not a frame", None).await.expect("put");
    let got = meta.get_log(9).await;
    assert!(
        matches!(&got, Err(trilog_meta::MetaError::BadValue { key: k, .. }) if k == key),
        "{got:?}"
    );
}

/// A store that does not answer: calls end with a timeout, not a hang.
#[tokio::test]
async fn etcd_call_times_out_on_a_silent_store() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let short = Duration::from_millis(200);
    let answer = match EtcdMeta::connect_with(&[endpoint], "/trilog/", short).await {
        Ok(meta) => meta.list_logs().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(answer.is_err(), "{answer:?}");
}

/// The node's registration thread (`trilog-node --meta etcd://...`)
/// registers through `EtcdMeta` and keeps the node alive; once stopped, its
/// lease runs out and the node is listed dead.
#[tokio::test]
async fn etcd_node_registration_thread() {
    let etcd = Etcd::start();
    let meta = etcd.meta().await;
    let endpoint = etcd.client_url.trim_start_matches("http://").to_string();
    let info = meta_suite::node(31);
    let handle = trilog_meta::spawn_etcd_registration(
        vec![endpoint],
        info.clone(),
        Duration::from_millis(1000),
    );
    let registered = tokio::task::spawn_blocking(move || {
        let ok = handle.registered_once(meta_suite::TEST_WAIT);
        (ok, handle)
    });
    let (ok, handle) = registered.await.expect("join");
    assert!(ok, "the node never registered");
    let nodes = meta.list_nodes(false).await.expect("list");
    assert!(nodes.iter().any(|n| n.info == info && n.alive), "{nodes:?}");
    tokio::task::spawn_blocking(move || handle.stop())
        .await
        .expect("join");
    let deadline = Instant::now() + meta_suite::TEST_WAIT;
    loop {
        let all = meta.list_nodes(true).await.expect("list");
        if all.iter().any(|n| n.info.node_id == 31 && !n.alive) {
            break;
        }
        assert!(Instant::now() < deadline, "node 31 still alive: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
