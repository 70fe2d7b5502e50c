//! A simulated log node: the node's own shard code (`trilog_node::server`:
//! `start_shard`, `conn::serve`, the flusher, the timer, the shard machine
//! and the storage layer) on a [`SimDisk`], the virtual clock and the
//! seeded executor, serving connections of the simulated network.
//!
//! A node is a process of the simulation: killing it drops every task it
//! runs at whatever await point each is, closes its connections, and
//! leaves its disk as a crash leaves it (unsynced writes lost or torn).
//! A restart recovers from that disk, as `trilog-node` does.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use std::rc::Rc;

use trilog_meta::MetaStore;
use trilog_node::runtime::ShardRuntime;
use trilog_node::server::records::{RecordSource, StoreRecords};
use trilog_node::server::{conn, start_shard};
use trilog_wire::meta::NodeInfo;

use crate::disk::SimDisk;
use crate::executor::{ProcessId, SimHandle};
use crate::net::Net;

/// The shard runtime of a simulated node: its disk, the virtual clock, and
/// tasks spawned into its process.
#[derive(Clone)]
pub struct SimShardRuntime {
    sim: SimHandle,
    disk: SimDisk,
    process: ProcessId,
}

impl ShardRuntime for SimShardRuntime {
    type Disk = SimDisk;

    fn disk(&self) -> &SimDisk {
        &self.disk
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.sim.now().as_millis()).unwrap_or(u64::MAX)
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.sim.spawn_in(self.process, task);
    }

    fn sleep(&self, after: Duration) -> impl Future<Output = ()> + 'static {
        self.sim.sleep(after)
    }
}

/// Where node `id` lives on the simulated network.
pub fn node_ip(id: u64) -> IpAddr {
    let low = u8::try_from(id).unwrap_or(u8::MAX);
    IpAddr::from([10, 0, 0, low])
}

/// The first shard port of every simulated node.
pub const NODE_PORT: u16 = 7000;
/// A node's registration lease in the simulated store, and how often it renews.
pub const LEASE: Duration = Duration::from_millis(1500);
const RENEW_EVERY: Duration = Duration::from_millis(500);

/// What a node is, across its lives.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub shards: u32,
    pub data_dir: PathBuf,
}

impl NodeSpec {
    pub fn ports(&self) -> Vec<u16> {
        (0..self.shards)
            .map(|i| NODE_PORT + u16::try_from(i).unwrap_or(u16::MAX))
            .collect()
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.id,
            host: node_ip(self.id).to_string(),
            shard_ports: self.ports(),
            zone: String::new(),
            capacity_bytes: 0,
            // One data directory (one SimDisk) per node across its lives:
            // every life is the same incarnation.
            incarnation: self.id,
            bytes_used: 0,
            bytes_free: 0,
            full: false,
        }
    }
}

/// Starts one life of node `spec` as `process`: every shard recovers from
/// `disk` and listens, then the node registers with `meta` and renews its
/// lease for as long as it lives. A shard that fails to start is logged
/// and leaves the node unregistered (as `trilog-node` exits).
pub fn start_node(
    sim: &SimHandle,
    net: &Net,
    meta: std::sync::Arc<dyn MetaStore>,
    disk: SimDisk,
    spec: NodeSpec,
    process: ProcessId,
) {
    let rt = SimShardRuntime {
        sim: sim.clone(),
        disk,
        process,
    };
    let net = net.clone();
    let sim2 = sim.clone();
    sim.spawn_in(process, async move {
        let ports = spec.ports();
        for index in 0..spec.shards {
            let dir = spec.data_dir.join(format!("shard-{index}"));
            if let Err(e) = trilog_node::storage::Disk::create_dir(&rt.disk, &dir).await {
                log::warn!("node {}: shard dir: {e}", spec.id);
                return;
            }
            // The node learns missed seals from the store, as a real node
            // registered with one does.
            let records: Rc<dyn RecordSource> = Rc::new(StoreRecords(meta.clone()));
            let started = start_shard(
                rt.clone(),
                spec.id,
                index,
                ports.clone(),
                dir,
                Some(records),
                trilog_node::metrics::ShardMetrics::new(),
            );
            let shard = match started.await {
                Ok(shard) => shard,
                Err(e) => {
                    log::warn!("node {} shard {index} did not start: {e}", spec.id);
                    return;
                }
            };
            let addr = SocketAddr::new(node_ip(spec.id), ports[index as usize]);
            let listener = match net.listen(process, addr) {
                Ok(l) => l,
                Err(e) => {
                    log::warn!("node {}: listen {addr}: {e}", spec.id);
                    return;
                }
            };
            let accept_rt = rt.clone();
            rt.spawn(async move {
                while let Ok(stream) = listener.accept().await {
                    let peer = stream.peer_addr().ok();
                    accept_rt.spawn(conn::serve(shard.clone(), stream, peer, None));
                }
            });
        }
        let info = spec.info();
        loop {
            if let Err(e) = meta.register_node(info.clone(), LEASE).await {
                log::debug!("node {}: register: {e}", spec.id);
            }
            sim2.sleep(RENEW_EVERY).await;
        }
    });
}
