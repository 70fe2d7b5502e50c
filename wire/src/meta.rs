//! Metadata records and the messages of the embedded metadata store.
//!
//! A log's record is updated only by compare-and-swap on its version; a
//! node's registration lives under a lease that it renews.

use rkyv::{Archive, Deserialize, Serialize};

/// One segment of a log: which nodes hold it, where it starts, and, once
/// sealed, how many entries it keeps.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentMeta {
    pub id: u64,
    pub replicas: Vec<u64>,
    pub first_seq: u64,
    pub epoch: u64,
    pub sealed_len: Option<u64>,
}

/// The record of a log. Only the last segment may be open.
///
/// `trim_seq` is the trim point: entries below it are gone. `deleting`
/// holds the segments a trim or a delete took out of the chain whose
/// replicas may still hold files: they are dropped from it once every
/// replica confirmed the unlink (`trilog_protocol::trim`). `deleted` marks
/// a deleted log: no segment is ever added to it again.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogMeta {
    pub log_id: u64,
    pub epoch: u64,
    pub trim_seq: u64,
    pub segments: Vec<SegmentMeta>,
    pub deleting: Vec<SegmentMeta>,
    pub deleted: bool,
}

/// What a node registers: where to reach it and what it offers.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: u64,
    pub host: String,
    pub shard_ports: Vec<u16>,
    pub zone: String,
    pub capacity_bytes: u64,
    /// Which life of the node id this is: a random stamp drawn once, when
    /// the node's data directory got its identity, and kept for as long
    /// as that directory lives. A store refuses a registration of a node
    /// id whose live lease belongs to another incarnation (another
    /// process, or another directory, claiming the same id).
    pub incarnation: u64,
    /// Bytes in use on the file system of the node's data directory, as
    /// last measured (statvfs; 0 if never measured).
    pub bytes_used: u64,
    /// Bytes free there for the node (statvfs `f_bavail`: what an
    /// unprivileged writer may still allocate).
    pub bytes_free: u64,
    /// The node is read-only: its disk is below its reserve, or an
    /// allocation failed for space. It serves reads of everything durable
    /// and seals and deletes, but takes no new segment and no append:
    /// placement skips it.
    pub full: bool,
}

/// What the operator decided for a node id: kept by the store apart from
/// the node's lease (it outlives the process, and a dead node has one
/// too), changed only by an operator (`trilog node decommission`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[rkyv(compare(PartialEq), derive(Debug))]
#[repr(u8)]
pub enum NodeMode {
    /// Takes new segments and repaired copies (every node, until told).
    #[default]
    Active,
    /// Being decommissioned: placement skips it, the node refuses new data
    /// (appends answered `Full`, so producers switch away), and repair
    /// copies every sealed segment it holds to other nodes, reading from
    /// it while it lives.
    Leaving,
    /// Gone for good: no record lists it any more, and a registration of
    /// the id is refused. Final: a removed id never comes back.
    Removed,
}

impl NodeMode {
    /// The name the CLI and `status --json` print.
    pub fn name(self) -> &'static str {
        match self {
            NodeMode::Active => "active",
            NodeMode::Leaving => "leaving",
            NodeMode::Removed => "removed",
        }
    }
}

/// A registration as the store sees it now.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub info: NodeInfo,
    pub alive: bool,
    pub lease_remaining_ms: u64,
    /// The operator's decision for the id (see [`NodeMode`]).
    pub mode: NodeMode,
}

/// One node id's mode (the ids not listed are [`NodeMode::Active`]).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeModeEntry {
    pub node_id: u64,
    pub mode: NodeMode,
}

/// Get a log's record. With `wait_ms > 0` it is a watch: the answer waits
/// until the version differs from `known_version` or the wait ends.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaGetLog {
    pub log_id: u64,
    pub known_version: u64,
    pub wait_ms: u32,
}

/// A log's record and its version; version 0 means no such log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaLog {
    pub log_id: u64,
    pub version: u64,
    pub record: Option<LogMeta>,
}

/// Replace the record if its version is still `expected_version` (0: only
/// if the log does not exist yet).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaCasLog {
    pub log_id: u64,
    pub expected_version: u64,
    pub record: LogMeta,
}

/// `ok` with the new version, or the current version and record.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaCasResult {
    pub ok: bool,
    pub version: u64,
    pub current: Option<LogMeta>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaListLogs {
    pub reserved: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaLogs {
    pub logs: Vec<u64>,
}

/// Register or renew: the node is alive for `lease_ms` from now.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaRegister {
    pub node: NodeInfo,
    pub lease_ms: u32,
}

/// The answer to a registration. `mode` [`NodeMode::Removed`]: refused,
/// nothing registered (the id was decommissioned); otherwise registered,
/// and `mode` tells the node whether it is leaving.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaRegistered {
    pub lease_ms: u32,
    pub mode: NodeMode,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaListNodes {
    pub include_dead: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaNodes {
    pub nodes: Vec<NodeStatus>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    pub message: String,
}

/// Ask for the cluster's id (created by the store, once, on first use).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaGetCluster {
    pub reserved: u32,
}

/// The cluster's id: random, never 0, never changed once created.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaCluster {
    pub cluster_id: u64,
}

/// Set a node id's mode. Refused (a `MetaError`) when the id is removed
/// already and the mode asked is not `Removed`. Answered with every mode.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaSetNodeMode {
    pub node_id: u64,
    pub mode: NodeMode,
}

/// Ask for every node id's mode.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaGetNodeModes {
    pub reserved: u32,
}

/// Every node id whose mode is not `Active`, by id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaNodeModes {
    pub modes: Vec<NodeModeEntry>,
}

/// A node that stops on purpose ends its lease at once: `node_id`'s
/// registration goes if `incarnation` holds it (a later process under the
/// same id is left alone).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaDeregister {
    pub node_id: u64,
    pub incarnation: u64,
}

/// The answer to a deregistration: `removed`, whether a lease of that
/// incarnation was there and is gone (false: nothing to do).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaDeregistered {
    pub removed: bool,
}

/// A registration refused: `node_id` has a live lease held by another
/// incarnation, `holder`, for `lease_remaining_ms` more.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaRegisterRefused {
    pub node_id: u64,
    pub holder: NodeInfo,
    pub lease_remaining_ms: u64,
}
