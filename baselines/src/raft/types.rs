//! The Raft type configuration: what an entry carries (one client append)
//! and what applying it answers.

use std::fmt;
// `declare_raft_types!` names the default snapshot type `Cursor` unqualified.
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::codec;

/// A node's id; node ids start at 1.
pub type NodeId = u64;

/// A node's address, as openraft keeps it in the membership.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The baseline's Raft types: entries are [`AppendRequest`]s, answers
    /// are [`Applied`], node ids `u64`, snapshots bytes in memory.
    pub TypeConfig:
        D = AppendRequest,
        R = Applied,
);

/// A Raft log entry of the baseline.
pub type Entry = openraft::Entry<TypeConfig>;

/// A log id of the baseline.
pub type LogId = openraft::LogId<NodeId>;

/// One client append: its payloads go to the replicated log, in order,
/// as one Raft entry. `client` and `seq` name the append so a retry is
/// recognised and answered with the first outcome (Raft dissertation §6.3);
/// `first_unacked` is the client's lowest append still in flight: the
/// state machine forgets the client's appends below it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    pub client: u64,
    pub seq: u64,
    pub first_unacked: u64,
    #[serde(with = "codec::payloads")]
    pub payloads: Vec<Vec<u8>>,
}

impl AppendRequest {
    /// Sum of the payloads' sizes.
    pub fn payload_bytes(&self) -> usize {
        self.payloads.iter().map(Vec::len).sum()
    }
}

impl fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendRequest")
            .field("client", &self.client)
            .field("seq", &self.seq)
            .field("first_unacked", &self.first_unacked)
            .field("payloads", &self.payloads.len())
            .field("bytes", &self.payload_bytes())
            .finish()
    }
}

/// What applying one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A blank or membership entry: nothing for a client.
    Nothing,
    /// The payloads are at positions `first_position ..` of the log
    /// (also the answer to a retry of an append already applied).
    Appended { first_position: u64 },
    /// A retry of an append whose answer its client already had: ignored.
    Expired,
}
