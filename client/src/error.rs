//! The client's errors.

use std::net::SocketAddr;

use crate::meta::MetaError;

/// Why a connection to a node failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    #[error("connect to {addr}: {why}")]
    Connect { addr: SocketAddr, why: String },
    #[error("connection to {addr} closed: {why}")]
    Closed { addr: SocketAddr, why: String },
    #[error("{addr}: no answer within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    #[error("{addr}: unexpected answer {what}")]
    Unexpected { addr: SocketAddr, what: String },
}

/// Why an append did not succeed. `Indeterminate` means the entry may or
/// may not be in the log: the caller must not assume either.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("outcome unknown: {why} (the entry may or may not be committed)")]
    Indeterminate { why: String },
    #[error("the producer is closed")]
    Closed,
    #[error("entry of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Everything else the client reports.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("node: {0}")]
    Conn(#[from] ConnError),
    #[error("log {log_id}: {why}")]
    Log { log_id: u64, why: String },
    #[error("node {node_id} is not registered")]
    UnknownNode { node_id: u64 },
    #[error("placement: {0}")]
    Placement(#[from] trilog_protocol::placement::NotEnoughNodes),
    #[error("log {log_id}: seq {seq} was trimmed; the first readable seq is {first_readable} (read --from {first_readable})")]
    Trimmed {
        log_id: u64,
        seq: u64,
        first_readable: u64,
    },
    #[error("log {log_id} is deleted")]
    LogDeleted { log_id: u64 },
    #[error("log {log_id}: {why}")]
    Trim { log_id: u64, why: String },
    #[error("node {node}: {why}")]
    Decommission { node: u64, why: String },
    /// What was asked for does not exist (a log, a range past its end).
    #[error("{what}")]
    NotFound { what: String },
    /// A command's arguments cannot be carried out (checked before
    /// anything is opened).
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
    #[error("log {log_id}: seq {seq} is damaged or missing on every replica of its segment")]
    Damaged { log_id: u64, seq: u64 },
    #[error("log {log_id}: replica returned bad data: {why}")]
    BadData { log_id: u64, why: String },
    #[error("producer configuration: {0}")]
    Config(#[from] trilog_protocol::producer::ConfigError),
}
