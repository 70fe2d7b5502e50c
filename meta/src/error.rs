//! Why a metadata call failed, whichever store answered it.

use crate::addr::HostPort;

use trilog_protocol::meta_record::RecordError;
use trilog_wire::WireError;

/// A registration refused because the node id is held: a live lease of
/// that id belongs to another incarnation (another process, or a node
/// started on another data directory with the same id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node id {node_id} is registered by another live process at {holder}; \
     stop it or wait for its lease ({lease_remaining_ms} ms)"
)]
pub struct NodeIdTaken {
    pub node_id: u64,
    /// Where the holder is: `host:port` of its first shard.
    pub holder: String,
    pub lease_remaining_ms: u64,
}

impl NodeIdTaken {
    /// The refusal as a store sees it: `holder` is the live registration.
    pub fn held_by(holder: &trilog_wire::meta::NodeInfo, lease_remaining_ms: u64) -> NodeIdTaken {
        let port = holder.shard_ports.first().copied().unwrap_or(0);
        NodeIdTaken {
            node_id: holder.node_id,
            holder: format!("{}:{port}", holder.host),
            lease_remaining_ms,
        }
    }
}

/// Why a metadata call failed. After an error of `cas_log` its outcome is
/// unknown.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store {addr}: {source}")]
    Io {
        addr: HostPort,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store {addr}: bad frame: {source}")]
    Wire {
        addr: HostPort,
        #[source]
        source: WireError,
    },
    /// The store answered with an error (an invalid record, a lease out of
    /// bounds, a store that failed to save).
    #[error("metadata store refused: {0}")]
    Server(String),
    #[error("metadata store: {what} timed out after {after_ms} ms")]
    Timeout { what: &'static str, after_ms: u64 },
    #[error("metadata store {addr} closed the connection")]
    Closed { addr: HostPort },
    #[error("metadata store {addr}: {reason}")]
    Protocol { addr: HostPort, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A call to etcd failed (see `crate::etcd`): which operation, on which
    /// key, at which endpoints.
    #[cfg(feature = "etcd")]
    #[error("etcd {endpoints}: {op} of {key}: {source}")]
    Etcd {
        endpoints: String,
        op: &'static str,
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    /// A key of the store holds bytes that are not a valid value for it
    /// (written by something else, or corrupt).
    #[error("metadata store: {key} holds an invalid value: {reason}")]
    BadValue { key: String, reason: String },
    /// A record that breaks the shape of a log, refused before it is stored.
    #[error("log {log_id}: record refused: {source}")]
    InvalidRecord {
        log_id: u64,
        #[source]
        source: RecordError,
    },
    /// A registration refused: the node id is held by another live
    /// incarnation (see [`NodeIdTaken`]).
    #[error(transparent)]
    NodeIdTaken(#[from] NodeIdTaken),
    /// A registration refused: the id was decommissioned for good.
    #[error("node id {node_id} was decommissioned (removed); it cannot register again: give the machine a new node id")]
    NodeRemoved { node_id: u64 },
    /// An `etcd://` address given to a build without the `etcd` feature.
    #[error("{addr}: this build has no etcd support (cargo feature `etcd`)")]
    EtcdNotBuilt { addr: String },
}
