//! The wire between nodes, and between a client and a node: TCP, frames
//! in both directions, each request answered by one response with the
//! same id, in any order (so one connection carries many requests at
//! once). A frame is, little-endian:
//!
//! ```text
//! offset 0   u32  length of what follows (8 ..= FRAME_BYTES_MAX)
//! offset 4   u64  request id, chosen by the requester
//! offset 12  bincode of a Request or a Response
//! ```

use std::io;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::codec::{self, decode, encode_into};
use super::limits::FRAME_BYTES_MAX;
use super::types::{AppendRequest, NodeId, TypeConfig};

/// Bytes before a frame's body.
pub const FRAME_HEADER_BYTES: usize = 12;

/// A request to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client append: answered once committed and applied.
    Append(AppendRequest),
    Status,
    /// Payloads of the node's applied log from position `from`.
    Read {
        from: u64,
        max: u32,
    },
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The first position of the append's payloads.
    Append(Result<u64, AppendRefused>),
    Status(NodeStatus),
    Read(Result<ReadReply, String>),
    /// The request could not be decoded.
    Undecodable(String),
}

/// Why a node did not append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppendRefused {
    #[error("not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("a retry of an append already answered")]
    Expired,
    #[error("{0}")]
    Other(String),
}

/// What a node says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// `Leader`, `Follower`, `Candidate` or `Learner`.
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Payloads in the applied log.
    pub positions: u64,
    /// Voters of the membership this node applies.
    pub voters: Vec<NodeId>,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.state == "Leader" && self.leader == Some(self.id)
    }
}

/// Payloads read from a node's applied log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    pub from: u64,
    #[serde(with = "codec::payloads")]
    pub payloads: Vec<Vec<u8>>,
    /// The node's next position when it answered.
    pub positions: u64,
}

/// A frame carrying `msg`, its id left zero (see [`set_frame_id`]).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, bincode::Error> {
    let mut buf = vec![0u8; FRAME_HEADER_BYTES];
    // The limit is checked by the sender against FRAME_BYTES_MAX, so an
    // oversized AppendEntries can be answered with PayloadTooLarge.
    encode_into(&mut buf, msg, usize::MAX)?;
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// The frame's size after its length prefix.
pub fn frame_len(frame: &[u8]) -> usize {
    frame.len() - 4
}

/// Sets a frame's request id.
pub fn set_frame_id(frame: &mut [u8], id: u64) {
    frame[4..FRAME_HEADER_BYTES].copy_from_slice(&id.to_le_bytes());
}

/// Reads one frame: its id and body. `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(8..=FRAME_BYTES_MAX).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (8 ..= {FRAME_BYTES_MAX})"),
        ));
    }
    let mut id = [0u8; 8];
    r.read_exact(&mut id).await?;
    let mut body = vec![0u8; len - 8];
    r.read_exact(&mut body).await?;
    Ok(Some((u64::from_le_bytes(id), body)))
}

/// Decodes a frame's body.
pub fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, bincode::Error> {
    decode(body, FRAME_BYTES_MAX)
}
