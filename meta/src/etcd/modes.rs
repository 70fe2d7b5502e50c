//! Node modes in etcd (see `NodeMode`): two key prefixes, an id's key
//! present while it is in that mode, absent otherwise:
//! - `nodes/leaving/<node_id>`: the id is leaving;
//! - `nodes/removed/<node_id>`: the id is removed, for good.
//!
//! Presence rather than a value, because etcd's comparisons cannot test
//! the value of a key that may be absent (such a compare always fails),
//! while `create_revision == 0` tests absence exactly: a registration's
//! transaction is guarded by "the removed key is absent" (see
//! [`super::claim`]), so a removed id can never register, even racing the
//! removal. Values are the mode's name, for whoever reads etcd by hand.
//!
//! A change is one transaction guarded by the removed key being absent
//! (removed is final), that puts or deletes the two keys and, for a
//! removal, deletes the node's leased keys too: a removed node is dead at
//! once, as in the embedded store.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use trilog_wire::limits::NODE_MODES_MAX;
use trilog_wire::meta::{NodeMode, NodeModeEntry};

use super::{id_of, EtcdMeta};
use crate::error::MetaError;
use crate::state::ModeError;

impl EtcdMeta {
    pub(super) fn leaving_prefix(&self) -> String {
        format!("{}nodes/leaving/", self.prefix)
    }

    pub(super) fn removed_prefix(&self) -> String {
        format!("{}nodes/removed/", self.prefix)
    }

    pub(super) fn leaving_key(&self, node_id: u64) -> String {
        format!("{}{node_id:020}", self.leaving_prefix())
    }

    pub(super) fn removed_key(&self, node_id: u64) -> String {
        format!("{}{node_id:020}", self.removed_prefix())
    }

    /// The two reads that give every mode, for a transaction.
    pub(super) fn mode_reads(&self) -> [TxnOp; 2] {
        let all = || Some(GetOptions::new().with_prefix());
        [
            TxnOp::get(self.leaving_prefix().as_str(), all()),
            TxnOp::get(self.removed_prefix().as_str(), all()),
        ]
    }

    /// Every mode from the answers of [`EtcdMeta::mode_reads`] (the last
    /// two reads of `responses`), by id.
    pub(super) fn modes_of(
        &self,
        responses: &[TxnOpResponse],
    ) -> Result<Vec<NodeModeEntry>, MetaError> {
        let gets: Vec<_> = responses
            .iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(got) => Some(got),
                _ => None,
            })
            .collect();
        let [.., leaving, removed] = gets.as_slice() else {
            return Err(MetaError::BadValue {
                key: self.leaving_prefix(),
                reason: "an answer without the reads of the node modes".into(),
            });
        };
        let mut modes = std::collections::BTreeMap::new();
        for found in leaving.kvs() {
            modes.insert(
                id_of(&self.leaving_prefix(), found.key())?,
                NodeMode::Leaving,
            );
        }
        // Removed wins over a leaving key left by hand: removed is final.
        for found in removed.kvs() {
            modes.insert(
                id_of(&self.removed_prefix(), found.key())?,
                NodeMode::Removed,
            );
        }
        Ok(modes
            .into_iter()
            .map(|(node_id, mode)| NodeModeEntry { node_id, mode })
            .collect())
    }

    pub(super) async fn read_modes(&self) -> Result<Vec<NodeModeEntry>, MetaError> {
        let txn = Txn::new().and_then(self.mode_reads());
        let mut kv = self.client.kv_client();
        let prefix = self.leaving_prefix();
        let answer = self
            .call("node_modes", &prefix, Duration::ZERO, kv.txn(txn))
            .await?;
        self.modes_of(&answer.op_responses())
    }

    /// Sets `node_id`'s mode (see the module doc); answers every mode.
    pub(super) async fn write_mode(
        &self,
        node_id: u64,
        mode: NodeMode,
    ) -> Result<Vec<NodeModeEntry>, MetaError> {
        let before = self.read_modes().await?;
        let known = before.iter().any(|m| m.node_id == node_id);
        if mode != NodeMode::Active && !known && before.len() >= NODE_MODES_MAX {
            return Err(MetaError::Server(ModeError::TooMany.to_string()));
        }
        let (leaving, removed) = (self.leaving_key(node_id), self.removed_key(node_id));
        let name = mode.name();
        let changes = match mode {
            NodeMode::Active => vec![TxnOp::delete(leaving.as_str(), None)],
            NodeMode::Leaving => vec![TxnOp::put(leaving.as_str(), name, None)],
            NodeMode::Removed => vec![
                TxnOp::put(removed.as_str(), name, None),
                TxnOp::delete(leaving.as_str(), None),
                TxnOp::delete(self.alive_key(node_id).as_str(), None),
                TxnOp::delete(self.owner_key(node_id).as_str(), None),
            ],
        };
        let mut then = changes;
        then.extend(self.mode_reads());
        let guard = if mode == NodeMode::Removed {
            // Removing twice is fine (and keeps the first removal).
            vec![]
        } else {
            vec![Compare::create_revision(
                removed.as_str(),
                CompareOp::Equal,
                0,
            )]
        };
        let txn = Txn::new()
            .when(guard)
            .and_then(then)
            .or_else(self.mode_reads());
        let mut kv = self.client.kv_client();
        let answer = self
            .call("set_node_mode", &removed, Duration::ZERO, kv.txn(txn))
            .await?;
        if !answer.succeeded() {
            return Err(MetaError::Server(
                ModeError::Removed {
                    node_id,
                    asked: mode,
                }
                .to_string(),
            ));
        }
        self.modes_of(&answer.op_responses())
    }
}
