//! Every limit of the metadata store, its server, its clients and the
//! registration loop, in one place, with its unit in the name (a
//! `Duration` carries its own).

use std::time::Duration;

use trilog_wire::limits::{
    ERROR_MESSAGE_BYTES_MAX, FRAME_PAYLOAD_BYTES_MAX, REPLICAS_MAX, SHARDS_MAX,
};

/// Most logs the store holds (so that the list of log ids fits in a frame).
pub const LOGS_MAX: usize = 100_000;
/// Most segments in one log's record; it is part of a record's shape, so it
/// lives with `validate_record` in the protocol crate.
pub use trilog_protocol::meta_record::SEGMENTS_PER_LOG_MAX;
/// Most registered nodes (so that the node list fits in a frame).
pub const NODES_MAX: usize = 1024;
/// Shortest lease a node may ask for.
pub const LEASE_MS_MIN: u64 = 10;
/// Longest lease a node may ask for.
pub const LEASE_MS_MAX: u64 = 300_000;
/// Most connections the server serves at once. A connection past it
/// closes the one idle the longest instead (a connection waiting for its
/// client's next request, not one being answered), so idle connections
/// cannot lock callers out; only if none is idle is it refused.
pub const CONNECTIONS_MAX: usize = 256;
/// How long the server waits for a connection's next whole request (from
/// its last answer, or its accept) before closing it: idle connections
/// are reaped, and a request trickled in byte by byte holds nothing for
/// longer. Clients probe pooled connections before reuse
/// (`EmbeddedMeta`), and a node's registration calls every third of its
/// lease.
pub const CONNECTION_IDLE_MS: u64 = 60_000;
/// Pending connections the kernel queues before the server accepts them.
pub const LISTEN_BACKLOG: i32 = 128;
/// Pause after a failed accept (out of descriptors, say) before the next.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// How long one call may take, on top of a watch's own wait: connecting,
/// sending, and the store's fsync of a CAS.
pub const META_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections `EmbeddedMeta` keeps for reuse. Concurrent calls past
/// it open more; they are closed instead of kept when they finish.
pub const META_IDLE_CONNECTIONS_MAX: usize = 8;

/// First pause of the registration loop after a failure; it doubles up to
/// [`REGISTER_BACKOFF_MAX`] (and never past the renewal interval).
pub const REGISTER_BACKOFF_MIN: Duration = Duration::from_millis(20);
pub const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bounds of a registration call's timeout (otherwise the renewal
/// interval): long enough for a store saving a CAS, short enough to retry
/// before the lease ends.
/// How often the registration loop asks whether the node's state changed
/// in a way that must reach the store before the next renewal (a disk
/// turned full or writable again).
pub const REGISTER_REFRESH_POLL: Duration = Duration::from_millis(200);
pub const REGISTER_CALL_TIMEOUT_MIN: Duration = Duration::from_millis(10);
pub const REGISTER_CALL_TIMEOUT_MAX: Duration = Duration::from_secs(2);

// Archived sizes, generously: a log id is 8 bytes; a segment is 5 words
// plus its replicas; a node status is two short strings, the shard ports and
// a few words.
const FRAME_SLACK_BYTES: usize = 4096;
const _: () = assert!(LOGS_MAX * 8 + FRAME_SLACK_BYTES <= FRAME_PAYLOAD_BYTES_MAX as usize);
const _: () = assert!(
    SEGMENTS_PER_LOG_MAX * (64 + REPLICAS_MAX * 8) + FRAME_SLACK_BYTES
        <= FRAME_PAYLOAD_BYTES_MAX as usize
);
const _: () = assert!(
    NODES_MAX * (2 * ERROR_MESSAGE_BYTES_MAX + 2 * SHARDS_MAX + 128) + FRAME_SLACK_BYTES
        <= FRAME_PAYLOAD_BYTES_MAX as usize
);
const _: () =
    assert!(LEASE_MS_MIN > 0 && LEASE_MS_MIN < LEASE_MS_MAX && LEASE_MS_MAX <= u32::MAX as u64);
const _: () = assert!(CONNECTIONS_MAX > 0 && META_IDLE_CONNECTIONS_MAX <= CONNECTIONS_MAX);
const _: () = assert!(REGISTER_BACKOFF_MIN.as_nanos() < REGISTER_BACKOFF_MAX.as_nanos());
const _: () = assert!(REGISTER_CALL_TIMEOUT_MIN.as_nanos() < REGISTER_CALL_TIMEOUT_MAX.as_nanos());
