//! trilog-node: a log node.
//!
//! Guarantees: an append is acknowledged only after its entries are on disk
//! (one fdatasync per file per group commit); fences and seals are durable
//! before they are answered, and a fence is answered only once every entry
//! accepted before it is durable, so no later ack to an older producer can
//! pass the length it reports; after a crash, a segment is recovered up to
//! its first torn record; a malformed or oversized frame closes only the
//! connection that sent it. Every decision about what to accept, refuse,
//! create, serve, make wait or answer is made by
//! `trilog_protocol::shard::ShardMachine` (one per shard, over
//! `trilog_protocol::replica`); this crate moves bytes between sockets,
//! disk, timers and that state machine. With `--serve-meta` it also runs
//! the embedded metadata store of `trilog_meta`, and with `--meta` it
//! keeps the node registered there (both on threads of their own, off the
//! shards' cores).
//!
//! Identity: a data directory belongs to one node id in one cluster, from
//! its first start (`identity`). The node refuses to start on a directory
//! of another node id or cluster, under a node id another live process
//! holds, or on an empty directory of a node id the metadata lists as a
//! replica (unless `--replace`).
//!
//! Full disks: below a reserve of free bytes, or after an allocation
//! failed for space, the node is read-only (`space`): it serves reads of
//! everything durable, seals and deletes, refuses new segments and appends
//! with `Full`, says `full` in its registration so placement skips it,
//! starts read-only on a full disk, and turns writable again once space
//! is freed. A segment creation that fails leaves no file behind.

pub mod admin;
pub mod cli;
pub mod config;
pub mod framing;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod preflight;
pub mod repair;
pub mod repair_board;
pub mod runtime;
pub mod scrub;
pub mod server;
pub mod signals;
pub mod space;
pub mod storage;
