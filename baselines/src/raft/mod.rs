//! The Raft baselines (`raft3`, `raft5`): a replicated append-only log on
//! openraft 0.9, with the same durability as trilog — no append is
//! acknowledged before a majority of the nodes fdatasynced it — driven by
//! `trilog-bench`'s load generator from a client outside the cluster
//! ([`RaftClient`]), each node a real process ([`raft_node_main`], started
//! by [`RaftCluster`]).
//!
//! **The path of an append.** The client sends the payloads (one Raft
//! entry) to the leader over TCP. The leader's openraft core appends the
//! entry to its log: [`log_store`] hands it to the log's writer thread,
//! which writes it and fdatasyncs before reporting it flushed (entries
//! queued meanwhile share the write and the fsync). In parallel the
//! leader replicates the entry to each follower in AppendEntries RPCs; a
//! follower answers only once its own writer thread fdatasynced the
//! entries. When a majority (the leader counts once its own fsync is
//! done) has the entry durably, it is committed; the leader applies it to
//! its [`state_machine`] and only then answers the client with the
//! payloads' positions in the log.
//!
//! **Choices** (constants in [`limits`]):
//!
//! - Heartbeat 50 ms, election timeout 150-300 ms: a leader's death is
//!   noticed in 150-300 ms, fast on loopback without spurious elections
//!   on a loaded 2-core machine. openraft 0.9 also uses the heartbeat
//!   interval as the AppendEntries timeout: an AppendEntries slower than
//!   50 ms (a follower's fsync stalled) is sent again.
//! - At most 300 entries per AppendEntries. openraft 0.9 keeps one
//!   AppendEntries in flight per follower (the next carries all that was
//!   appended meanwhile), so batching, not pipelining, is what amortizes
//!   the round trip and the follower's fsync under load.
//! - A snapshot every 20 000 entries, keeping 1 000 log entries below it;
//!   the log is then purged (whole 64 MiB segments deleted). The state
//!   machine keeps the newest 32 MiB of payloads in memory. So a node's
//!   memory and disk stay in the hundreds of MB for benchmark payloads.
//! - Segments are preallocated by 8 MiB with `fallocate`, as trilog's are.
//! - Appends are exactly once across retries: the state machine keeps a
//!   per-client table of recent appends (Raft dissertation §6.3).
//!
//! **Left out:** membership changes after the cluster is formed, reads
//! that are linearizable (the test read is of one node's applied log),
//! TLS, and snapshots streamed from disk (a snapshot is built and sent
//! from memory).

pub mod client;
pub mod cluster;
pub mod codec;
pub mod conn;
pub mod limits;
pub mod log_store;
mod log_writer;
pub mod network;
pub mod node;
pub mod rpc;
pub mod server;
pub mod state_machine;
pub mod types;

pub use client::{RaftClient, RaftClientError};
pub use cluster::{RaftCluster, RaftClusterError, RaftNodeCommand, RaftNodeOptions};
pub use log_store::{LogReader, LogStore, LogStoreError};
pub use node::{raft_node_main, NodeArgs};
pub use rpc::{AppendRefused, NodeStatus, ReadReply};
pub use state_machine::{LogData, StateMachine};
pub use types::{AppendRequest, Applied, TypeConfig};
