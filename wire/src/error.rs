//! Errors of decoding untrusted bytes.

/// Why bytes from a peer or a disk were refused. Each variant names what
/// was wrong so the log line that reports it is enough to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("bad magic {found:#06x} (expected {expected:#06x})")]
    BadMagic { found: u32, expected: u32 },
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    Oversized { len: u64, max: u64 },
    #[error("crc mismatch: computed {computed:#010x}, carried {carried:#010x}")]
    CrcMismatch { computed: u32, carried: u32 },
    #[error("reserved field is {0:#x}, expected 0")]
    Reserved(u32),
    #[error("payload of kind {kind:?} failed validation: {reason}")]
    Invalid {
        kind: crate::frame::Kind,
        reason: String,
    },
    #[error("frame kind {found:?} where {expected:?} was expected")]
    UnexpectedKind {
        found: crate::frame::Kind,
        expected: crate::frame::Kind,
    },
    #[error("entry {index} fails its crc")]
    EntryCrc { index: u64 },
    #[error("record at offset {offset}: {reason}")]
    BadRecord { offset: u64, reason: &'static str },
}
