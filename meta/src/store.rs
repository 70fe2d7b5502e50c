//! The metadata store as its users see it: an
//! object-safe trait, [`MetaStore`], that the producer, the consumer, the
//! CLI and a node's registration use, whichever store is behind it (the
//! embedded one, [`crate::EmbeddedMeta`], or etcd).
//!
//! Semantics every implementation keeps:
//! - a log's record has a version; 0 means "no such log"; a successful CAS
//!   gives a new, larger version;
//! - `cas_log` with `expected_version` 0 creates the log only if it is absent;
//!   a conflict returns what is there ([`CasOutcome::Conflict`]);
//! - `watch_log` returns as soon as the version differs from the caller's,
//!   else once its wait has passed, with the current state either way;
//! - an error of a CAS (a timeout, a lost connection) leaves its outcome
//!   unknown: read the log again before deciding anything;
//! - the cluster id is created once, on first use, and never changes;
//! - `register_node` of a node id whose lease is alive and belongs to
//!   another `incarnation` fails with [`MetaError::NodeIdTaken`] and changes
//!   nothing; the same incarnation renews;
//! - a node id has a mode ([`NodeMode`]), set by an operator, persisted
//!   apart from the lease: `register_node` answers it (so a node learns it
//!   is leaving at its next renewal) and fails with
//!   [`MetaError::NodeRemoved`] for a removed id; `list_nodes` carries it;
//!   removed is final (`set_node_mode` of a removed id to anything else
//!   fails);
//! - `deregister_node` ends a live lease of that incarnation only, at
//!   once: the node is listed dead, and its id is free for anyone.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use trilog_wire::meta::{LogMeta, NodeInfo, NodeMode, NodeModeEntry, NodeStatus};

use crate::error::MetaError;

/// A log's record at a version; `version` 0 and `record` None: no such log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub record: Option<LogMeta>,
}

/// What a compare-and-swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// Stored; the log is now at `version`.
    Applied { version: u64 },
    /// Not stored: the log was not at the expected version. Here is where it is.
    Conflict(Versioned),
}

pub type MetaFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, MetaError>> + Send + 'a>>;

/// The metadata store (see the module doc for the semantics).
pub trait MetaStore: Send + Sync + std::fmt::Debug {
    fn get_log(&self, log_id: u64) -> MetaFuture<'_, Versioned>;
    /// Waits until the log's version differs from `known_version` or `wait` passes.
    fn watch_log(
        &self,
        log_id: u64,
        known_version: u64,
        wait: Duration,
    ) -> MetaFuture<'_, Versioned>;
    fn cas_log(
        &self,
        log_id: u64,
        expected_version: u64,
        record: LogMeta,
    ) -> MetaFuture<'_, CasOutcome>;
    fn list_logs(&self) -> MetaFuture<'_, Vec<u64>>;
    /// Registers or renews `node` for `lease`, and answers the id's mode;
    /// refused with [`MetaError::NodeIdTaken`] while another incarnation
    /// holds the id, and with [`MetaError::NodeRemoved`] for a removed id.
    fn register_node(&self, node: NodeInfo, lease: Duration) -> MetaFuture<'_, NodeMode>;
    /// Ends the lease of `node_id` now if `incarnation` holds it (a node
    /// stopping on purpose, so placement and repair see it gone at once
    /// rather than a lease later); true if it did. Another incarnation's
    /// lease, a dead one, or none: false, nothing changed.
    fn deregister_node(&self, node_id: u64, incarnation: u64) -> MetaFuture<'_, bool>;
    fn list_nodes(&self, include_dead: bool) -> MetaFuture<'_, Vec<NodeStatus>>;
    /// Sets the mode of `node_id` (durably, before it answers) and answers
    /// every mode that is not `Active`, by id. A removed id stays removed.
    fn set_node_mode(&self, node_id: u64, mode: NodeMode) -> MetaFuture<'_, Vec<NodeModeEntry>>;
    /// Every node id whose mode is not `Active`, by id, whether or not
    /// the node is registered.
    fn node_modes(&self) -> MetaFuture<'_, Vec<NodeModeEntry>>;
    /// The cluster's id, created (random, non-zero) if the store has none
    /// yet; every later call, from anyone, returns the same id.
    fn cluster_id(&self) -> MetaFuture<'_, u64>;
}
