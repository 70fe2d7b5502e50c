//! A cluster inside the calling process: the embedded metadata store on a
//! thread of its own and `n` log nodes, each a glommio executor thread
//! with real sockets on loopback and real direct I/O under a temporary
//! directory. It is what the client's documentation examples run against
//! (behind the feature `in-process`), so every example is a program that
//! talks to real nodes, yet needs no binary built beside it.
//!
//! Unlike [`crate::cluster::Cluster`] nothing here can be killed or
//! restarted: a node's shards run until the process ends (glommio gives a
//! running executor no stop). Start one cluster per process, as each
//! documentation example is.
//!
//! Glommio's executors lock memory: run with `ulimit -l unlimited` where
//! the default limit is small.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trilog_client::meta::{spawn_meta_server, MetaServerError, MetaServerHandle};
use trilog_client::{ConnPool, EmbeddedMeta, MetaAddr, MetaStore};
use trilog_node::config::NodeConfig;
use trilog_node::server::{self, NodeHandle};

use crate::cluster::default_root;
use crate::wait::{wait_for, TimedOut};

/// The longest the nodes may take to hold live registrations.
pub const REGISTER_WAIT_MS_MAX: u64 = 20_000;

/// Why an in-process cluster did not start.
#[derive(Debug, thiserror::Error)]
pub enum InProcessError {
    #[error("temporary directory under {root}: {source}")]
    Dir {
        root: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaServerError),
    #[error("node {node}: configuration: {why}")]
    Config { node: u64, why: String },
    #[error("node {node}: {why}")]
    Node { node: u64, why: String },
    #[error(transparent)]
    Timeout(#[from] TimedOut),
}

/// The embedded metadata store and its log nodes, all registered and
/// alive. Dropping it stops the metadata store and the nodes' leases; the
/// nodes' shards stay until the process ends.
pub struct InProcessCluster {
    meta_addr: SocketAddr,
    // Field order is drop order: the nodes' registrations end before the
    // store they renew with, and the directory goes last.
    nodes: Vec<NodeHandle>,
    meta_server: MetaServerHandle,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for InProcessCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NodeHandle has no Debug; its ports are what a reader wants.
        let ports: Vec<&[u16]> = self.nodes.iter().map(|n| &n.shard_ports[..]).collect();
        f.debug_struct("InProcessCluster")
            .field("meta_addr", &self.meta_addr)
            .field("shard_ports", &ports)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl InProcessCluster {
    /// Starts the metadata store and nodes `1..=nodes` (one shard each,
    /// every other setting at its default) and waits until every node
    /// holds a live registration. Call it within a tokio runtime.
    pub async fn start(nodes: usize) -> Result<InProcessCluster, InProcessError> {
        let root = default_root();
        let dir = tempfile::Builder::new()
            .prefix("trilog-in-process-")
            .tempdir_in(&root)
            .map_err(|source| InProcessError::Dir { root, source })?;
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let meta_server = spawn_meta_server(listen, dir.path().join("meta"))?;
        let meta_addr = meta_server.local_addr();
        let mut handles = Vec::with_capacity(nodes);
        for id in 1..=nodes as u64 {
            let config = NodeConfig {
                meta: Some(MetaAddr::Embedded(meta_addr.into())),
                ..NodeConfig::with_defaults(id, dir.path().join(format!("node-{id}")))
            };
            config.check().map_err(|e| InProcessError::Config {
                node: id,
                why: e.to_string(),
            })?;
            // The start blocks until the node's first registration is
            // accepted: off the runtime's workers, so it works on a
            // current-thread runtime too.
            let started = tokio::task::spawn_blocking(move || server::start(config)).await;
            let handle = match started {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    return Err(InProcessError::Node {
                        node: id,
                        why: e.to_string(),
                    })
                }
                Err(e) => {
                    return Err(InProcessError::Node {
                        node: id,
                        why: format!("the start panicked: {e}"),
                    })
                }
            };
            handles.push(handle);
        }
        let cluster = InProcessCluster {
            meta_addr,
            nodes: handles,
            meta_server,
            dir,
        };
        cluster.wait_alive(nodes).await?;
        Ok(cluster)
    }

    async fn wait_alive(&self, n: usize) -> Result<(), TimedOut> {
        let meta = &self.meta();
        let what = format!("{n} live nodes");
        let timeout = Duration::from_millis(REGISTER_WAIT_MS_MAX);
        wait_for(&what, timeout, move || async move {
            let nodes = meta.list_nodes(false).await.ok()?;
            (nodes.iter().filter(|s| s.alive).count() >= n).then_some(())
        })
        .await
    }

    /// Where the embedded metadata store listens (`--meta` of the CLI).
    pub fn meta_addr(&self) -> SocketAddr {
        self.meta_addr
    }

    /// A new client of the metadata store.
    pub fn meta(&self) -> Arc<dyn MetaStore> {
        Arc::new(EmbeddedMeta::new(self.meta_addr))
    }

    /// A new connection pool: what a producer, a consumer or a takeover
    /// is opened with. Two pools share nothing, as two client processes.
    pub fn pool(&self) -> ConnPool {
        ConnPool::new(self.meta())
    }

    /// The directory holding the nodes' data and the store's file.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the metadata store and waits for its thread.
    pub fn stop(self) -> Result<(), MetaServerError> {
        let InProcessCluster {
            nodes,
            meta_server,
            dir,
            ..
        } = self;
        drop(nodes);
        let stopped = meta_server.stop();
        drop(dir);
        stopped
    }
}
