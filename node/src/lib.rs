//! trilog-node: a log node.
//!
//! Guarantees: an append is acknowledged only after its entries are on disk
//! (one fdatasync per file per group commit); fences and seals are durable
//! before they are answered; after a crash, a segment is recovered up to
//! its first torn record; a malformed or oversized frame closes only the
//! connection that sent it. Every decision about what to accept is made by
//! `trilog_protocol::replica`; this crate moves bytes between sockets,
//! disk and that state machine.

pub mod framing;
pub mod meta;
pub mod storage;
