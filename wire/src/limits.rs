//! Every limit of the wire format, in one place, with its unit in the name.

/// Largest payload a frame may carry. A peer that announces more is cut off
/// before a single payload byte is read.
pub const FRAME_PAYLOAD_BYTES_MAX: u32 = 8 * 1024 * 1024;

/// First payload buffer of a frame decoder; it doubles as the payload
/// arrives (see `decoder`), so a peer pins about what it sent.
pub const FRAME_BUFFER_BYTES_INITIAL: usize = 64 * 1024;

/// Largest sum of entry payload bytes in one append.
pub const APPEND_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// Largest number of entries in one append.
pub const APPEND_ENTRIES_MAX: u32 = 64 * 1024;

/// Largest single entry payload.
pub const ENTRY_BYTES_MAX: u32 = 1024 * 1024;

/// Largest record bytes a node returns in one read response.
pub const READ_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// Longest a read may wait for new data (long poll).
pub const READ_WAIT_MS_MAX: u32 = 30_000;

/// Largest number of replicas of a segment.
pub const REPLICAS_MAX: usize = 7;

/// Largest number of shards (cores) a node announces.
pub const SHARDS_MAX: usize = 256;

/// Largest error message carried on the wire.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

/// Most node ids with a mode other than active (leaving or removed) that a
/// metadata store keeps: removed ids are never forgotten, so the list is
/// bounded here, and it fits in one frame (16 bytes an entry, archived).
pub const NODE_MODES_MAX: usize = 16 * 1024;
const _: () = assert!(NODE_MODES_MAX * 16 + 4096 <= FRAME_PAYLOAD_BYTES_MAX as usize);

const _: () = assert!(ENTRY_BYTES_MAX <= APPEND_BYTES_MAX);
const _: () = assert!(
    FRAME_BUFFER_BYTES_INITIAL > 0
        && FRAME_BUFFER_BYTES_INITIAL <= FRAME_PAYLOAD_BYTES_MAX as usize
);
// An append frame holds its entries plus per-entry framing (at most 32 bytes
// each in rkyv), so the frame limit must cover the worst case.
const _: () = assert!(
    APPEND_BYTES_MAX as u64 + APPEND_ENTRIES_MAX as u64 * 32 + 4096
        <= FRAME_PAYLOAD_BYTES_MAX as u64
);
// A read response carries records plus a small fixed part.
const _: () = assert!(READ_BYTES_MAX as u64 + 4096 <= FRAME_PAYLOAD_BYTES_MAX as u64);
// One entry must always fit in a read response, or a consumer could stall.
const _: () = assert!(
    ENTRY_BYTES_MAX as u64 + crate::record::RECORD_HEADER_BYTES as u64 <= READ_BYTES_MAX as u64
);
