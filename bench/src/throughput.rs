//! Throughput against the disk: trilog with large batches and many appends
//! in flight, next to what fio reaches with direct sequential writes on the
//! same disk in the same run ([`crate::fio`]). Every replica here shares
//! this one disk, so trilog's figure counts each replica's bytes (payload
//! x 3).

use std::sync::Arc;
use std::time::Duration;

use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterError};
use trilog_testkit::node_command::NodeCommand;

use crate::load::{run, LoadConfig, LoadResult, Mode};
use crate::targets::TrilogTarget;

/// What trilog reached.
#[derive(Debug, Clone)]
pub struct TrilogThroughput {
    pub load: LoadResult,
    pub payload_bytes: usize,
    pub replicas: usize,
}

impl TrilogThroughput {
    /// Bytes written to disk per second, over all replicas.
    pub fn replicated_bytes_per_s(&self) -> f64 {
        self.load.payload_bytes_per_s(self.payload_bytes) * self.replicas as f64
    }
}

/// Runs large batches on a 3-node cluster (all replicas on this disk).
pub async fn trilog_throughput(
    node: NodeCommand,
    payload_bytes: usize,
    batch: usize,
    writers: usize,
    duration: Duration,
) -> Result<TrilogThroughput, ClusterError> {
    let cluster = Cluster::start(3, node, None).await?;
    let mut opts = ProducerOptions::default();
    opts.config.window = 32;
    opts.config.batch_bytes_max = 2 << 20;
    opts.in_flight_bytes_max = 256 << 20;
    let producer = Producer::open(cluster.pool(), 1, opts).await?;
    let load = run(
        Arc::new(TrilogTarget { producer }),
        LoadConfig {
            mode: Mode::Closed { writers },
            payload_bytes,
            batch,
            duration,
            warmup: Duration::from_secs(2),
            progress: true,
        },
    )
    .await;
    Ok(TrilogThroughput {
        load,
        payload_bytes,
        replicas: 3,
    })
}
