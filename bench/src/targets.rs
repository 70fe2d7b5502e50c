//! The systems the load generator drives, each behind [`Target`]: trilog's
//! producer, and the baselines' clients (`trilog-baselines`). Every one
//! resolves an append call once the whole batch is durable on the replicas
//! the system waits for.

#[cfg(feature = "etcd")]
use trilog_baselines::etcd::EtcdLog;
use trilog_baselines::raft::RaftClient;
use trilog_client::Producer;

use crate::load::{AppendFuture, Target};

/// The trilog producer: a batch is submitted entry by entry (so the
/// producer batches and pipelines them as it would any entries), and the
/// call resolves once every entry committed.
pub struct TrilogTarget {
    pub producer: Producer,
}

impl Target for TrilogTarget {
    fn name(&self) -> &str {
        "trilog"
    }

    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_> {
        Box::pin(async move {
            let mut pending = Vec::with_capacity(entries.len());
            for e in entries {
                pending.push(self.producer.submit(e).await.map_err(|e| e.to_string())?);
            }
            for p in pending {
                p.await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

/// A Raft log client under a name (`raft3`, `raft5`): an append call is
/// one Raft entry holding the batch's payloads.
#[derive(Debug)]
pub struct RaftTarget {
    name: String,
    client: RaftClient,
}

impl RaftTarget {
    pub fn new(name: impl Into<String>, client: RaftClient) -> RaftTarget {
        RaftTarget {
            name: name.into(),
            client,
        }
    }

    pub fn client(&self) -> &RaftClient {
        &self.client
    }
}

impl Target for RaftTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_> {
        Box::pin(async move {
            self.client
                .append_batch(entries)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// etcd (`etcd3`): an entry is one put, a batch one transaction. Only
/// with the `etcd` feature.
#[cfg(feature = "etcd")]
pub struct EtcdTarget {
    log: EtcdLog,
}

#[cfg(feature = "etcd")]
impl EtcdTarget {
    pub fn new(log: EtcdLog) -> EtcdTarget {
        EtcdTarget { log }
    }
}

#[cfg(feature = "etcd")]
impl Target for EtcdTarget {
    fn name(&self) -> &str {
        "etcd3"
    }

    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_> {
        Box::pin(async move {
            self.log
                .append_batch(entries)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
