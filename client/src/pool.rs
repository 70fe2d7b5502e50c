//! Connections to the shards of registered nodes, shared by the producer
//! and the consumer of one client. A segment lives on the shard of its node
//! that `shard_of` names; the pool learns each node's shard ports in the
//! handshake and connects to that shard directly (shard-aware), so no
//! request crosses cores on the node.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use trilog_protocol::access::Role;

use tokio::sync::Mutex;
use trilog_wire::message::shard_of;
use trilog_wire::meta::NodeStatus;

use crate::conn::NodeConn;
use crate::error::{ClientError, ConnError};
use crate::meta::MetaStore;
use crate::runtime::{Runtime, TokioRuntime};

/// Shared connections, keyed by node and shard, and the runtime every
/// producer, consumer and connection made from this pool runs on.
#[derive(Debug, Clone)]
pub struct ConnPool {
    meta: Arc<dyn MetaStore>,
    rt: Arc<dyn Runtime>,
    /// The role of the pool's certificate, under mutual TLS.
    role: Option<Role>,
    state: Arc<Mutex<PoolState>>,
}

#[derive(Debug, Default)]
struct PoolState {
    nodes: BTreeMap<u64, NodeStatus>,
    conns: BTreeMap<(u64, u32), NodeConn>,
}

impl ConnPool {
    /// A pool on tokio (call it within a tokio runtime).
    pub fn new(meta: Arc<dyn MetaStore>) -> ConnPool {
        ConnPool::with_runtime(meta, Arc::new(TokioRuntime::new()))
    }

    /// A pool on tokio whose connections to nodes are mutual TLS with
    /// `tls` (the store given is reached as the caller built it: see
    /// `MetaAddr::connect_tls`).
    pub fn with_tls(meta: Arc<dyn MetaStore>, tls: Arc<trilog_tls::TlsIdentity>) -> ConnPool {
        let role = tls.role();
        ConnPool {
            role: Some(role),
            ..ConnPool::with_runtime(meta, Arc::new(TokioRuntime::with_tls(Some(tls))))
        }
    }

    /// Refuses at once, before anything is sent, what the pool's
    /// certificate may not do: the servers would refuse it anyway, but a
    /// refused metadata write reads to the machines like a store that is
    /// down, and they would retry it until their deadline.
    pub fn require(&self, kind: trilog_wire::Kind, what: &'static str) -> Result<(), ClientError> {
        match self.role {
            Some(role) if !role.may_send(kind) => Err(ClientError::Forbidden { role, what }),
            _ => Ok(()),
        }
    }

    /// A pool on another runtime (the simulator's).
    pub fn with_runtime(meta: Arc<dyn MetaStore>, rt: Arc<dyn Runtime>) -> ConnPool {
        ConnPool {
            meta,
            rt,
            role: None,
            state: Arc::new(Mutex::new(PoolState::default())),
        }
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.rt
    }

    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// The registered nodes, alive or not, fresh from the store.
    pub async fn refresh_nodes(&self) -> Result<Vec<NodeStatus>, ClientError> {
        let nodes = self.meta.list_nodes(true).await?;
        let mut st = self.state.lock().await;
        st.nodes = nodes.iter().map(|n| (n.info.node_id, n.clone())).collect();
        Ok(nodes)
    }

    async fn node(&self, node_id: u64) -> Result<NodeStatus, ClientError> {
        if let Some(n) = self.state.lock().await.nodes.get(&node_id) {
            return Ok(n.clone());
        }
        self.refresh_nodes().await?;
        self.state
            .lock()
            .await
            .nodes
            .get(&node_id)
            .cloned()
            .ok_or(ClientError::UnknownNode { node_id })
    }

    fn addr_of(node: &NodeStatus, shard: u32) -> Result<SocketAddr, ClientError> {
        let ip: IpAddr = node
            .info
            .host
            .parse()
            .map_err(|_| ClientError::UnknownNode {
                node_id: node.info.node_id,
            })?;
        let port =
            node.info
                .shard_ports
                .get(shard as usize)
                .copied()
                .ok_or(ClientError::UnknownNode {
                    node_id: node.info.node_id,
                })?;
        Ok(SocketAddr::new(ip, port))
    }

    /// A connection to the shard of `node_id` that owns `(log_id, segment)`.
    pub async fn for_segment(
        &self,
        node_id: u64,
        log_id: u64,
        segment: u64,
    ) -> Result<NodeConn, ClientError> {
        let node = self.node(node_id).await?;
        let shard = shard_of(log_id, segment, node.info.shard_ports.len().max(1) as u32);
        if let Some(c) = self.state.lock().await.conns.get(&(node_id, shard)) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let addr = Self::addr_of(&node, shard)?;
        let conn = match NodeConn::connect(&self.rt, addr).await {
            Ok(c) => c,
            Err(e) => {
                // The node may have restarted on other ports: look again.
                self.state.lock().await.nodes.remove(&node_id);
                return Err(e.into());
            }
        };
        if conn.hello().node_id != node_id {
            return Err(ClientError::Conn(ConnError::Unexpected {
                addr,
                what: format!("node {} answered for node {node_id}", conn.hello().node_id),
            }));
        }
        self.state
            .lock()
            .await
            .conns
            .insert((node_id, shard), conn.clone());
        Ok(conn)
    }

    /// Forgets a connection that failed, so the next use reconnects.
    pub async fn forget(&self, conn: &NodeConn) {
        let mut st = self.state.lock().await;
        st.conns.retain(|_, c| c.addr() != conn.addr());
    }
}
