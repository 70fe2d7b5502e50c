//! The client's metrics, recorded through the `metrics` facade into the
//! Prometheus exporter an application would install: a producer's append
//! latency, entries and bytes committed, and a segment switch when a
//! replica turns read-only under it (4 log nodes in this process, real
//! sockets and disks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use trilog_client::{ConnPool, EmbeddedMeta, MetaAddr, MetaStore, Producer, ProducerOptions};
use trilog_node::config::NodeConfig;
use trilog_node::server::{self, NodeHandle};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_node(id: u64, dir: &std::path::Path, meta: SocketAddr) -> NodeHandle {
    let config = NodeConfig {
        meta: Some(MetaAddr::Embedded(meta.into())),
        serve_meta: (id == 1).then_some(meta),
        lease_ms: 2_000,
        ..NodeConfig::with_defaults(id, dir.join(format!("node-{id}")))
    };
    config.check().expect("a valid configuration");
    server::start(config).expect("the node starts")
}

/// The value of the sample `series`, exactly as printed, or 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_records_its_latency_its_entries_and_its_switches() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let exported = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test process");

    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nodes: Vec<NodeHandle> = (1..=4).map(|id| start_node(id, dir.path(), meta)).collect();
    let store: Arc<dyn MetaStore> = Arc::new(EmbeddedMeta::new(meta));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.list_nodes(false).await.map(|n| n.len()).unwrap_or(0) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let producer = Producer::open(ConnPool::new(store.clone()), 1, ProducerOptions::default())
        .await
        .expect("open log 1");
    const FIRST: u64 = 50;
    for _ in 0..FIRST {
        producer.append(vec![1u8; 100]).await.expect("committed");
    }
    let text = exported.render();
    assert_eq!(
        sample(&text, "trilog_client_appends_total"),
        FIRST as f64,
        "{text}"
    );
    assert_eq!(
        sample(&text, "trilog_client_append_bytes_total"),
        (FIRST * 100) as f64
    );
    assert_eq!(
        sample(&text, "trilog_client_append_duration_seconds_count"),
        FIRST as f64,
        "{text}"
    );
    assert!(sample(&text, "trilog_client_append_duration_seconds_sum") > 0.0);
    assert_eq!(sample(&text, "trilog_client_segment_switches_total"), 0.0);

    // A replica of the open segment turns read-only (as after ENOSPC):
    // its next append is refused, and the producer goes on in a new
    // segment on the other three nodes.
    let record = store
        .get_log(1)
        .await
        .expect("record")
        .record
        .expect("log 1");
    let replica = record.segments.last().expect("a segment").replicas[0];
    let node = &nodes[usize::try_from(replica - 1).expect("a small id")];
    node.space.space.no_space();
    for _ in 0..FIRST {
        producer.append(vec![2u8; 100]).await.expect("committed");
    }
    let text = exported.render();
    assert_eq!(
        sample(&text, "trilog_client_appends_total"),
        (2 * FIRST) as f64
    );
    assert_eq!(
        sample(&text, "trilog_client_segment_switches_total"),
        1.0,
        "{text}"
    );
    producer.close().await.expect("close");
}
