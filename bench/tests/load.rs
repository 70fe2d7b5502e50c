//! The load generator against a real 3-node trilog cluster: what it counts
//! adds up, whatever the machine's speed.

use std::sync::Arc;
use std::time::Duration;

use trilog_bench::load::{run, save_histogram, LoadConfig, Mode};
use trilog_bench::targets::TrilogTarget;
use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;
use trilog_testkit::node_command::NodeCommand;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_loops_account_for_every_append() {
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let producer = Producer::open(cluster.pool(), 1, ProducerOptions::default())
        .await
        .expect("producer");
    let target = Arc::new(TrilogTarget { producer });

    let closed = run(
        target.clone(),
        LoadConfig {
            mode: Mode::Closed { writers: 4 },
            payload_bytes: 128,
            batch: 3,
            duration: Duration::from_millis(800),
            warmup: Duration::from_millis(200),
            progress: false,
        },
    )
    .await;
    assert!(closed.ops > 0);
    assert_eq!(closed.errors, 0);
    assert_eq!(closed.entries, closed.ops * 3);
    assert_eq!(closed.histogram.len(), closed.ops);

    // 250 batches a second for 0.8 s after a 0.2 s warmup: exactly the
    // slots whose intended start falls in the measured window are counted,
    // as done, failed or dropped.
    let open = run(
        target.clone(),
        LoadConfig {
            mode: Mode::Open {
                rate_per_s: 250.0,
                in_flight_max: 1000,
            },
            payload_bytes: 64,
            batch: 1,
            duration: Duration::from_millis(800),
            warmup: Duration::from_millis(200),
            progress: false,
        },
    )
    .await;
    let slots = (0..250u64).filter(|i| *i * 4 >= 200).count() as u64;
    assert_eq!(open.ops + open.errors + open.dropped, slots, "{open:?}");
    assert_eq!(open.histogram.len(), open.ops);

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("h.hdr");
    save_histogram(&closed.histogram, &path).expect("save");
    let bytes = std::fs::read(&path).expect("read back");
    let back: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("valid V2 histogram");
    assert_eq!(back.len(), closed.histogram.len());
}
