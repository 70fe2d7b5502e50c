//! The metadata store's state, pure: no IO, no clock, no socket.
//!
//! - Logs: one record per log, with a version. Every successful
//!   compare-and-swap takes the next value of one global revision counter as
//!   the log's new version (as etcd's `mod_revision`), so versions start at 1,
//!   only grow, and are never reused, even across logs; version 0 means
//!   "absent". A record is checked before it is stored (see
//!   [`validate_record`]): a buggy client cannot store a chain of segments
//!   that breaks the data model of docs/wire.md (`LogMeta`).
//! - Leases: a node's registration is alive while `now_ms < expiry_ms`.
//!   Time is passed in by the caller (`now_ms` on a monotonic clock). Leases
//!   are volatile: they are not persisted, and after a restart of the store
//!   nodes appear again as they renew, which they do every third of a lease,
//!   so within one lease the registry is whole again.
//! - Node modes: what the operator decided for a node id (leaving, removed;
//!   see `NodeMode`), persisted with the logs, since it must outlive both
//!   the node's lease and a restart of the store. A removed id is refused
//!   registration for good.

use std::collections::BTreeMap;

use trilog_wire::limits::NODE_MODES_MAX;
use trilog_wire::meta::{LogMeta, NodeInfo, NodeMode, NodeModeEntry, NodeStatus};

// The shape of a valid record is shared with the etcd store and checked by
// the protocol's callers too, so it lives in the protocol crate;
// re-exported for the callers that knew it here.
pub use trilog_protocol::meta_record::{validate_record, RecordError};

use crate::error::NodeIdTaken;
use crate::limits::{LEASE_MS_MAX, LEASE_MS_MIN, LOGS_MAX, NODES_MAX};

/// Why a compare-and-swap did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CasError {
    /// The log is not at the expected version: here is what it is at.
    #[error("version conflict: the log is at version {version}")]
    Conflict {
        version: u64,
        current: Option<LogMeta>,
    },
    #[error("record refused: {0}")]
    Invalid(#[from] RecordError),
    #[error("the store already holds {LOGS_MAX} logs")]
    TooManyLogs,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("lease of {lease_ms} ms outside [{LEASE_MS_MIN}, {LEASE_MS_MAX}] ms")]
    LeaseOutOfRange { lease_ms: u64 },
    #[error("{NODES_MAX} nodes are alive already")]
    TooManyNodes,
    /// The id was decommissioned (`NodeMode::Removed`): never again.
    #[error("node id {node_id} was decommissioned (removed); it cannot register again")]
    Removed { node_id: u64 },
    /// The id's live lease belongs to another incarnation: `holder`.
    #[error("{}", NodeIdTaken::held_by(holder, *lease_remaining_ms))]
    NodeIdTaken {
        holder: Box<NodeInfo>,
        lease_remaining_ms: u64,
    },
}

impl RegisterError {
    /// The refusal as every store reports it, if this is one.
    pub fn node_id_taken(&self) -> Option<NodeIdTaken> {
        match self {
            RegisterError::NodeIdTaken {
                holder,
                lease_remaining_ms,
            } => Some(NodeIdTaken::held_by(holder, *lease_remaining_ms)),
            _ => None,
        }
    }
}

/// Why a node's mode could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// Removed is final.
    #[error("node id {node_id} is removed; a removed id cannot become {} again", asked.name())]
    Removed { node_id: u64, asked: NodeMode },
    #[error("the store already keeps {NODE_MODES_MAX} node modes")]
    TooMany,
}

/// Why a loaded state is not a state this store could have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("log {log_id} appears twice")]
    DuplicateLog { log_id: u64 },
    #[error("log {log_id} has version {version}, outside [1, revision {revision}]")]
    BadVersion {
        log_id: u64,
        version: u64,
        revision: u64,
    },
    #[error("log {log_id}: {source}")]
    Record { log_id: u64, source: RecordError },
    #[error("{count} logs, over the limit of {LOGS_MAX}")]
    TooManyLogs { count: usize },
    #[error("cluster id 0 (0 means \"none yet\" and is never stored)")]
    ZeroClusterId,
    #[error(
        "node {node_id}: mode {mode:?} stored (only leaving and removed are), or stored twice"
    )]
    BadMode { node_id: u64, mode: NodeMode },
    #[error("{count} node modes, over the limit of {NODE_MODES_MAX}")]
    TooManyModes { count: usize },
}

/// A record and the version it was stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord {
    pub version: u64,
    pub record: LogMeta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    info: NodeInfo,
    expiry_ms: u64,
}

/// Logs, their versions and the node leases. See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaState {
    /// The cluster's id, created once (see [`MetaState::cluster_id_or_create`]).
    cluster_id: Option<u64>,
    revision: u64,
    logs: BTreeMap<u64, VersionedRecord>,
    leases: BTreeMap<u64, Lease>,
    /// Every node id whose mode is not `Active`.
    modes: BTreeMap<u64, NodeMode>,
}

impl MetaState {
    /// Rebuilds a state from what was persisted: the revision and every
    /// log's record and version. Refuses anything this store could not have
    /// written (so a corrupt file is never served as if it were valid).
    pub fn from_logs(
        cluster_id: Option<u64>,
        revision: u64,
        logs: impl IntoIterator<Item = (u64, LogMeta)>,
    ) -> Result<MetaState, StateError> {
        if cluster_id == Some(0) {
            return Err(StateError::ZeroClusterId);
        }
        let mut state = MetaState {
            cluster_id,
            revision,
            ..MetaState::default()
        };
        for (version, record) in logs {
            let log_id = record.log_id;
            if version == 0 || version > revision {
                return Err(StateError::BadVersion {
                    log_id,
                    version,
                    revision,
                });
            }
            validate_record(log_id, &record)
                .map_err(|source| StateError::Record { log_id, source })?;
            if state
                .logs
                .insert(log_id, VersionedRecord { version, record })
                .is_some()
            {
                return Err(StateError::DuplicateLog { log_id });
            }
            if state.logs.len() > LOGS_MAX {
                return Err(StateError::TooManyLogs {
                    count: state.logs.len(),
                });
            }
        }
        Ok(state)
    }

    /// Adds the persisted node modes to a state made by
    /// [`MetaState::from_logs`]; refuses what this store never writes
    /// (an active mode, an id twice, too many).
    pub fn with_modes(
        mut self,
        modes: impl IntoIterator<Item = NodeModeEntry>,
    ) -> Result<MetaState, StateError> {
        for NodeModeEntry { node_id, mode } in modes {
            if mode == NodeMode::Active || self.modes.insert(node_id, mode).is_some() {
                return Err(StateError::BadMode { node_id, mode });
            }
            if self.modes.len() > NODE_MODES_MAX {
                return Err(StateError::TooManyModes {
                    count: self.modes.len(),
                });
            }
        }
        Ok(self)
    }

    /// The mode of `node_id` (`Active` unless set otherwise).
    pub fn mode(&self, node_id: u64) -> NodeMode {
        self.modes.get(&node_id).copied().unwrap_or_default()
    }

    /// Every node id whose mode is not `Active`, by id.
    pub fn modes(&self) -> Vec<NodeModeEntry> {
        self.modes
            .iter()
            .map(|(&node_id, &mode)| NodeModeEntry { node_id, mode })
            .collect()
    }

    /// Sets the mode of `node_id`. Returns whether it changed (the caller
    /// persists the state then). A removed id stays removed; on any error
    /// nothing changes.
    pub fn set_mode(&mut self, node_id: u64, mode: NodeMode) -> Result<bool, ModeError> {
        let current = self.mode(node_id);
        if current == mode {
            return Ok(false);
        }
        if current == NodeMode::Removed {
            return Err(ModeError::Removed {
                node_id,
                asked: mode,
            });
        }
        if mode == NodeMode::Active {
            self.modes.remove(&node_id);
        } else {
            if current == NodeMode::Active && self.modes.len() >= NODE_MODES_MAX {
                return Err(ModeError::TooMany);
            }
            self.modes.insert(node_id, mode);
        }
        if mode == NodeMode::Removed {
            // Dead at once: nothing may be placed on it, and it learns it
            // at its next renewal, which is refused.
            self.leases.remove(&node_id);
        }
        debug_assert!(self.modes.values().all(|m| *m != NodeMode::Active));
        Ok(true)
    }

    /// The cluster's id, if created yet.
    pub fn cluster_id(&self) -> Option<u64> {
        self.cluster_id
    }

    /// The cluster's id, created from `candidate` (a random non-zero value
    /// the caller drew: this state has no random source) if there is none
    /// yet. Once created it never changes: later candidates are ignored.
    /// The caller persists the state when the answer is `candidate`.
    pub fn cluster_id_or_create(&mut self, candidate: u64) -> u64 {
        assert_ne!(candidate, 0, "a cluster id is never 0");
        *self.cluster_id.get_or_insert(candidate)
    }

    /// The last revision handed out (0 before the first CAS).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The log's version, 0 when it does not exist.
    pub fn version(&self, log_id: u64) -> u64 {
        self.logs.get(&log_id).map_or(0, |v| v.version)
    }

    /// The log's version and record; `(0, None)` when it does not exist.
    pub fn get(&self, log_id: u64) -> (u64, Option<&LogMeta>) {
        match self.logs.get(&log_id) {
            Some(v) => (v.version, Some(&v.record)),
            None => (0, None),
        }
    }

    /// Every log with its version, by log id.
    pub fn logs(&self) -> impl Iterator<Item = &VersionedRecord> {
        self.logs.values()
    }

    /// Every log id, ascending.
    pub fn list_logs(&self) -> Vec<u64> {
        self.logs.keys().copied().collect()
    }

    /// Stores `record` as log `log_id` if the log is at `expected_version`
    /// (0: only if it does not exist yet) and the record is valid. Returns
    /// the new version. On any error nothing changes.
    pub fn cas(
        &mut self,
        log_id: u64,
        expected_version: u64,
        record: LogMeta,
    ) -> Result<u64, CasError> {
        validate_record(log_id, &record)?;
        let current = self.version(log_id);
        if current != expected_version {
            let (version, record) = self.get(log_id);
            return Err(CasError::Conflict {
                version,
                current: record.cloned(),
            });
        }
        if current == 0 && self.logs.len() >= LOGS_MAX {
            return Err(CasError::TooManyLogs);
        }
        let version = self.revision + 1;
        self.revision = version;
        self.logs
            .insert(log_id, VersionedRecord { version, record });
        debug_assert!(self.logs.values().all(|v| v.version <= self.revision));
        Ok(version)
    }

    /// Registers or renews node `info.node_id`: alive until `now_ms +
    /// lease_ms`. Returns that expiry. A new node is refused only when
    /// [`NODES_MAX`] nodes are alive; dead registrations make room. A
    /// registration of a node id whose lease is alive and belongs to
    /// another incarnation is refused ([`RegisterError::NodeIdTaken`]): two
    /// processes never hold one id at once. The same incarnation renews
    /// (a restarted node on its own data directory), and anyone may take
    /// an id whose lease ran out.
    pub fn register(
        &mut self,
        info: NodeInfo,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<u64, RegisterError> {
        if !(LEASE_MS_MIN..=LEASE_MS_MAX).contains(&lease_ms) {
            return Err(RegisterError::LeaseOutOfRange { lease_ms });
        }
        if self.mode(info.node_id) == NodeMode::Removed {
            return Err(RegisterError::Removed {
                node_id: info.node_id,
            });
        }
        if let Some(held) = self.leases.get(&info.node_id) {
            if now_ms < held.expiry_ms && held.info.incarnation != info.incarnation {
                return Err(RegisterError::NodeIdTaken {
                    holder: Box::new(held.info.clone()),
                    lease_remaining_ms: held.expiry_ms - now_ms,
                });
            }
        }
        if !self.leases.contains_key(&info.node_id) && self.leases.len() >= NODES_MAX {
            self.leases.retain(|_, l| now_ms < l.expiry_ms);
            if self.leases.len() >= NODES_MAX {
                return Err(RegisterError::TooManyNodes);
            }
        }
        let expiry_ms = now_ms.saturating_add(lease_ms);
        self.leases.insert(info.node_id, Lease { info, expiry_ms });
        debug_assert!(self.leases.len() <= NODES_MAX);
        Ok(expiry_ms)
    }

    /// Ends `node_id`'s lease at `now_ms` if `incarnation` holds it (a node
    /// that stops on purpose): it is dead from now on, listed among the
    /// dead as a lease that ran out would be. True if a live lease of that
    /// incarnation ended; another incarnation's lease is left alone (the
    /// id's new holder must not lose it to an old process).
    pub fn deregister(&mut self, node_id: u64, incarnation: u64, now_ms: u64) -> bool {
        match self.leases.get_mut(&node_id) {
            Some(held) if held.info.incarnation == incarnation && now_ms < held.expiry_ms => {
                held.expiry_ms = now_ms;
                true
            }
            _ => false,
        }
    }

    /// The registered nodes by node id: those alive at `now_ms`, and the
    /// dead ones too if `include_dead`.
    pub fn nodes(&self, now_ms: u64, include_dead: bool) -> Vec<NodeStatus> {
        self.leases
            .values()
            .map(|l| NodeStatus {
                info: l.info.clone(),
                alive: now_ms < l.expiry_ms,
                lease_remaining_ms: l.expiry_ms.saturating_sub(now_ms),
                mode: self.mode(l.info.node_id),
            })
            .filter(|s| include_dead || s.alive)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trilog_wire::limits::REPLICAS_MAX;
    use trilog_wire::meta::SegmentMeta;

    fn seg(id: u64, first_seq: u64, sealed_len: Option<u64>) -> SegmentMeta {
        SegmentMeta {
            id,
            replicas: vec![1, 2, 3],
            first_seq,
            epoch: 1,
            sealed_len,
        }
    }

    fn log(log_id: u64, segments: Vec<SegmentMeta>) -> LogMeta {
        LogMeta {
            log_id,
            epoch: 1,
            trim_seq: 0,
            segments,
            deleting: Vec::new(),
            deleted: false,
        }
    }

    fn node(node_id: u64) -> NodeInfo {
        NodeInfo {
            node_id,
            host: "127.0.0.1".into(),
            shard_ports: vec![7000],
            zone: "z".into(),
            capacity_bytes: 1,
            incarnation: node_id.wrapping_add(100),
            bytes_used: 0,
            bytes_free: 0,
            full: false,
        }
    }

    #[test]
    fn create_only_if_absent() {
        let mut s = MetaState::default();
        assert_eq!(s.get(7), (0, None));
        let r = log(7, vec![seg(0, 0, None)]);
        assert_eq!(s.cas(7, 0, r.clone()), Ok(1));
        assert_eq!(s.get(7), (1, Some(&r)));
        // A second create conflicts and reports what is there.
        assert_eq!(
            s.cas(7, 0, r.clone()),
            Err(CasError::Conflict {
                version: 1,
                current: Some(r.clone())
            })
        );
        // Expecting a version of an absent log conflicts with (0, None).
        assert_eq!(
            s.cas(8, 3, log(8, vec![])),
            Err(CasError::Conflict {
                version: 0,
                current: None
            })
        );
        assert_eq!(s.list_logs(), vec![7]);
    }

    #[test]
    fn versions_come_from_one_revision_counter() {
        let mut s = MetaState::default();
        assert_eq!(s.cas(1, 0, log(1, vec![])), Ok(1));
        assert_eq!(s.cas(2, 0, log(2, vec![])), Ok(2));
        let sealed = log(1, vec![seg(0, 0, Some(5)), seg(1, 5, None)]);
        assert_eq!(s.cas(1, 1, sealed.clone()), Ok(3));
        assert_eq!(s.revision(), 3);
        assert_eq!(s.get(1), (3, Some(&sealed)));
        assert_eq!(s.version(2), 2);
        // A stale version conflicts and changes nothing.
        let before = s.clone();
        assert!(matches!(
            s.cas(1, 1, log(1, vec![])),
            Err(CasError::Conflict { version: 3, .. })
        ));
        assert_eq!(s, before);
        assert_eq!(s.list_logs(), vec![1, 2]);
    }

    #[test]
    fn invalid_records_are_refused_and_change_nothing() {
        let mut s = MetaState::default();
        assert_eq!(s.cas(1, 0, log(1, vec![seg(0, 0, None)])), Ok(1));
        let before = s.clone();
        let bad = |r: LogMeta, s: &mut MetaState| match s.cas(1, 1, r) {
            Err(CasError::Invalid(e)) => e,
            other => panic!("accepted or wrong error: {other:?}"),
        };
        assert_eq!(
            bad(log(2, vec![]), &mut s),
            RecordError::LogIdMismatch { key: 1, record: 2 }
        );
        assert_eq!(
            bad(log(1, vec![seg(1, 0, Some(5)), seg(1, 5, None)]), &mut s),
            RecordError::SegmentIdOrder {
                index: 1,
                expected: 2,
                found: 1
            }
        );
        assert_eq!(
            bad(log(1, vec![seg(0, 0, None), seg(1, 0, None)]), &mut s),
            RecordError::OpenNotLast { segment: 0 }
        );
        assert_eq!(
            bad(log(1, vec![seg(0, 0, Some(5)), seg(1, 6, None)]), &mut s),
            RecordError::FirstSeqMismatch {
                segment: 1,
                expected: 5,
                found: 6
            }
        );
        assert_eq!(
            bad(log(1, vec![seg(0, u64::MAX, Some(1))]), &mut s),
            RecordError::SeqOverflow { segment: 0 }
        );
        let mut high = log(1, vec![seg(0, 0, None)]);
        high.segments[0].epoch = 2;
        assert_eq!(
            bad(high, &mut s),
            RecordError::EpochAboveRecord {
                segment: 0,
                segment_epoch: 2,
                record_epoch: 1
            }
        );
        let mut empty = log(1, vec![seg(0, 0, None)]);
        empty.segments[0].replicas.clear();
        assert_eq!(bad(empty, &mut s), RecordError::NoReplicas { segment: 0 });
        let mut dup = log(1, vec![seg(0, 0, None)]);
        dup.segments[0].replicas = vec![4, 5, 4];
        assert_eq!(
            bad(dup, &mut s),
            RecordError::DuplicateReplica {
                segment: 0,
                node: 4
            }
        );
        let mut many = log(1, vec![seg(0, 0, None)]);
        many.segments[0].replicas = (0..=REPLICAS_MAX as u64).collect();
        assert_eq!(
            bad(many, &mut s),
            RecordError::TooManyReplicas {
                segment: 0,
                count: REPLICAS_MAX + 1
            }
        );
        assert_eq!(s, before);
    }

    #[test]
    fn valid_shapes_are_accepted() {
        let mut s = MetaState::default();
        // Trimmed front: ids start above 0; a sealed last segment; empty sealed segments.
        let r = log(
            1,
            vec![
                seg(4, 100, Some(0)),
                seg(5, 100, Some(7)),
                seg(6, 107, Some(3)),
            ],
        );
        assert_eq!(s.cas(1, 0, r), Ok(1));
        let mut older = log(1, vec![seg(4, 100, Some(0)), seg(5, 100, None)]);
        older.epoch = 3;
        older.segments[1].epoch = 3;
        assert_eq!(s.cas(1, 1, older), Ok(2));
        assert_eq!(s.cas(2, 0, log(2, vec![])), Ok(3));
    }

    #[test]
    fn leases_expire_and_renew() {
        let mut s = MetaState::default();
        assert_eq!(s.register(node(1), 1000, 50), Ok(1050));
        assert_eq!(s.register(node(2), 100, 50), Ok(150));
        let at = |s: &MetaState, now, dead| -> Vec<(u64, bool, u64)> {
            s.nodes(now, dead)
                .iter()
                .map(|n| (n.info.node_id, n.alive, n.lease_remaining_ms))
                .collect()
        };
        assert_eq!(at(&s, 100, false), vec![(1, true, 950), (2, true, 50)]);
        assert_eq!(at(&s, 150, false), vec![(1, true, 900)]);
        assert_eq!(at(&s, 150, true), vec![(1, true, 900), (2, false, 0)]);
        // Renewal is an upsert: the new info and the new expiry win.
        let mut moved = node(2);
        moved.host = "10.0.0.2".into();
        assert_eq!(s.register(moved.clone(), 100, 200), Ok(300));
        let nodes = s.nodes(250, false);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].info, moved);
        assert_eq!(nodes[1].lease_remaining_ms, 50);
    }

    #[test]
    fn deregistration_ends_only_its_own_incarnations_lease() {
        let mut s = MetaState::default();
        assert_eq!(s.register(node(1), 1000, 0), Ok(1000));
        assert!(
            !s.deregister(1, node(1).incarnation + 1, 10),
            "another incarnation"
        );
        assert!(!s.deregister(7, node(7).incarnation, 10), "no such node");
        assert!(s.nodes(10, false).iter().any(|n| n.info.node_id == 1));
        assert!(s.deregister(1, node(1).incarnation, 10));
        assert!(s.nodes(10, false).is_empty());
        let dead = s.nodes(10, true);
        assert_eq!(dead.len(), 1);
        assert!(!dead[0].alive);
        // Once dead, nothing more to end; and the id is free at once.
        assert!(!s.deregister(1, node(1).incarnation, 11));
        let mut next = node(1);
        next.incarnation += 1;
        assert_eq!(s.register(next, 1000, 12), Ok(1012));
    }

    #[test]
    fn a_live_id_is_refused_to_another_incarnation() {
        let mut s = MetaState::default();
        assert_eq!(s.register(node(2), 1000, 0), Ok(1000));
        let mut impostor = node(2);
        impostor.incarnation += 1;
        impostor.shard_ports = vec![7999];
        let before = s.clone();
        let refused = s.register(impostor.clone(), 1000, 400);
        assert_eq!(
            refused,
            Err(RegisterError::NodeIdTaken {
                holder: Box::new(node(2)),
                lease_remaining_ms: 600,
            })
        );
        assert_eq!(
            refused.expect_err("refused").node_id_taken(),
            Some(NodeIdTaken {
                node_id: 2,
                holder: "127.0.0.1:7000".into(),
                lease_remaining_ms: 600,
            })
        );
        assert_eq!(s, before, "a refusal changes nothing");
        // The holder renews, even from another address (a restart on its
        // own data directory, with other ports).
        let mut moved = node(2);
        moved.shard_ports = vec![7100];
        assert_eq!(s.register(moved, 1000, 500), Ok(1500));
        // Still refused while the renewed lease lives, up to its last ms.
        assert!(matches!(
            s.register(impostor.clone(), 1000, 1499),
            Err(RegisterError::NodeIdTaken {
                lease_remaining_ms: 1,
                ..
            })
        ));
        // Once the lease ran out the id is free: the newcomer takes it, and
        // then the old incarnation is the one refused.
        assert_eq!(s.register(impostor, 1000, 1500), Ok(2500));
        assert!(matches!(
            s.register(node(2), 1000, 1600),
            Err(RegisterError::NodeIdTaken { .. })
        ));
        // Other ids are not affected.
        assert_eq!(s.register(node(3), 1000, 1600), Ok(2600));
    }

    #[test]
    fn the_cluster_id_is_created_once() {
        let mut s = MetaState::default();
        assert_eq!(s.cluster_id(), None);
        assert_eq!(s.cluster_id_or_create(77), 77);
        assert_eq!(s.cluster_id_or_create(78), 77);
        assert_eq!(s.cluster_id(), Some(77));
        assert_eq!(
            MetaState::from_logs(Some(0), 0, vec![]),
            Err(StateError::ZeroClusterId)
        );
        let back = MetaState::from_logs(Some(77), 0, vec![]).expect("valid");
        assert_eq!(back.cluster_id(), Some(77));
    }

    #[test]
    fn lease_bounds_and_node_limit() {
        let mut s = MetaState::default();
        assert_eq!(
            s.register(node(1), 0, 0),
            Err(RegisterError::LeaseOutOfRange { lease_ms: 0 })
        );
        assert_eq!(
            s.register(node(1), LEASE_MS_MAX + 1, 0),
            Err(RegisterError::LeaseOutOfRange {
                lease_ms: LEASE_MS_MAX + 1
            })
        );
        for id in 0..NODES_MAX as u64 {
            assert!(s.register(node(id), 100, 0).is_ok());
        }
        // Full of live nodes: a new one is refused, a renewal is not.
        assert_eq!(
            s.register(node(u64::MAX), 100, 50),
            Err(RegisterError::TooManyNodes)
        );
        assert_eq!(s.register(node(0), 100, 50), Ok(150));
        // Once the others are dead they make room.
        assert_eq!(s.register(node(u64::MAX), 100, 120), Ok(220));
        assert_eq!(s.nodes(120, true).len(), 2);
    }

    #[test]
    fn from_logs_refuses_what_could_not_have_been_written() {
        let ok = MetaState::from_logs(
            None,
            5,
            vec![(5, log(1, vec![])), (2, log(2, vec![seg(0, 0, None)]))],
        );
        let ok = ok.expect("valid state");
        assert_eq!(ok.revision(), 5);
        assert_eq!(ok.version(1), 5);
        assert_eq!(ok.version(2), 2);
        assert_eq!(
            MetaState::from_logs(None, 5, vec![(6, log(1, vec![]))]),
            Err(StateError::BadVersion {
                log_id: 1,
                version: 6,
                revision: 5
            })
        );
        assert_eq!(
            MetaState::from_logs(None, 5, vec![(0, log(1, vec![]))]),
            Err(StateError::BadVersion {
                log_id: 1,
                version: 0,
                revision: 5
            })
        );
        assert_eq!(
            MetaState::from_logs(None, 5, vec![(1, log(1, vec![])), (2, log(1, vec![]))]),
            Err(StateError::DuplicateLog { log_id: 1 })
        );
        assert!(matches!(
            MetaState::from_logs(
                None,
                5,
                vec![(1, log(1, vec![seg(0, 0, None), seg(1, 0, None)]))]
            ),
            Err(StateError::Record { log_id: 1, .. })
        ));
    }
}
