//! The client's errors, and what a caller does about each.
//!
//! Three kinds of answer, in short:
//!
//! - **Try again later** (with a pause): the metadata store or a node did
//!   not answer ([`ClientError::Meta`], [`ClientError::Conn`],
//!   [`ClientError::UnknownNode`]), too few nodes to place a segment on
//!   ([`ClientError::Placement`]), a replica served bad data
//!   ([`ClientError::BadData`]). The producer and the consumer ride out
//!   such failures by themselves (other replicas, a new segment, their own
//!   timers); a caller sees them once the component gave up.
//! - **Take the log over**: the log's last segment is open and its
//!   producer is gone or must go ([`ClientError::Log`] from
//!   [`Producer::open`](crate::Producer::open), or this process's own
//!   producer stopped on [`AppendError::Indeterminate`] without another
//!   writer behind it). [`Producer::takeover`](crate::Producer::takeover)
//!   fences the old producer, settles its last entries and continues.
//! - **Give up** (or fix the call): the log was deleted
//!   ([`ClientError::LogDeleted`]), the entries were trimmed
//!   ([`ClientError::Trimmed`]), no replica holds an entry
//!   ([`ClientError::Damaged`]), another writer owns the log (an
//!   [`AppendError::Indeterminate`] whose producer was fenced), or the
//!   request itself is wrong ([`AppendError::TooLarge`],
//!   [`ClientError::Config`], [`ClientError::Usage`]).
//!
//! An append that fails is never silently lost or silently kept: either
//! nothing was sent ([`AppendError::TooLarge`], [`AppendError::Closed`]),
//! or its outcome is unknown ([`AppendError::Indeterminate`]) and the log,
//! once taken over, says which.
//!
//! # Example: the errors of an append
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let cluster = trilog_testkit::in_process::InProcessCluster::start(3).await?;
//! use trilog_client::{AppendError, Producer, ProducerOptions, StopReason};
//!
//! let producer = Producer::open(cluster.pool(), 3, ProducerOptions::default()).await?;
//!
//! // Too large: refused before anything is sent, and the producer goes on.
//! match producer.append(vec![0; 2 << 20]).await {
//!     Err(AppendError::TooLarge { len, max }) => assert!(len > max),
//!     other => panic!("a 2 MiB entry: {other:?}"),
//! }
//! assert_eq!(producer.append(b"fits".to_vec()).await?, 0);
//!
//! // Another client takes the log over (it thought this producer dead).
//! let successor = Producer::takeover(cluster.pool(), 3, ProducerOptions::default()).await?;
//!
//! // This producer learns it at its next append, which may or may not be
//! // in the log: here the log is the successor's, so this process stops
//! // writing it, whatever the entry's fate.
//! match producer.append(b"late".to_vec()).await {
//!     Err(AppendError::Indeterminate { why }) => println!("stopped: {why}"),
//!     other => panic!("a fenced producer: {other:?}"),
//! }
//! // Stopped for good, and why: another producer owns the log.
//! assert!(matches!(
//!     producer.stop_reason(),
//!     Some(StopReason::Fenced { .. } | StopReason::SealedElsewhere { .. })
//! ));
//! assert!(producer.append(b"later".to_vec()).await.is_err());
//!
//! // The successor writes on after what the first producer committed.
//! assert_eq!(successor.append(b"next".to_vec()).await?, 1);
//! successor.close().await?;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;

use crate::meta::MetaError;

/// Why a connection to a node failed. Every one may pass: the producer
/// and the consumer reconnect or move to another replica by themselves,
/// and a caller sees one only when a single request failed (a trim, a
/// status) or a consumer failed on every replica many times in a row.
/// Try again later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    /// No connection: the node is down, or moved to another address (the
    /// pool looks its address up again at the next use).
    #[error("connect to {addr}: {why}")]
    Connect { addr: SocketAddr, why: String },
    /// The connection ended before the answer came: whether the request
    /// took effect is unknown.
    #[error("connection to {addr} closed: {why}")]
    Closed { addr: SocketAddr, why: String },
    /// The node did not answer within `ms`: it is overloaded, paused or
    /// cut off.
    #[error("{addr}: no answer within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    /// The node answered what the request does not allow: another node
    /// now holds the address, or the node speaks another version. Trying
    /// again helps only once the cluster's registrations are current.
    #[error("{addr}: unexpected answer {what}")]
    Unexpected { addr: SocketAddr, what: String },
}

/// Why an append did not succeed. `Indeterminate` means the entry may or
/// may not be in the log: the caller must not assume either.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The producer stopped with the entry taken but not known committed:
    /// it may be in the log or not, and that is settled only when the log
    /// is next taken over (or was, by whoever stopped this producer).
    /// The producer is stopped for good: every later append fails the
    /// same way. [`Producer::stop_reason`](crate::Producer::stop_reason)
    /// says why: another producer took the log over (leave the log to it)
    /// or sealed the segment, the log was deleted (give up), or a switch
    /// of segments did not go through within the patience (this process
    /// may take the log over itself, then read it to learn which entries
    /// stayed before writing them again).
    #[error("outcome unknown: {why} (the entry may or may not be committed)")]
    Indeterminate { why: String },
    /// The producer was closed before the entry was taken: nothing was
    /// written. A mistake of the caller's sequencing, not of the cluster.
    #[error("the producer is closed")]
    Closed,
    /// The entry is over the wire's limit (`max` bytes): nothing was sent
    /// and the producer goes on. The same entry fails the same way again:
    /// split it, or refuse it upstream.
    #[error("entry of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Everything else the client reports.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A call to the metadata store failed: unreachable, timed out, or
    /// refused. Try again later. After a failed compare-and-swap its
    /// outcome is unknown; the client's own callers (the producer, the
    /// takeover, trim) read the record back before they act on it.
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// A request to a node failed (see [`ConnError`]). Try again later.
    #[error("node: {0}")]
    Conn(#[from] ConnError),
    /// A producer's open, close or takeover could not go on; the message
    /// says why. From [`Producer::open`](crate::Producer::open): the last
    /// segment is open (take the log over), the metadata store or the
    /// nodes stood in the way past the patience (try again later), or the
    /// log is deleted (give up). From
    /// [`Producer::takeover`](crate::Producer::takeover): a newer takeover
    /// owns the log (leave it), no replica answered the fence in time, or
    /// the record changed under it (try again). From
    /// [`Producer::close`](crate::Producer::close): the producer had
    /// stopped (as for [`AppendError::Indeterminate`]).
    #[error("log {log_id}: {why}")]
    Log { log_id: u64, why: String },
    /// A record names a node the metadata store has no usable
    /// registration for (its lease ran out, or its address cannot be
    /// used). Usually it passes as the node comes back or repair moves its
    /// replicas: try again later.
    #[error("node {node_id} is not registered")]
    UnknownNode { node_id: u64 },
    /// Fewer writable nodes (alive, not full) than the replicas a segment
    /// needs. Try again once nodes are back, or add nodes.
    #[error("placement: {0}")]
    Placement(#[from] trilog_protocol::placement::NotEnoughNodes),
    /// A read below the log's trim point: those entries are gone for good.
    /// Read from `first_readable` if skipping them is acceptable.
    #[error("log {log_id}: seq {seq} was trimmed; the first readable seq is {first_readable} (read --from {first_readable})")]
    Trimmed {
        log_id: u64,
        seq: u64,
        first_readable: u64,
    },
    /// The log was deleted: it is never read or written again. Give up.
    #[error("log {log_id} is deleted")]
    LogDeleted { log_id: u64 },
    /// A trim or a delete was refused (no such log, a trim point past
    /// the sealed entries, a delete of a log with an open segment: close
    /// its producer or take the log over first) or could not finish a
    /// step (the record kept changing). What was done stays done: running
    /// it again resumes it.
    #[error("log {log_id}: {why}")]
    Trim { log_id: u64, why: String },
    /// A decommission was refused (no such node) or did not finish; the
    /// message says which. Running it again resumes it.
    #[error("node {node}: {why}")]
    Decommission { node: u64, why: String },
    /// What was asked for does not exist (a log, a range past its end).
    /// Give up, or create it first.
    #[error("{what}")]
    NotFound { what: String },
    /// A command's arguments cannot be carried out (checked before
    /// anything is opened). Fix the call.
    #[error("{0}")]
    Usage(String),
    /// The pool's certificate names a role that may not do this (mutual
    /// TLS; see `trilog_protocol::access`): give the client a certificate
    /// of another role. Nothing was sent.
    #[error("forbidden: a certificate of role {role} may not {what}")]
    Forbidden {
        role: trilog_protocol::access::Role,
        what: &'static str,
    },
    /// No replica of the entry's segment holds a good copy of `seq`: the
    /// entry is lost unless a repair restores a copy. Trying again serves
    /// nothing until then; an operator must look.
    #[error("log {log_id}: seq {seq} is damaged or missing on every replica of its segment")]
    Damaged { log_id: u64, seq: u64 },
    /// A replica answered with data that failed its checks, or answered
    /// out of turn, on every try. The consumer moves between replicas by
    /// itself; this comes only once that kept failing. Try again later,
    /// and report it: a replica or the network corrupts data.
    #[error("log {log_id}: replica returned bad data: {why}")]
    BadData { log_id: u64, why: String },
    /// The [`ProducerOptions`](crate::ProducerOptions) are invalid (a
    /// batch no frame can carry, no replicas). Nothing was sent: fix them.
    #[error("producer configuration: {0}")]
    Config(#[from] trilog_protocol::producer::ConfigError),
}

impl ClientError {
    /// Whether the same call may succeed later without anyone changing
    /// anything: the store or a node was unreachable, slow or restarting,
    /// or every replica failed for now. A reader that follows a log (a
    /// tail) waits through these and gives up on the others.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Meta(e) => !matches!(
                e,
                MetaError::InvalidArgument(_) | MetaError::InvalidRecord { .. }
            ),
            ClientError::Conn(_)
            | ClientError::UnknownNode { .. }
            | ClientError::Placement(_)
            | ClientError::BadData { .. } => true,
            ClientError::Log { .. }
            | ClientError::Trimmed { .. }
            | ClientError::LogDeleted { .. }
            | ClientError::Trim { .. }
            | ClientError::Decommission { .. }
            | ClientError::NotFound { .. }
            | ClientError::Usage(_)
            | ClientError::Forbidden { .. }
            | ClientError::Damaged { .. }
            | ClientError::Config(_) => false,
        }
    }
}
