//! Every limit of the Raft baseline, in one place, with its unit in its
//! name; the relations between them are checked at compile time.

/// Largest TCP frame (after its length prefix): a request or a response.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// Largest sum of payload bytes in one client append (one Raft entry).
pub const APPEND_REQUEST_BYTES_MAX: usize = 16 << 20;

/// Most payloads in one client append.
pub const APPEND_REQUEST_PAYLOADS_MAX: usize = 1 << 16;

/// What a frame or a record holds besides the payload bytes of one client
/// append: ids, log id, the per-payload length prefixes (at most 10
/// bytes each as varints), enum tags.
pub const ENTRY_OVERHEAD_BYTES_MAX: usize = APPEND_REQUEST_PAYLOADS_MAX * 10 + 4096;

/// Largest on-disk log record body: one Raft entry.
pub const RECORD_BYTES_MAX: usize = APPEND_REQUEST_BYTES_MAX + ENTRY_OVERHEAD_BYTES_MAX;

// One entry always fits in one AppendEntries frame, so replication can
// always make progress (openraft shrinks a batch on `PayloadTooLarge`).
const _: () = assert!(RECORD_BYTES_MAX + 4096 <= FRAME_BYTES_MAX);

/// A log segment file is closed and a new one started past this size;
/// purging deletes whole segments.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// A segment's file is extended with `fallocate` by this much at a time,
/// so most appends write inside already allocated space (as trilog's own
/// segments do).
pub const PREALLOC_CHUNK_BYTES: u64 = 8 << 20;

const _: () = assert!(PREALLOC_CHUNK_BYTES <= SEGMENT_BYTES_MAX);
const _: () = assert!(RECORD_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX);

/// Heartbeat period of the leader.
pub const HEARTBEAT_MS: u64 = 50;

/// Election timeout range of a follower that hears no leader.
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 150;
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 300;

const _: () = assert!(HEARTBEAT_MS * 2 < ELECTION_TIMEOUT_MS_MIN);
const _: () = assert!(ELECTION_TIMEOUT_MS_MIN < ELECTION_TIMEOUT_MS_MAX);

/// Most entries in one AppendEntries RPC.
pub const PAYLOAD_ENTRIES_MAX: u64 = 300;

/// A snapshot is built after this many entries were applied since the
/// last one (then the log up to it, less the kept tail, is purged).
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 20_000;

/// Entries kept in the log below the last snapshot, so a follower only a
/// little behind catches up from the log rather than from a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT: u64 = 1_000;

/// Chunk of a snapshot sent in one InstallSnapshot RPC.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 << 20;

const _: () = assert!(SNAPSHOT_CHUNK_BYTES as usize + 4096 <= FRAME_BYTES_MAX);

/// Time a follower waits for one snapshot chunk before giving up on the
/// transfer.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 2_000;

/// Payload bytes the state machine keeps in memory (the newest ones); the
/// positions of older entries are still counted.
pub const SM_TAIL_BYTES_MAX: usize = 32 << 20;

/// Largest snapshot (state machine image) the node writes or accepts.
pub const SNAPSHOT_BYTES_MAX: usize =
    SM_TAIL_BYTES_MAX + RECORD_BYTES_MAX + (SESSIONS_MAX * SESSION_SEQS_MAX * 24) + (1 << 20);

/// Clients whose recent appends the state machine remembers (to answer a
/// retried append with its first outcome instead of appending it twice).
pub const SESSIONS_MAX: usize = 1024;

/// Appends remembered per client.
pub const SESSION_SEQS_MAX: usize = 1 << 14;

/// Appends one client keeps in flight at once.
pub const CLIENT_IN_FLIGHT_MAX: usize = 8192;

// A client's in-flight appends are all still remembered by its session,
// so a retry of any of them is recognised.
const _: () = assert!(CLIENT_IN_FLIGHT_MAX <= SESSION_SEQS_MAX);

/// Requests one connection serves at once (the reader stops reading past
/// that: TCP back-pressure).
pub const SERVER_IN_FLIGHT_PER_CONN_MAX: usize = CLIENT_IN_FLIGHT_MAX;

/// Time a client waits for one answer before it tries elsewhere.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Time a client keeps retrying one append (leader changes included)
/// before it reports failure.
pub const APPEND_RETRY_MS_MAX: u64 = 15_000;

/// Time to open a TCP connection on loopback.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Wait between two tries when no node is known to lead (an election is
/// under way).
pub const RETRY_BACKOFF_MS: u64 = 20;

/// Back-off of openraft's replication to an unreachable peer.
pub const PEER_BACKOFF_MS: u64 = 100;

const _: () = assert!(PEER_BACKOFF_MS < ELECTION_TIMEOUT_MS_MIN);

/// Entries and bytes one read answer carries at most.
pub const READ_ENTRIES_MAX: usize = 4096;
pub const READ_BYTES_MAX: usize = FRAME_BYTES_MAX / 2;
