//! The header block of a segment data file.
//!
//! The first [`SEGMENT_HEADER_BYTES`] of a data file say which segment the
//! file holds, so a file copied or renamed by mistake is refused instead of
//! served as another segment, and a file of a future format is refused
//! instead of misread. All integers little-endian:
//!
//! ```text
//! offset size field
//!  0     8    magic      "TRILOGSG"
//!  8     4    version    1
//! 12     8    log_id
//! 20     8    segment
//! 28     8    first_seq  seq of the segment's offset 0
//! 36     8    epoch      epoch of the producer that created the segment
//! 44     4    crc        crc32c of bytes 0..44
//! 48   4048   zero
//! ```
//!
//! The header is written once, when the file is created, and made durable
//! before the file gets its final name.

use super::{SegmentKey, SEGMENT_HEADER_BYTES};

pub const SEGMENT_MAGIC: [u8; 8] = *b"TRILOGSG";
pub const SEGMENT_VERSION: u32 = 1;

const VERSION_AT: usize = 8;
const LOG_ID_AT: usize = 12;
const SEGMENT_AT: usize = 20;
const FIRST_SEQ_AT: usize = 28;
const EPOCH_AT: usize = 36;
const CRC_AT: usize = 44;
/// Bytes of the header that carry fields; the rest of the block is zero.
const HEADER_USED_BYTES: usize = CRC_AT + 4;

const _: () = assert!(HEADER_USED_BYTES <= SEGMENT_HEADER_BYTES as usize);
const _: () = assert!(VERSION_AT == SEGMENT_MAGIC.len());

/// What the header block of a data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub log_id: u64,
    pub segment: u64,
    pub first_seq: u64,
    pub epoch: u64,
}

/// Why a header block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header block is {have} bytes, expected {expected}")]
    WrongSize { have: usize, expected: usize },
    #[error("bad magic {found:02x?} (expected \"TRILOGSG\")")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported version {0}")]
    UnsupportedVersion(u32),
    #[error("crc mismatch: computed {computed:#010x}, stored {stored:#010x}")]
    CrcMismatch { computed: u32, stored: u32 },
    #[error("non-zero byte at {at} past the header fields")]
    NonZeroPadding { at: usize },
    #[error("header names {found} but the file name says {expected}")]
    KeyMismatch {
        expected: SegmentKey,
        found: SegmentKey,
    },
}

impl SegmentHeader {
    pub fn key(&self) -> SegmentKey {
        SegmentKey {
            log_id: self.log_id,
            segment: self.segment,
        }
    }

    /// Writes the header into `block`, one whole header block.
    pub fn encode(&self, block: &mut [u8]) {
        assert_eq!(
            block.len(),
            SEGMENT_HEADER_BYTES as usize,
            "header block size"
        );
        block.fill(0);
        block[..VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        block[VERSION_AT..LOG_ID_AT].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        block[LOG_ID_AT..SEGMENT_AT].copy_from_slice(&self.log_id.to_le_bytes());
        block[SEGMENT_AT..FIRST_SEQ_AT].copy_from_slice(&self.segment.to_le_bytes());
        block[FIRST_SEQ_AT..EPOCH_AT].copy_from_slice(&self.first_seq.to_le_bytes());
        block[EPOCH_AT..CRC_AT].copy_from_slice(&self.epoch.to_le_bytes());
        let crc = crc32c::crc32c(&block[..CRC_AT]);
        block[CRC_AT..HEADER_USED_BYTES].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads a header block, checking every byte of it.
    pub fn decode(block: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if block.len() != SEGMENT_HEADER_BYTES as usize {
            return Err(HeaderError::WrongSize {
                have: block.len(),
                expected: SEGMENT_HEADER_BYTES as usize,
            });
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&block[..VERSION_AT]);
        if magic != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic { found: magic });
        }
        let stored = u32_at(block, CRC_AT);
        let computed = crc32c::crc32c(&block[..CRC_AT]);
        if stored != computed {
            return Err(HeaderError::CrcMismatch { computed, stored });
        }
        let version = u32_at(block, VERSION_AT);
        if version != SEGMENT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        if let Some(i) = block[HEADER_USED_BYTES..].iter().position(|b| *b != 0) {
            return Err(HeaderError::NonZeroPadding {
                at: HEADER_USED_BYTES + i,
            });
        }
        Ok(SegmentHeader {
            log_id: u64_at(block, LOG_ID_AT),
            segment: u64_at(block, SEGMENT_AT),
            first_seq: u64_at(block, FIRST_SEQ_AT),
            epoch: u64_at(block, EPOCH_AT),
        })
    }
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            log_id: 0x0102_0304_0506_0708,
            segment: 9,
            first_seq: 1_000_000,
            epoch: 42,
        }
    }

    fn encoded() -> Vec<u8> {
        let mut block = vec![0xffu8; SEGMENT_HEADER_BYTES as usize];
        header().encode(&mut block);
        block
    }

    #[test]
    fn roundtrip_and_layout() {
        let block = encoded();
        assert_eq!(&block[..8], b"TRILOGSG");
        assert_eq!(u32_at(&block, VERSION_AT), SEGMENT_VERSION);
        assert_eq!(u64_at(&block, LOG_ID_AT), header().log_id);
        assert!(block[HEADER_USED_BYTES..].iter().all(|b| *b == 0));
        assert_eq!(SegmentHeader::decode(&block), Ok(header()));
        assert_eq!(
            header().key(),
            SegmentKey {
                log_id: header().log_id,
                segment: 9
            }
        );
    }

    #[test]
    fn every_corruption_is_refused() {
        let good = encoded();
        for at in (0..HEADER_USED_BYTES).chain([
            HEADER_USED_BYTES,
            100,
            SEGMENT_HEADER_BYTES as usize - 1,
        ]) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(
                SegmentHeader::decode(&bad).is_err(),
                "flip at byte {at} accepted"
            );
        }
        assert!(matches!(
            SegmentHeader::decode(&vec![0u8; SEGMENT_HEADER_BYTES as usize]),
            Err(HeaderError::BadMagic { .. })
        ));
        assert!(matches!(
            SegmentHeader::decode(&good[..100]),
            Err(HeaderError::WrongSize { .. })
        ));

        // A future version with a valid crc is refused by version.
        let mut future = good.clone();
        future[VERSION_AT..LOG_ID_AT].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&future[..CRC_AT]);
        future[CRC_AT..HEADER_USED_BYTES].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&future),
            Err(HeaderError::UnsupportedVersion(2))
        );
    }
}
