//! openraft's network: each [`PeerClient`] (openraft makes one per peer
//! for replication, one for heartbeats, one per election...) has its own
//! TCP connection, opened on first use and again after a failure. A
//! node serves one connection's Raft RPCs in order (see
//! [`super::server`]), so each stream of AppendEntries arrives in the
//! order it was sent.

// The error types are openraft's, fixed by its traits.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::conn::{Conn, ConnError};
use super::limits::{CONNECT_TIMEOUT_MS, FRAME_BYTES_MAX, PEER_BACKOFF_MS};
use super::rpc::{encode_frame, frame_len, Request, Response};
use super::types::{Node, NodeId, TypeConfig};

/// Makes a [`PeerClient`] per openraft's asking.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.parse().ok(),
            raw_addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// RPCs to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: Option<SocketAddr>,
    raw_addr: String,
    conn: Option<Arc<Conn>>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerClient {
    async fn conn<E: std::error::Error>(&mut self) -> Result<Arc<Conn>, RpcErr<E>> {
        if let Some(c) = &self.conn {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        self.conn = None;
        let Some(addr) = self.addr else {
            return Err(RPCError::Unreachable(Unreachable::new(&Msg(format!(
                "node {} has a bad address {:?}",
                self.target, self.raw_addr
            )))));
        };
        let c = Conn::connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS))
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.conn = Some(c.clone());
        Ok(c)
    }

    async fn call<E: std::error::Error>(
        &mut self,
        frame: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let conn = self.conn::<E>().await?;
        conn.call_frame(frame, option.hard_ttl())
            .await
            .map_err(|e| match e {
                ConnError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                // A slow answer: the peer still serves the request; keep
                // the connection, so the next request is served after it.
                ConnError::Timeout { .. } => RPCError::Network(NetworkError::new(&e)),
                _ => {
                    self.conn = None;
                    RPCError::Network(NetworkError::new(&e))
                }
            })
    }

    fn unexpected<E: std::error::Error>(&self, resp: Response) -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&Msg(format!(
            "node {} answered {resp:?}",
            self.target
        ))))
    }
}

fn encode<E: std::error::Error>(req: &Request) -> Result<Vec<u8>, RpcErr<E>> {
    encode_frame(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let entries = rpc.entries.len() as u64;
        let frame = encode(&Request::AppendEntries(rpc))?;
        let len = frame_len(&frame);
        if len > FRAME_BYTES_MAX {
            // Ask openraft to send fewer entries at a time: about as many
            // as fill half a frame.
            let hint = (entries * (FRAME_BYTES_MAX as u64 / 2) / len as u64).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        match self.call(frame, &option).await? {
            Response::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let frame = encode(&Request::InstallSnapshot(rpc))?;
        match self.call(frame, &option).await? {
            Response::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let frame = encode(&Request::Vote(rpc))?;
        match self.call(frame, &option).await? {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(PEER_BACKOFF_MS)))
    }
}
