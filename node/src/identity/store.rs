//! What the identity checks ask the metadata store, at start-up: the
//! cluster id, whether another incarnation holds this node id now, and
//! (for an empty data directory) whether any segment lists this node id as
//! a replica. Every call is retried, with a bounded backoff, until
//! [`START_META_WAIT_MS`] has passed since the first: a node started
//! before its store waits for it, but not forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use trilog_meta::{MetaAddr, MetaError, MetaStore, NodeIdTaken};

use super::decide::ListedReplica;
use super::IdentityError;
use crate::limits::{START_META_BACKOFF_MS_MAX, START_META_CALL_TIMEOUT_MS, START_META_WAIT_MS};

/// A connection to the store, with the deadline of the whole start-up.
pub struct StartStore {
    addr: MetaAddr,
    store: Arc<dyn MetaStore>,
    deadline: Instant,
}

impl StartStore {
    pub async fn connect(
        addr: &MetaAddr,
        tls: Option<&Arc<trilog_tls::TlsIdentity>>,
    ) -> Result<StartStore, IdentityError> {
        let deadline = Instant::now() + Duration::from_millis(START_META_WAIT_MS);
        let call_timeout = Duration::from_millis(START_META_CALL_TIMEOUT_MS);
        let store = retry(addr, "connect", deadline, || {
            addr.connect_tls(call_timeout, tls)
        })
        .await?;
        Ok(StartStore {
            addr: addr.clone(),
            store,
            deadline,
        })
    }

    pub async fn cluster_id(&self) -> Result<u64, IdentityError> {
        retry(&self.addr, "cluster id", self.deadline, || {
            self.store.cluster_id()
        })
        .await
    }

    /// An error if node `node_id` has a live registration of an incarnation
    /// other than `ours` (None: this directory has no incarnation yet, so
    /// any live registration of the id is another process's).
    pub async fn check_not_held(
        &self,
        node_id: u64,
        ours: Option<u64>,
    ) -> Result<(), IdentityError> {
        let nodes = retry(&self.addr, "list nodes", self.deadline, || {
            self.store.list_nodes(false)
        })
        .await?;
        let holder = nodes
            .iter()
            .find(|n| n.alive && n.info.node_id == node_id && Some(n.info.incarnation) != ours);
        match holder {
            Some(h) => Err(NodeIdTaken::held_by(&h.info, h.lease_remaining_ms).into()),
            None => Ok(()),
        }
    }

    /// The first segment (by log, then segment) whose replicas include
    /// `node_id`, and how many do, reading every log's record.
    pub async fn listed_replica(
        &self,
        node_id: u64,
    ) -> Result<Option<ListedReplica>, IdentityError> {
        let logs = retry(&self.addr, "list logs", self.deadline, || {
            self.store.list_logs()
        })
        .await?;
        let mut first = None;
        let mut segments = 0;
        for log_id in logs {
            let seen = retry(&self.addr, "get log", self.deadline, || {
                self.store.get_log(log_id)
            })
            .await?;
            let Some(record) = seen.record else { continue };
            for segment in record
                .segments
                .iter()
                .filter(|s| s.replicas.contains(&node_id))
            {
                first.get_or_insert((log_id, segment.id));
                segments += 1;
            }
        }
        Ok(first.map(|(log_id, segment)| ListedReplica {
            log_id,
            segment,
            segments,
        }))
    }
}

/// `call` until it succeeds or `deadline` passes (then its last error).
async fn retry<T, F, Fut>(
    addr: &MetaAddr,
    what: &'static str,
    deadline: Instant,
    mut call: F,
) -> Result<T, IdentityError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MetaError>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(source) if Instant::now() + backoff >= deadline => {
                return Err(IdentityError::Meta {
                    meta: addr.to_string(),
                    what,
                    waited_ms: START_META_WAIT_MS,
                    source: Box::new(source),
                })
            }
            Err(e) => {
                tracing::warn!("metadata store {addr}: {what}: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(START_META_BACKOFF_MS_MAX));
            }
        }
    }
}
