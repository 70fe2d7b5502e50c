//! trilog-protocol: every decision of the replication protocol, as pure
//! state machines.
//!
//! Each machine is a plain value changed by `handle_*`/`on_*` calls that
//! carry their input (and the current time where it matters) and return
//! what the caller must do. Nothing here reads a clock, touches a socket or
//! a disk, or draws a random number, so the node, the client, the unit
//! tests and the model checker all run the very same code.
//!
//! - [`replica`]: what a log node accepts, refuses and lets be read, for
//!   one segment.
//! - [`shard`]: everything one shard of a log node decides about its
//!   segments: creation, appends and their acks after durability, fences
//!   and seals one at a time, long-poll reads, failed segments.
//! - [`refusal`]: a replica's refusals to and from the wire's error codes.
//! - [`access`]: which requests each certificate role may send, when
//!   connections carry certificates (mutual TLS).
//! - [`acks`]: per-segment, per-replica acknowledged lengths and the commit
//!   watermark they imply.
//! - [`producer`]: the pipelined writer of one log.
//! - [`meta_record`]: the shape a log's metadata record must keep, checked
//!   by every metadata store before it stores one.
//! - [`metadata`]: the transformations of a log's metadata record that a
//!   producer applies by compare-and-swap.
//! - [`consumer`]: a reader's cursor along the chain of segments.
//! - [`takeover`]: a new producer fencing and sealing the open segment of
//!   a log whose producer may still be alive, and carrying its tail over.
//! - [`placement`]: the choice of replicas for a new segment.
//! - [`meta_call`]: the metadata calls the machines ask for, their
//!   outcomes (applied, conflict, unknown, unavailable) and the timers of a
//!   change made by compare-and-swap.
//! - [`opener`]: a producer opening a log whose last segment is sealed (or
//!   that does not exist yet).
//! - [`trim`]: trim and delete: which segments go, and the three steps
//!   (mark, unlink, drop) that delete them.
//! - [`space`]: a node's read-only mode on a full disk (a reserve of free
//!   bytes, hysteresis, failed allocations).
//! - [`actions`]: the `#[must_use]` list of actions every machine returns.
//! - [`mutant`]: deliberately broken variants for the model checker,
//!   compiled in only with the `mutants` feature.

pub mod access;
pub mod acks;
pub mod actions;
pub mod consumer;
pub mod decommission;
pub mod listing;
pub mod meta_call;
pub mod meta_record;
pub mod metadata;
pub mod mutant;
pub mod opener;
pub mod placement;
pub mod producer;
pub mod refusal;
pub mod repair;
pub mod replica;
pub mod shard;
pub mod space;
pub mod takeover;
pub mod trim;

/// A node's identity, as registered in the metadata store.
pub type NodeId = u64;
