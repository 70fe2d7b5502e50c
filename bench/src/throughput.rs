//! Throughput against the disk: trilog with large batches and many appends
//! in flight, next to what fio reaches with direct sequential writes on the
//! same disk in the same run ([`crate::fio`]). Every replica here shares
//! this one disk, so trilog's figure counts each replica's bytes (payload
//! x 3). The CPU the nodes and the client spent per GiB comes with it
//! ([`crate::cpu`]).

use std::sync::Arc;
use std::time::Duration;

use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterError};
use trilog_testkit::node_command::NodeCommand;

use crate::cpu::{cpu_seconds, own_cpu_seconds};
use crate::load::{run, LoadConfig, LoadResult, Mode};
use crate::targets::TrilogTarget;

/// What trilog reached.
#[derive(Debug, Clone)]
pub struct TrilogThroughput {
    pub load: LoadResult,
    pub payload_bytes: usize,
    pub replicas: usize,
    /// CPU seconds the nodes (together) and this process (the client and
    /// the load generator) spent over the measured window; `None` where
    /// `/proc` could not be read.
    pub node_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
}

impl TrilogThroughput {
    /// Bytes written to disk per second, over all replicas.
    pub fn replicated_bytes_per_s(&self) -> f64 {
        self.load.payload_bytes_per_s(self.payload_bytes) * self.replicas as f64
    }

    /// Payload bytes committed in the measured window.
    fn payload_bytes(&self) -> f64 {
        self.load.entries as f64 * self.payload_bytes as f64
    }

    /// Node CPU seconds per GiB a node wrote (each node writes every
    /// payload byte once: the replicated bytes over all nodes).
    pub fn node_cpu_s_per_gib(&self) -> Option<f64> {
        let gib = self.payload_bytes() * self.replicas as f64 / GIB;
        self.node_cpu_s.filter(|_| gib > 0.0).map(|s| s / gib)
    }

    /// Client CPU seconds per GiB of payload appended.
    pub fn client_cpu_s_per_gib(&self) -> Option<f64> {
        let gib = self.payload_bytes() / GIB;
        self.client_cpu_s.filter(|_| gib > 0.0).map(|s| s / gib)
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// The nodes' and this process's CPU seconds so far.
fn cpu_now(cluster: &Cluster) -> (Option<f64>, Option<f64>) {
    let nodes: Option<f64> = cluster
        .nodes
        .iter()
        .map(|n| n.pid().and_then(cpu_seconds))
        .sum();
    (nodes, own_cpu_seconds())
}

fn spent(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?).filter(|s| *s >= 0.0)
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
    let warmup = Duration::from_secs(2);
    let load = run(
        Arc::new(TrilogTarget { producer }),
        LoadConfig {
            mode: Mode::Closed { writers },
            payload_bytes,
            batch,
            duration,
            warmup,
            progress: true,
        },
    );
    // CPU over the measured window only: sampled when the warmup ends,
    // as the load starts counting, and when it stops.
    let sample_at_warmup_end = async {
        tokio::time::sleep(warmup).await;
        cpu_now(&cluster)
    };
    let (load, (nodes_from, client_from)) = tokio::join!(load, sample_at_warmup_end);
    let (nodes_to, client_to) = cpu_now(&cluster);
    Ok(TrilogThroughput {
        load,
        payload_bytes,
        replicas: 3,
        node_cpu_s: spent(nodes_from, nodes_to),
        client_cpu_s: spent(client_from, client_to),
    })
}
