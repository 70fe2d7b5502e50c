//! A node's registration in etcd, refused while another incarnation holds
//! the node id, and the cluster id, created once.
//!
//! Besides `nodes/alive/<id>` and `nodes/info/<id>` (see the parent
//! module), a registration puts `nodes/owner/<id>` on the same lease, its
//! value the registering incarnation in decimal. The puts are one
//! transaction guarded by the owner key: "absent" (`create_revision` 0: no
//! live registration, the id is free) or "value equal to my incarnation"
//! (a renewal, or a restart of the same node while its old lease lives).
//! If the guard fails, the same transaction reads the owner and alive keys:
//! another incarnation is refused with [`NodeIdTaken`] (its address from
//! the alive key, its time left from the owner key's lease); otherwise the
//! guard is chosen again from what was read and the transaction retried, at
//! most [`CLAIM_ATTEMPTS_MAX`] times (each retry means the key changed
//! under us: a lease that ran out, another registration in between).
//!
//! The transaction is also guarded by the id's removed key being absent
//! (see [`super::modes`]), and reads its leaving key on success: a removed
//! id is refused with [`MetaError::NodeRemoved`], and a registration
//! answers the id's mode.
//!
//! A node stopping on purpose deletes its owner and alive keys in one
//! transaction guarded by the owner key holding its incarnation (see
//! `release`): only its own registration goes.
//!
//! The cluster id is the key `cluster`, 16 hex digits, put by a
//! create-if-absent transaction that reads the key when it exists.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use trilog_wire::meta::{NodeInfo, NodeMode};

use super::{decode_node, EtcdMeta};
use crate::cluster_id::{format_cluster_id, new_cluster_id, parse_cluster_id};
use crate::error::{MetaError, NodeIdTaken};

/// How many times a registration re-reads and retries its transaction
/// when the owner key changed between two attempts.
pub const CLAIM_ATTEMPTS_MAX: usize = 4;

/// What the owner key says, as a guard for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// No live registration: create the owner key.
    Absent,
    /// Ours: renew.
    Ours,
}

/// What a failed guard read back.
enum Seen {
    Retry(Guard),
    Taken(NodeIdTaken),
    Removed,
}

impl EtcdMeta {
    pub(super) fn owner_key(&self, node_id: u64) -> String {
        format!("{}nodes/owner/{node_id:020}", self.prefix)
    }

    fn cluster_key(&self) -> String {
        format!("{}cluster", self.prefix)
    }

    /// Puts the node's keys on `lease_id` if the id is free or ours and
    /// not removed (see the module doc). Returns the lease the alive key
    /// had before (0 if none), for the caller to revoke, and the id's mode.
    pub(super) async fn claim(
        &self,
        node: &NodeInfo,
        value: Vec<u8>,
        lease_id: i64,
    ) -> Result<(i64, NodeMode), MetaError> {
        let owner_key = self.owner_key(node.node_id);
        let alive_key = self.alive_key(node.node_id);
        let removed_key = self.removed_key(node.node_id);
        let leaving_key = self.leaving_key(node.node_id);
        let info_key = format!("{}{:020}", self.info_prefix(), node.node_id);
        let mine = node.incarnation.to_string();
        let leased = PutOptions::new().with_lease(lease_id).with_prev_key();
        // A renewal is the common case: guess it first.
        let mut guard = Guard::Ours;
        for _ in 0..CLAIM_ATTEMPTS_MAX {
            let compare = match guard {
                Guard::Absent => Compare::create_revision(owner_key.as_str(), CompareOp::Equal, 0),
                Guard::Ours => Compare::value(owner_key.as_str(), CompareOp::Equal, mine.as_str()),
            };
            let not_removed = Compare::create_revision(removed_key.as_str(), CompareOp::Equal, 0);
            let txn = Txn::new()
                .when([compare, not_removed])
                .and_then([
                    TxnOp::put(alive_key.as_str(), value.clone(), Some(leased.clone())),
                    TxnOp::put(info_key.as_str(), value.clone(), None),
                    TxnOp::put(
                        owner_key.as_str(),
                        mine.as_str(),
                        Some(PutOptions::new().with_lease(lease_id)),
                    ),
                    TxnOp::get(leaving_key.as_str(), None),
                ])
                .or_else([
                    TxnOp::get(owner_key.as_str(), None),
                    TxnOp::get(alive_key.as_str(), None),
                    TxnOp::get(removed_key.as_str(), None),
                ]);
            let mut kv = self.client.kv_client();
            let answer = self
                .call("register_node", &owner_key, Duration::ZERO, kv.txn(txn))
                .await?;
            let responses = answer.op_responses();
            if answer.succeeded() {
                let previous = responses.iter().find_map(|r| match r {
                    TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.lease()),
                    _ => None,
                });
                let leaving = responses.iter().any(|r| match r {
                    TxnOpResponse::Get(got) => !got.kvs().is_empty(),
                    _ => false,
                });
                let mode = if leaving {
                    NodeMode::Leaving
                } else {
                    NodeMode::Active
                };
                return Ok((previous.unwrap_or(0), mode));
            }
            match self.seen(node, &owner_key, &responses).await? {
                Seen::Retry(next) => guard = next,
                Seen::Taken(taken) => return Err(MetaError::NodeIdTaken(taken)),
                Seen::Removed => {
                    return Err(MetaError::NodeRemoved {
                        node_id: node.node_id,
                    })
                }
            }
        }
        Err(MetaError::Server(format!(
            "registration of node {}: {owner_key} kept changing over {CLAIM_ATTEMPTS_MAX} attempts",
            node.node_id
        )))
    }

    /// Ends the registration of `node_id` if `incarnation` owns it: one
    /// transaction guarded by the owner key's value deletes the owner and
    /// alive keys (the info key stays, so the node is listed dead), then
    /// the lease they were on is revoked, best effort (it holds nothing
    /// more; left alone it ends with its TTL). True if the keys went.
    pub(super) async fn release(&self, node_id: u64, incarnation: u64) -> Result<bool, MetaError> {
        let owner_key = self.owner_key(node_id);
        let alive_key = self.alive_key(node_id);
        let mine = incarnation.to_string();
        let txn = Txn::new()
            .when([Compare::value(
                owner_key.as_str(),
                CompareOp::Equal,
                mine.as_str(),
            )])
            .and_then([
                TxnOp::delete(
                    owner_key.as_str(),
                    Some(DeleteOptions::new().with_prev_key()),
                ),
                TxnOp::delete(alive_key.as_str(), None),
            ]);
        let mut kv = self.client.kv_client();
        let answer = self
            .call("deregister_node", &owner_key, Duration::ZERO, kv.txn(txn))
            .await?;
        if !answer.succeeded() {
            return Ok(false);
        }
        let lease = answer.op_responses().iter().find_map(|r| match r {
            TxnOpResponse::Delete(deleted) => deleted.prev_kvs().first().map(|kv| kv.lease()),
            _ => None,
        });
        if let Some(lease) = lease.filter(|&l| l != 0) {
            let mut leases = self.client.lease_client();
            if let Err(e) = self
                .call(
                    "deregister_node (lease revoke)",
                    &owner_key,
                    Duration::ZERO,
                    leases.revoke(lease),
                )
                .await
            {
                log::warn!("{e}");
            }
        }
        Ok(true)
    }

    /// Reads what a failed guard found: the owner key and the alive key.
    async fn seen(
        &self,
        node: &NodeInfo,
        owner_key: &str,
        responses: &[TxnOpResponse],
    ) -> Result<Seen, MetaError> {
        let mut gets = responses.iter().filter_map(|r| match r {
            TxnOpResponse::Get(got) => Some(got),
            _ => None,
        });
        let (Some(owner), Some(alive), Some(removed)) = (gets.next(), gets.next(), gets.next())
        else {
            return Err(MetaError::BadValue {
                key: owner_key.to_string(),
                reason: "a failed registration answered without its three reads".into(),
            });
        };
        if !removed.kvs().is_empty() {
            return Ok(Seen::Removed);
        }
        let Some(owner) = owner.kvs().first() else {
            return Ok(Seen::Retry(Guard::Absent));
        };
        let holder: u64 = std::str::from_utf8(owner.value())
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| MetaError::BadValue {
                key: owner_key.to_string(),
                reason: "not a decimal incarnation".into(),
            })?;
        if holder == node.incarnation {
            return Ok(Seen::Retry(Guard::Ours));
        }
        let mut leases = self.client.lease_client();
        let ttl = self
            .call(
                "register_node (lease ttl)",
                owner_key,
                Duration::ZERO,
                leases.time_to_live(owner.lease(), None),
            )
            .await?;
        let lease_remaining_ms = u64::try_from(ttl.ttl()).unwrap_or(0).saturating_mul(1000);
        let taken = match alive.kvs().first() {
            Some(found) => {
                let info = decode_node(found.key())(found.value())?;
                NodeIdTaken::held_by(&info, lease_remaining_ms)
            }
            None => NodeIdTaken {
                node_id: node.node_id,
                holder: format!("an unknown address (incarnation {holder})"),
                lease_remaining_ms,
            },
        };
        Ok(Seen::Taken(taken))
    }

    /// The cluster id: created by a create-if-absent transaction that reads
    /// the key when it is there already.
    pub(super) async fn get_or_create_cluster_id(&self) -> Result<u64, MetaError> {
        let key = self.cluster_key();
        let candidate = new_cluster_id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), format_cluster_id(candidate), None)])
            .or_else([TxnOp::get(key.as_str(), Some(GetOptions::new()))]);
        let mut kv = self.client.kv_client();
        let answer = self
            .call("cluster_id", &key, Duration::ZERO, kv.txn(txn))
            .await?;
        if answer.succeeded() {
            return Ok(candidate);
        }
        let found = answer.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(got) => got.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let bad = |reason: &str| MetaError::BadValue {
            key: key.clone(),
            reason: reason.to_string(),
        };
        let value = found.ok_or_else(|| bad("present, then absent in the same transaction"))?;
        std::str::from_utf8(&value)
            .ok()
            .and_then(parse_cluster_id)
            .ok_or_else(|| bad("not 16 hex digits of a non-zero cluster id"))
    }
}
