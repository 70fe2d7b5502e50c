//! The metadata store suite (`meta_suite`) against the embedded store,
//! served in this process by `trilog_meta::spawn_meta_server`.

mod meta_suite;

use std::net::SocketAddr;
use std::time::Duration;

use trilog_meta::{spawn_meta_server, EmbeddedMeta, MetaServerHandle, MetaStore};

fn start(dir: &std::path::Path) -> MetaServerHandle {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    spawn_meta_server(listen, dir.to_path_buf()).expect("server starts")
}

/// Runs one suite check against a fresh store in a fresh directory.
macro_rules! embedded_test {
    ($name:ident, $check:expr) => {
        #[tokio::test]
        async fn $name() {
            let dir = tempfile::tempdir().expect("tempdir");
            let server = start(dir.path());
            let meta = EmbeddedMeta::new(server.local_addr());
            $check(&meta).await;
            server.stop().expect("stops");
        }
    };
}

embedded_test!(
    embedded_create_conflict_update,
    meta_suite::create_conflict_update
);
embedded_test!(
    embedded_watch_woken_by_another_cas,
    meta_suite::watch_woken_by_another_cas
);
embedded_test!(embedded_watch_times_out, meta_suite::watch_times_out);
embedded_test!(
    embedded_register_and_list_nodes,
    meta_suite::register_and_list_nodes
);
embedded_test!(
    embedded_deregistration_ends_the_lease_at_once,
    meta_suite::deregistration_ends_the_lease_at_once
);
embedded_test!(
    embedded_cluster_id_is_created_once,
    meta_suite::cluster_id_is_created_once
);

#[tokio::test]
async fn embedded_a_live_id_is_refused_to_another_incarnation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    meta_suite::a_live_id_is_refused_to_another_incarnation(&meta, Duration::from_millis(300))
        .await;
    server.stop().expect("stops");
}

/// Node modes, then the same modes after a restart of the store.
#[tokio::test]
async fn embedded_node_modes_and_removal_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    meta_suite::node_modes_and_removal(&meta, Duration::from_secs(30)).await;
    meta.set_node_mode(3, trilog_wire::meta::NodeMode::Leaving)
        .await
        .expect("set");
    let before = meta.node_modes().await.expect("modes");
    assert_eq!(before.len(), 2);
    server.stop().expect("stops");
    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    assert_eq!(meta.node_modes().await.expect("modes"), before);
    assert!(matches!(
        meta.register_node(meta_suite::node(7), Duration::from_secs(30))
            .await,
        Err(trilog_meta::MetaError::NodeRemoved { node_id: 7 })
    ));
    server.stop().expect("stops");
}

/// The cluster id survives a restart of the store on its directory.
#[tokio::test]
async fn embedded_cluster_id_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let first = EmbeddedMeta::new(server.local_addr())
        .cluster_id()
        .await
        .expect("cluster id");
    server.stop().expect("stops");
    let server = start(dir.path());
    let again = EmbeddedMeta::new(server.local_addr())
        .cluster_id()
        .await
        .expect("cluster id");
    assert_eq!(again, first);
    server.stop().expect("stops");
}

#[tokio::test]
async fn embedded_lease_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    meta_suite::lease_expires(&meta, Duration::from_millis(50)).await;
    server.stop().expect("stops");
}
