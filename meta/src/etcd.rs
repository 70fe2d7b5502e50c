//! The metadata store on etcd: the same semantics as
//! the embedded store (see [`crate::store`]), on a fault-tolerant cluster.
//! Built with the cargo feature `etcd`.
//!
//! Key layout, under a prefix (`/trilog/` by default), ids as 20-digit
//! zero-padded decimals so that keys sort as the ids do:
//! - `logs/<log_id>`: one key per log, its value one wire frame of a
//!   `MetaLog` holding the record (its `version` field 0: the version is the
//!   key's `mod_revision`, which etcd gives every write from its one global
//!   revision counter, exactly as the embedded store gives versions). An
//!   absent key is version 0.
//! - `nodes/alive/<node_id>`: a node's registration, attached to a lease
//!   whose TTL is the node's lease rounded up to whole seconds. When the
//!   lease runs out etcd deletes the key: the node is dead.
//! - `nodes/owner/<node_id>`: on the same lease as `nodes/alive`, the
//!   incarnation that holds the id; a registration by another incarnation
//!   is refused while it lives (see `claim`).
//! - `cluster`: the cluster id, 16 hex digits, created once (see `claim`).
//! - `nodes/info/<node_id>`: the same registration without a lease, so that
//!   `list_nodes(true)` still reports a node whose lease ran out (dead, 0 ms
//!   left). The embedded store forgets dead nodes when it needs room or
//!   restarts; here they stay until the node registers again.
//! - `nodes/leaving/<node_id>`, `nodes/removed/<node_id>`: the node modes
//!   (see `modes`).
//!
//! A CAS is one transaction comparing the key's `mod_revision` (or its
//! `create_revision` with 0 for "absent"), putting on success and reading
//! the key on failure, so a conflict carries what is there. A watch reads
//! the key, then watches it from the revision after that read: no change
//! between the two is missed, and nothing polls. Values are validated on
//! the way in (the record's shape, [`validate_record`]) and on the way out
//! (the frame's checksum and the shape again): a bad value is an error,
//! never a record.
//!
//! Every call has a deadline ([`META_CALL_TIMEOUT`] by default, plus the
//! wait of a watch). As with the embedded store, an error of a CAS leaves
//! its outcome unknown.

mod claim;
mod modes;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use log::warn;
use tokio::time::Instant;
use trilog_protocol::meta_record::validate_record;
use trilog_wire::meta::{
    LogMeta, MetaLog, MetaRegister, NodeInfo, NodeMode, NodeModeEntry, NodeStatus,
};
use trilog_wire::Message;

use crate::error::MetaError;
use crate::limits::META_CALL_TIMEOUT;
use crate::store::{CasOutcome, MetaFuture, MetaStore, Versioned};

/// The prefix of every key, unless the caller picks another.
pub const ETCD_PREFIX_DEFAULT: &str = "/trilog/";

/// A client of the metadata store kept in etcd. Cheap to share: the etcd
/// client multiplexes every call on its channel.
#[derive(Clone)]
pub struct EtcdMeta {
    client: Client,
    endpoints: String,
    prefix: String,
    call_timeout: Duration,
}

impl std::fmt::Debug for EtcdMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdMeta")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl EtcdMeta {
    /// Connects to the etcd cluster at `endpoints` (`host:port` or
    /// `http://host:port`), keys under [`ETCD_PREFIX_DEFAULT`].
    pub async fn connect(endpoints: &[String]) -> Result<EtcdMeta, MetaError> {
        EtcdMeta::connect_with(endpoints, ETCD_PREFIX_DEFAULT, META_CALL_TIMEOUT).await
    }

    /// As [`EtcdMeta::connect`], with the keys under `prefix` and another
    /// deadline per call (a watch gets its wait on top).
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        call_timeout: Duration,
    ) -> Result<EtcdMeta, MetaError> {
        EtcdMeta::connect_tls(endpoints, prefix, call_timeout, None).await
    }

    /// As [`EtcdMeta::connect_with`], over mutual TLS with `tls` when
    /// given (endpoints `https://host:port`): etcd's certificate must be
    /// signed by the identity's CA and valid for the host, and this
    /// identity's certificate is the client's.
    pub async fn connect_tls(
        endpoints: &[String],
        prefix: &str,
        call_timeout: Duration,
        tls: Option<&trilog_tls::TlsIdentity>,
    ) -> Result<EtcdMeta, MetaError> {
        if endpoints.is_empty() {
            return Err(MetaError::InvalidArgument("no etcd endpoint".into()));
        }
        let joined = endpoints.join(",");
        // Only the connect timeout goes to the channel: a channel-wide
        // request timeout would also cut long watches short. Calls get
        // their deadline from `EtcdMeta::call`.
        let mut options = ConnectOptions::new().with_connect_timeout(call_timeout);
        if let Some(tls) = tls {
            options = options.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(tls.ca_pem()))
                    .identity(etcd_client::Identity::from_pem(
                        tls.cert_pem(),
                        tls.key_pem(),
                    )),
            );
        }
        let connecting = Client::connect(endpoints, Some(options));
        let client = match tokio::time::timeout(call_timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(source)) => {
                return Err(MetaError::Etcd {
                    endpoints: joined,
                    op: "connect",
                    key: String::new(),
                    source,
                })
            }
            Err(_) => return Err(timeout("connect", call_timeout)),
        };
        Ok(EtcdMeta {
            client,
            endpoints: joined,
            prefix: prefix.to_string(),
            call_timeout,
        })
    }

    fn log_key(&self, log_id: u64) -> String {
        format!("{}logs/{log_id:020}", self.prefix)
    }

    fn logs_prefix(&self) -> String {
        format!("{}logs/", self.prefix)
    }

    fn alive_prefix(&self) -> String {
        format!("{}nodes/alive/", self.prefix)
    }

    fn info_prefix(&self) -> String {
        format!("{}nodes/info/", self.prefix)
    }

    fn alive_key(&self, node_id: u64) -> String {
        format!("{}{node_id:020}", self.alive_prefix())
    }

    /// One etcd call within the call timeout plus `wait`, its error given
    /// the operation and the key.
    async fn call<T>(
        &self,
        op: &'static str,
        key: &str,
        wait: Duration,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, MetaError> {
        let limit = self.call_timeout + wait;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(MetaError::Etcd {
                endpoints: self.endpoints.clone(),
                op,
                key: key.to_string(),
                source,
            }),
            Err(_) => Err(timeout(op, limit)),
        }
    }

    /// The log's key as it is now, and the store revision of that read.
    async fn read_log(&self, log_id: u64) -> Result<(Versioned, i64), MetaError> {
        let key = self.log_key(log_id);
        let mut kv = self.client.kv_client();
        let answer = self
            .call("get_log", &key, Duration::ZERO, kv.get(key.as_str(), None))
            .await?;
        let revision = answer.header().map_or(0, |h| h.revision());
        let seen = match answer.kvs().first() {
            Some(found) => decode_log(log_id, &key, found)?,
            None => absent(),
        };
        Ok((seen, revision))
    }

    /// Waits for the first change of the log's key after `revision`, until
    /// `deadline`. None: the wait ended first, or etcd cancelled the watch
    /// (a compaction): the caller reads again.
    async fn next_change(
        &self,
        log_id: u64,
        known_version: u64,
        revision: i64,
        deadline: Instant,
    ) -> Result<Option<Versioned>, MetaError> {
        let key = self.log_key(log_id);
        let mut watch = self.client.watch_client();
        let options = WatchOptions::new().with_start_revision(revision.saturating_add(1));
        let mut stream = self
            .call(
                "watch_log",
                &key,
                Duration::ZERO,
                watch.watch(key.as_str(), Some(options)),
            )
            .await?;
        loop {
            let answer = match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => return Ok(None),
                Ok(Err(source)) => {
                    return Err(MetaError::Etcd {
                        endpoints: self.endpoints.clone(),
                        op: "watch_log",
                        key,
                        source,
                    })
                }
                Ok(Ok(None)) => {
                    return Err(MetaError::Etcd {
                        endpoints: self.endpoints.clone(),
                        op: "watch_log",
                        key,
                        source: etcd_client::Error::WatchError("the watch stream ended".into()),
                    })
                }
                Ok(Ok(Some(answer))) => answer,
            };
            if answer.canceled() || answer.compact_revision() != 0 {
                return Ok(None);
            }
            let Some(event) = answer.events().last() else {
                continue;
            };
            let seen = match (event.event_type(), event.kv()) {
                (EventType::Put, Some(found)) => decode_log(log_id, &key, found)?,
                // Logs are never deleted by trilog; a delete by hand reads
                // as the log being gone.
                _ => absent(),
            };
            if seen.version != known_version {
                return Ok(Some(seen));
            }
        }
    }
}

fn timeout(what: &'static str, after: Duration) -> MetaError {
    MetaError::Timeout {
        what,
        after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
    }
}

fn absent() -> Versioned {
    Versioned {
        version: 0,
        record: None,
    }
}

/// A revision from etcd as a version. etcd's revisions are positive; a
/// negative one would be a broken server.
fn version_of(key: &str, revision: i64) -> Result<u64, MetaError> {
    u64::try_from(revision).map_err(|_| MetaError::BadValue {
        key: key.to_string(),
        reason: format!("negative revision {revision}"),
    })
}

/// The value of a log's key: one wire frame of a `MetaLog` (see the module
/// doc). The frame's crc guards the bytes.
fn encode_log(record: LogMeta) -> Vec<u8> {
    Message::MetaLog(MetaLog {
        log_id: record.log_id,
        version: 0,
        record: Some(record),
    })
    .encode(0)
}

fn decode_log(log_id: u64, key: &str, found: &KeyValue) -> Result<Versioned, MetaError> {
    let bad = |reason: String| MetaError::BadValue {
        key: key.to_string(),
        reason,
    };
    let record = match decode_whole(found.value()).map_err(bad)? {
        Message::MetaLog(MetaLog {
            record: Some(record),
            ..
        }) => record,
        other => return Err(bad(format!("a {:?} frame, not a log record", other.kind()))),
    };
    validate_record(log_id, &record).map_err(|e| bad(e.to_string()))?;
    Ok(Versioned {
        version: version_of(key, found.mod_revision())?,
        record: Some(record),
    })
}

/// The value of a node's keys: one wire frame of a `MetaRegister`.
fn encode_node(node: NodeInfo, lease_ms: u32) -> Vec<u8> {
    Message::MetaRegister(MetaRegister { node, lease_ms }).encode(0)
}

fn decode_node(key: &[u8]) -> impl Fn(&[u8]) -> Result<NodeInfo, MetaError> + '_ {
    move |value| {
        let bad = |reason: String| MetaError::BadValue {
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        match decode_whole(value).map_err(bad)? {
            Message::MetaRegister(r) => Ok(r.node),
            other => Err(bad(format!("a {:?} frame, not a node", other.kind()))),
        }
    }
}

/// Exactly one frame, nothing after it.
fn decode_whole(bytes: &[u8]) -> Result<Message, String> {
    let (_, message, used) = trilog_wire::decode(bytes).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} bytes after the frame", bytes.len() - used));
    }
    Ok(message)
}

/// The id at the end of a key under `prefix`.
fn id_of(prefix: &str, key: &[u8]) -> Result<u64, MetaError> {
    let bad = || MetaError::BadValue {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: format!("not {prefix}<decimal id>"),
    };
    let key = std::str::from_utf8(key).map_err(|_| bad())?;
    key.strip_prefix(prefix)
        .and_then(|id| id.parse().ok())
        .ok_or_else(bad)
}

/// A lease of whole seconds, rounded up, at least 1: etcd's TTLs are seconds.
fn ttl_secs(lease: Duration) -> i64 {
    let secs = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

impl MetaStore for EtcdMeta {
    fn get_log(&self, log_id: u64) -> MetaFuture<'_, Versioned> {
        Box::pin(async move { Ok(self.read_log(log_id).await?.0) })
    }

    /// Reads, then watches from the revision after the read, until the
    /// version differs from `known_version` or `wait` passes.
    fn watch_log(
        &self,
        log_id: u64,
        known_version: u64,
        wait: Duration,
    ) -> MetaFuture<'_, Versioned> {
        Box::pin(async move {
            let deadline = Instant::now() + wait;
            loop {
                let (seen, revision) = self.read_log(log_id).await?;
                if seen.version != known_version || Instant::now() >= deadline {
                    return Ok(seen);
                }
                match self
                    .next_change(log_id, known_version, revision, deadline)
                    .await?
                {
                    Some(changed) => return Ok(changed),
                    // The wait ended: the read above is still the state.
                    None if Instant::now() >= deadline => return Ok(seen),
                    // Cancelled by etcd: read and watch again.
                    None => continue,
                }
            }
        })
    }

    fn cas_log(
        &self,
        log_id: u64,
        expected_version: u64,
        record: LogMeta,
    ) -> MetaFuture<'_, CasOutcome> {
        Box::pin(async move {
            validate_record(log_id, &record)
                .map_err(|source| MetaError::InvalidRecord { log_id, source })?;
            let key = self.log_key(log_id);
            let compare = if expected_version == 0 {
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
            } else {
                // A version past i64::MAX cannot exist: compare with a
                // revision no key has, which conflicts, as it should.
                let expected = i64::try_from(expected_version).unwrap_or(i64::MAX);
                Compare::mod_revision(key.as_str(), CompareOp::Equal, expected)
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key.as_str(), encode_log(record), None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let mut kv = self.client.kv_client();
            let answer = self
                .call("cas_log", &key, Duration::ZERO, kv.txn(txn))
                .await?;
            if answer.succeeded() {
                // The transaction's revision is the put's mod_revision.
                let revision = answer.header().map_or(0, |h| h.revision());
                return Ok(CasOutcome::Applied {
                    version: version_of(&key, revision)?,
                });
            }
            let current = match answer.op_responses().first() {
                Some(TxnOpResponse::Get(got)) => match got.kvs().first() {
                    Some(found) => decode_log(log_id, &key, found)?,
                    None => absent(),
                },
                _ => {
                    return Err(MetaError::BadValue {
                        key,
                        reason: "a failed CAS answered without the key's value".into(),
                    })
                }
            };
            Ok(CasOutcome::Conflict(current))
        })
    }

    fn list_logs(&self) -> MetaFuture<'_, Vec<u64>> {
        Box::pin(async move {
            let prefix = self.logs_prefix();
            let options = GetOptions::new().with_prefix().with_keys_only();
            let mut kv = self.client.kv_client();
            let answer = self
                .call(
                    "list_logs",
                    &prefix,
                    Duration::ZERO,
                    kv.get(prefix.as_str(), Some(options)),
                )
                .await?;
            // Fixed-width ids: etcd's key order is the ids' order.
            answer
                .kvs()
                .iter()
                .map(|found| id_of(&prefix, found.key()))
                .collect()
        })
    }

    /// Grants a lease of the lease rounded up to whole seconds, puts the
    /// node's keys (see the module doc) in one transaction guarded by the
    /// owner key (see `claim`), then revokes the lease of the previous
    /// registration, if any, so that renewals do not pile up leases in
    /// etcd. A refused registration revokes the lease it granted.
    fn register_node(&self, node: NodeInfo, lease: Duration) -> MetaFuture<'_, NodeMode> {
        Box::pin(async move {
            let lease_ms = match u32::try_from(lease.as_millis()) {
                Ok(ms) if ms > 0 => ms,
                _ => return Err(MetaError::InvalidArgument(format!("lease of {lease:?}"))),
            };
            let alive_key = self.alive_key(node.node_id);
            let mut leases = self.client.lease_client();
            let granted = self
                .call(
                    "register_node (lease grant)",
                    &alive_key,
                    Duration::ZERO,
                    leases.grant(ttl_secs(lease), None),
                )
                .await?;
            let value = encode_node(node.clone(), lease_ms);
            let claimed = self.claim(&node, value, granted.id()).await;
            // After a renewal the previous lease holds nothing any more;
            // after a refusal the new one holds nothing. After another
            // error the transaction may have applied: nothing is revoked.
            let unused = match &claimed {
                Ok((previous, _)) => Some(*previous).filter(|&l| l != 0 && l != granted.id()),
                Err(MetaError::NodeIdTaken(_) | MetaError::NodeRemoved { .. }) => {
                    Some(granted.id())
                }
                Err(_) => None,
            };
            if let Some(unused) = unused {
                // Nothing is attached to it; if this fails it only lingers
                // until its TTL ends.
                if let Err(e) = self
                    .call(
                        "register_node (lease revoke)",
                        &alive_key,
                        Duration::ZERO,
                        leases.revoke(unused),
                    )
                    .await
                {
                    warn!("{e}");
                }
            }
            claimed.map(|(_, mode)| mode)
        })
    }

    fn deregister_node(&self, node_id: u64, incarnation: u64) -> MetaFuture<'_, bool> {
        Box::pin(self.release(node_id, incarnation))
    }

    fn set_node_mode(&self, node_id: u64, mode: NodeMode) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        Box::pin(self.write_mode(node_id, mode))
    }

    fn node_modes(&self) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        Box::pin(self.read_modes())
    }

    fn cluster_id(&self) -> MetaFuture<'_, u64> {
        Box::pin(self.get_or_create_cluster_id())
    }

    /// Reads both node prefixes in one transaction (one snapshot); a node
    /// is alive while its leased key exists and its lease has time left.
    fn list_nodes(&self, include_dead: bool) -> MetaFuture<'_, Vec<NodeStatus>> {
        Box::pin(async move {
            let (alive_prefix, info_prefix) = (self.alive_prefix(), self.info_prefix());
            let [leaving, removed] = self.mode_reads();
            let txn = Txn::new().and_then([
                TxnOp::get(alive_prefix.as_str(), Some(GetOptions::new().with_prefix())),
                TxnOp::get(info_prefix.as_str(), Some(GetOptions::new().with_prefix())),
                leaving,
                removed,
            ]);
            let mut kv = self.client.kv_client();
            let answer = self
                .call("list_nodes", &alive_prefix, Duration::ZERO, kv.txn(txn))
                .await?;
            let gets: Vec<_> = answer
                .op_responses()
                .into_iter()
                .filter_map(|r| match r {
                    TxnOpResponse::Get(got) => Some(got),
                    _ => None,
                })
                .collect();
            let [alive, info, _, _] = gets.as_slice() else {
                return Err(MetaError::BadValue {
                    key: alive_prefix,
                    reason: "list_nodes answered without its four reads".into(),
                });
            };
            let modes: BTreeMap<u64, NodeMode> = self
                .modes_of(&answer.op_responses())?
                .into_iter()
                .map(|m| (m.node_id, m.mode))
                .collect();
            let mode = |id: u64| modes.get(&id).copied().unwrap_or_default();
            let mut nodes = BTreeMap::new();
            for found in info.kvs() {
                let node_id = id_of(&info_prefix, found.key())?;
                let info = decode_node(found.key())(found.value())?;
                let status = NodeStatus {
                    info,
                    alive: false,
                    lease_remaining_ms: 0,
                    mode: mode(node_id),
                };
                nodes.insert(node_id, status);
            }
            let mut leases = self.client.lease_client();
            for found in alive.kvs() {
                let node_id = id_of(&alive_prefix, found.key())?;
                let info = decode_node(found.key())(found.value())?;
                let key = String::from_utf8_lossy(found.key()).into_owned();
                let ttl = self
                    .call(
                        "list_nodes (lease ttl)",
                        &key,
                        Duration::ZERO,
                        leases.time_to_live(found.lease(), None),
                    )
                    .await?;
                // -1: the lease expired (or was revoked) since the read.
                let remaining_ms = u64::try_from(ttl.ttl()).unwrap_or(0).saturating_mul(1000);
                let status = NodeStatus {
                    info,
                    alive: remaining_ms > 0,
                    lease_remaining_ms: remaining_ms,
                    mode: mode(node_id),
                };
                nodes.insert(node_id, status);
            }
            Ok(nodes
                .into_values()
                .filter(|n| include_dead || n.alive)
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn etcd_keys_parse_back_to_ids() {
        let prefix = "/trilog/logs/";
        let key = format!("{prefix}{:020}", 42u64);
        assert_eq!(id_of(prefix, key.as_bytes()).ok(), Some(42));
        assert!(id_of(prefix, b"/trilog/logs/x").is_err());
        assert!(id_of(prefix, b"/other/00000000000000000042").is_err());
    }

    #[test]
    fn etcd_values_refuse_trailing_bytes_and_other_frames() {
        let record = LogMeta {
            log_id: 7,
            epoch: 1,
            trim_seq: 0,
            segments: vec![],
            deleting: Vec::new(),
            deleted: false,
        };
        let mut bytes = encode_log(record.clone());
        assert!(matches!(decode_whole(&bytes), Ok(Message::MetaLog(_))));
        bytes.push(0);
        assert!(decode_whole(&bytes).is_err());
        let node = NodeInfo {
            node_id: 1,
            host: "h".into(),
            shard_ports: vec![1],
            zone: String::new(),
            capacity_bytes: 0,
            incarnation: 3,
            bytes_used: 0,
            bytes_free: 0,
            full: false,
        };
        let key = b"/trilog/nodes/info/1";
        assert!(decode_node(key)(&encode_log(record)).is_err());
        assert_eq!(
            decode_node(key)(&encode_node(node.clone(), 5)).ok(),
            Some(node)
        );
    }
}
