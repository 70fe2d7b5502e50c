//! The node's limits, each a named constant with its unit.

use trilog_wire::limits::{FRAME_PAYLOAD_BYTES_MAX, READ_BYTES_MAX};

/// Bytes of appends a connection may have in flight (received, not yet
/// acknowledged). Past it the node stops reading from that connection, so a
/// fast producer is slowed by TCP instead of filling the node's memory.
pub const CONN_IN_FLIGHT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Connections one shard serves at once; more are refused with a log line.
pub const SHARD_CONNECTIONS_MAX: usize = 4096;

/// The bytes of requests in flight one shard holds for all its
/// connections together (appends and reads not yet answered): each
/// connection is bounded on its own too, but 4096 connections at their
/// bounds would be hundreds of GiB. Past it, every connection waits (in
/// TCP) for answers to give bytes back: memory stays bounded, at the cost
/// of slowing everyone while a few peers hold the budget (hostile ones
/// are cut off after `CONN_WRITE_STALL_MS`, giving theirs back).
pub const SHARD_REQUEST_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;

/// Outgoing frames queued for one connection before it is cut off as too
/// slow a reader.
pub const CONN_OUTBOX_FRAMES_MAX: usize = 65_536;

/// Bytes of reads a connection may have in flight (asked for, answer not
/// yet queued), counted at each read's `max_bytes` (capped at the read
/// limit). Past it the node stops reading requests from that connection:
/// pipelined reads whose answers are never collected cannot fill the
/// node's memory with buffers.
pub const CONN_READ_BYTES_IN_FLIGHT_MAX: u64 = 16 * 1024 * 1024;

/// Bytes of answers queued for a connection and not yet written to its
/// socket, past which the node reads no further request from it (the
/// client's own requests then wait in TCP). A queue this full is a
/// client that does not read its answers.
pub const CONN_OUTBOX_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How long one frame's write to a connection may make no progress before
/// the connection is closed: a peer that stopped reading holds nothing
/// longer than this.
pub const CONN_WRITE_STALL_MS: u64 = 30_000;

/// How long a connection may stay silent before its first frame.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// How long a connection that sends nothing and is owed no answer stays
/// open, by default (`--idle-connection-secs`): clients pool connections
/// and reconnect on demand, so an idle one only holds a slot of
/// `SHARD_CONNECTIONS_MAX`.
pub const CONN_IDLE_MS_DEFAULT: u64 = 300_000;

/// How long a frame may take to arrive whole once its first bytes came.
/// A connection may wait any time for its next frame to begin (a producer
/// between appends, a consumer between reads), but a frame announced and
/// not sent, or trickled in, holds its buffer only this long.
pub const FRAME_WHOLE_MS: u64 = 30_000;

/// The default lease of a node's registration, and how often it renews.
pub const LEASE_MS_DEFAULT: u64 = 3_000;

/// How long a starting node waits for the metadata store to answer what
/// its identity checks ask (the cluster id, the live registrations, the
/// logs) and its first registration, before it gives up starting.
pub const START_META_WAIT_MS: u64 = 30_000;

/// The deadline of one metadata call at start-up.
pub const START_META_CALL_TIMEOUT_MS: u64 = 5_000;

/// The longest pause between two start-up attempts to reach the store.
pub const START_META_BACKOFF_MS_MAX: u64 = 1_000;

const _: () = assert!(START_META_CALL_TIMEOUT_MS <= START_META_WAIT_MS);
const _: () = assert!(START_META_BACKOFF_MS_MAX <= START_META_WAIT_MS);

// One frame must always fit in the in-flight allowance, or a legal append
// could wait forever for permits; the same for one read.
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX as u64 <= CONN_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(READ_BYTES_MAX as u64 <= CONN_READ_BYTES_IN_FLIGHT_MAX);
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX as usize <= CONN_OUTBOX_BYTES_MAX);

const _: () = assert!(SHARD_REQUEST_BYTES_MAX >= CONN_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(SHARD_REQUEST_BYTES_MAX >= CONN_READ_BYTES_IN_FLIGHT_MAX);

/// The largest request head the admin port reads: a scraper's or a health
/// check's is a few hundred bytes.
pub const ADMIN_HEAD_BYTES_MAX: usize = 8 * 1024;

/// Connections the admin port serves at once; more are closed at accept.
/// A scraper and a health checker or two need a handful; the bound keeps
/// a flood of connections from growing the node.
pub const ADMIN_CONNECTIONS_MAX: usize = 16;

/// How long an admin connection may take to send its request head and to
/// take the answer, each.
pub const ADMIN_IO_MS: u64 = 5_000;

/// The longest a drain (SIGTERM) takes before the node exits anyway: long
/// enough for a group commit or two on a slow disk, short enough for a
/// service manager's stop timeout (systemd's default is 90 s).
pub const DRAIN_MS_MAX: u64 = 5_000;

/// How often a shard looks whether the node drains (see
/// `crate::server::drain`): the drain's delay before shards react.
pub const DRAIN_POLL_MS: u64 = 10;

const _: () = assert!(DRAIN_POLL_MS * 10 <= DRAIN_MS_MAX);
