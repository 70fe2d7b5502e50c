//! The metadata stores over mutual TLS, with a throwaway CA: the embedded
//! store refuses plaintext, strangers and requests outside the client's
//! role; a real etcd serving client-certificate TLS is reached with the
//! same identity.

mod etcd_proc;
mod meta_suite;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_proc::Etcd;
use meta_suite::{node, record, segment};
use trilog_meta::{spawn_meta_server_tls, CasOutcome, EmbeddedMeta, MetaStore};
use trilog_tls::test_ca::TestCa;
use trilog_tls::TlsIdentity;

const CALL: Duration = Duration::from_secs(5);

fn client(addr: SocketAddr, tls: Option<Arc<TlsIdentity>>) -> EmbeddedMeta {
    EmbeddedMeta::with_tls(addr, CALL, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_serves_each_role_what_it_may() {
    let ca = TestCa::new("trilog test CA").expect("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let server_id = ca.identity("node", &["127.0.0.1"]).expect("node identity");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let server =
        spawn_meta_server_tls(listen, dir.path().to_path_buf(), Some(server_id)).expect("starts");
    let addr = server.local_addr();

    let node_client = client(addr, Some(ca.identity("node", &[]).expect("node")));
    let producer = client(addr, Some(ca.identity("producer", &[]).expect("producer")));
    let reader = client(addr, Some(ca.identity("reader", &[]).expect("reader")));

    // A node registers; a producer and a reader may not.
    node_client
        .register_node(node(1), Duration::from_secs(30))
        .await
        .expect("a node registers");
    for (who, c) in [("producer", &producer), ("reader", &reader)] {
        let e = c
            .register_node(node(2), Duration::from_secs(30))
            .await
            .expect_err("only nodes register");
        assert!(e.to_string().contains("forbidden"), "{who}: {e}");
        // Nor end a node's lease, knowing its incarnation.
        let e = c
            .deregister_node(1, node(1).incarnation)
            .await
            .expect_err("only nodes deregister");
        assert!(e.to_string().contains("forbidden"), "{who}: {e}");
    }
    let alive = reader
        .list_nodes(false)
        .await
        .expect("a reader lists nodes");
    assert!(alive.iter().any(|n| n.info.node_id == 1), "{alive:?}");
    // A producer writes a log's record; a reader may not, but reads it.
    let r = record(7, 1, vec![segment(0, 0, None)]);
    let applied = producer.cas_log(7, 0, r.clone()).await.expect("cas");
    assert!(matches!(applied, CasOutcome::Applied { .. }), "{applied:?}");
    let e = reader
        .cas_log(7, 1, record(7, 1 << 40, vec![segment(0, 0, None)]))
        .await
        .expect_err("a reader changes nothing");
    assert!(e.to_string().contains("forbidden"), "{e}");
    let seen = reader.get_log(7).await.expect("a reader reads");
    assert_eq!(seen.record, Some(r));
    assert_eq!(reader.list_nodes(false).await.expect("list").len(), 1);
    // Node modes are the operator's: a producer's certificate, not a
    // node's or a reader's.
    for c in [&node_client, &reader] {
        let e = c
            .set_node_mode(1, trilog_wire::meta::NodeMode::Leaving)
            .await
            .expect_err("no mode change");
        assert!(e.to_string().contains("forbidden"), "{e}");
    }

    // Plaintext and a certificate of another CA get nothing.
    let plain = client(addr, None);
    assert!(plain.list_logs().await.is_err());
    let other = TestCa::new("another CA").expect("CA");
    let stranger = client(addr, Some(other.identity("producer", &[]).expect("id")));
    assert!(stranger.list_logs().await.is_err());
    // The refused did not stop the store serving the others.
    assert_eq!(producer.list_logs().await.expect("still serves"), vec![7]);
    server.stop().expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_mutual_tls() {
    let ca = TestCa::new("trilog test CA").expect("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd_files = ca
        .write_files(dir.path(), "etcd", "node", &["127.0.0.1", "localhost"])
        .expect("etcd files");
    let etcd = Etcd::start_tls(&etcd_files);
    let endpoint = etcd
        .client_url
        .strip_prefix("https://")
        .expect("an https url")
        .to_string();
    let addr: trilog_meta::MetaAddr = format!("etcd://{endpoint}").parse().expect("address");
    let producer = ca.identity("producer", &[]).expect("producer");
    // etcd answers once it is up; polled against a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let meta = loop {
        let tried = addr
            .connect_tls(Duration::from_secs(1), Some(&producer))
            .await;
        if let Ok(meta) = tried {
            if meta.list_logs().await.is_ok() {
                break meta;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "etcd over TLS never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    meta_suite::create_conflict_update(&*meta).await;
    // Without a certificate etcd refuses the connection.
    let plain: trilog_meta::MetaAddr = format!("etcd://{endpoint}").parse().expect("address");
    let refused = match plain.connect_with(Duration::from_secs(1)).await {
        Ok(m) => m.list_logs().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "etcd served a client without TLS");
}
