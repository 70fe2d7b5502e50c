//! The record: one entry as it rests in a segment file and as a read
//! response carries it (the node sends file bytes as they are).
//!
//! ```text
//! offset size field
//!  0     4    magic        0x43455254 ("TREC")
//!  4     4    payload_len  <= ENTRY_BYTES_MAX
//!  8     8    offset       the entry's offset in its segment (seq - first_seq)
//! 16     8    commit       the producer's commit watermark when it was sent
//! 24     4    payload_crc  crc32c of the payload, computed by the producer
//! 28     4    header_crc   crc32c of bytes 0..28
//! 32     ..   payload
//! ```
//! Records follow each other with no padding. The magic makes a zeroed,
//! preallocated region read as "end of log", and the two crcs make a torn
//! write read as "corrupt", so recovery can stop at the first bad record.

use crate::crc::Fold;
use crate::error::WireError;
use crate::frame::{u32_at, u64_at};
use crate::limits::ENTRY_BYTES_MAX;

pub const RECORD_MAGIC: u32 = 0x4345_5254;
pub const RECORD_HEADER_BYTES: usize = 32;

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub offset: u64,
    pub commit: u64,
    pub payload_crc: u32,
}

impl RecordHeader {
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload_len as usize
    }

    pub fn to_bytes(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut b = [0u8; RECORD_HEADER_BYTES];
        b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.commit.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crate::crc::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Appends one record to `out`. The payload crc is the producer's, carried
/// end to end; the caller has checked it against the payload already.
pub fn encode_record(
    out: &mut Vec<u8>,
    offset: u64,
    commit: u64,
    payload_crc: u32,
    payload: &[u8],
) {
    assert!(
        payload.len() <= ENTRY_BYTES_MAX as usize,
        "entry over the limit"
    );
    let header = RecordHeader {
        payload_len: payload.len() as u32,
        offset,
        commit,
        payload_crc,
    };
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
}

/// What lies at a position of a record stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole, valid record.
    Record {
        header: RecordHeader,
        payload: &'a [u8],
    },
    /// Zeroes where a header would start: the clean end of the data.
    End,
}

/// Parses the record at the start of `bytes`, expecting `offset`.
///
/// A record that does not fit in `bytes` is `Truncated`: for a file scan
/// that means a torn tail; for a read response, a protocol error.
pub fn parse_record(bytes: &[u8], offset: u64) -> Result<Parsed<'_>, WireError> {
    parse_record_as(bytes, offset, Payload::Check)
}

/// Whether a record walk reads the payloads for their crcs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Check,
    /// The payload's crc was checked already: by the frame decoder, which
    /// checks a read answer's records with the frame's own crc, in one
    /// read of their bytes.
    Checked,
}

fn parse_record_as(
    bytes: &[u8],
    offset: u64,
    payload_check: Payload,
) -> Result<Parsed<'_>, WireError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        if bytes.iter().all(|b| *b == 0) {
            return Ok(Parsed::End);
        }
        return Err(WireError::Truncated {
            needed: RECORD_HEADER_BYTES,
            have: bytes.len(),
        });
    }
    let h = &bytes[..RECORD_HEADER_BYTES];
    let magic = u32_at(h, 0);
    if magic != RECORD_MAGIC {
        if h.iter().all(|b| *b == 0) {
            return Ok(Parsed::End);
        }
        return Err(WireError::BadRecord {
            offset,
            reason: "bad record magic",
        });
    }
    if crate::crc::crc32c(&h[0..28]) != u32_at(h, 28) {
        return Err(WireError::BadRecord {
            offset,
            reason: "record header crc mismatch",
        });
    }
    let header = RecordHeader {
        payload_len: u32_at(h, 4),
        offset: u64_at(h, 8),
        commit: u64_at(h, 16),
        payload_crc: u32_at(h, 24),
    };
    if header.offset != offset {
        return Err(WireError::BadRecord {
            offset,
            reason: "record offset out of sequence",
        });
    }
    if header.payload_len > ENTRY_BYTES_MAX {
        return Err(WireError::BadRecord {
            offset,
            reason: "record payload over the entry limit",
        });
    }
    let end = RECORD_HEADER_BYTES + header.payload_len as usize;
    let Some(payload) = bytes.get(RECORD_HEADER_BYTES..end) else {
        return Err(WireError::Truncated {
            needed: end,
            have: bytes.len(),
        });
    };
    if payload_check == Payload::Check && crate::crc::crc32c(payload) != header.payload_crc {
        return Err(WireError::BadRecord {
            offset,
            reason: "record payload crc mismatch",
        });
    }
    Ok(Parsed::Record { header, payload })
}

/// The records of a read response: `count` records from `first_offset`,
/// every one valid (headers and payloads against their crcs), nothing left
/// over.
pub fn parse_records(
    bytes: &[u8],
    first_offset: u64,
    count: u32,
) -> Result<Vec<(u64, &[u8])>, WireError> {
    collect_records(bytes, first_offset, count, Payload::Check)
}

/// [`parse_records`] for the records of a `ReadResponse` frame that came
/// through [`crate::FrameDecoder`], which checked every payload against its
/// crc with the frame's crc: the headers and the sequence are checked
/// again (a few bytes each), the payloads are not read.
pub fn index_checked_records(
    bytes: &[u8],
    first_offset: u64,
    count: u32,
) -> Result<Vec<(u64, &[u8])>, WireError> {
    collect_records(bytes, first_offset, count, Payload::Checked)
}

/// Every record's offset and payload, walked as `payload_check` says.
fn collect_records(
    bytes: &[u8],
    first_offset: u64,
    count: u32,
    payload_check: Payload,
) -> Result<Vec<(u64, &[u8])>, WireError> {
    let mut out = Vec::with_capacity(count as usize);
    walk_records(
        bytes,
        first_offset,
        count,
        payload_check,
        |offset, _, payload| out.push((offset, payload)),
    )?;
    Ok(out)
}

/// Checks the records as [`parse_records`] does and returns the crc32c of
/// all of `bytes`, reading each payload once: for its own crc, which the
/// whole's is built from ([`crate::crc::Fold`]).
pub fn check_records_crc(bytes: &[u8], first_offset: u64, count: u32) -> Result<u32, WireError> {
    let mut fold = Fold::new(&[]);
    let mut at = 0usize;
    walk_records(
        bytes,
        first_offset,
        count,
        Payload::Check,
        |_, header, _| {
            fold.record(&bytes[at..], header);
            at += header.encoded_len();
        },
    )?;
    assert_eq!(fold.len(), bytes.len(), "the walk covers every byte");
    Ok(fold.crc())
}

impl Fold {
    /// Follows with the record at the start of `bytes`, parsed as `header`
    /// and with a payload that matched its crc: the header's 32 bytes are
    /// read, the payload is not.
    pub fn record(&mut self, bytes: &[u8], header: &RecordHeader) {
        self.bytes(&bytes[..RECORD_HEADER_BYTES]);
        self.known(header.payload_crc, header.payload_len as usize);
    }
}

/// Walks `count` records from `first_offset`, calling `each` with every
/// record's offset, header and payload, then checks nothing is left over.
fn walk_records<'a>(
    bytes: &'a [u8],
    first_offset: u64,
    count: u32,
    payload_check: Payload,
    mut each: impl FnMut(u64, &RecordHeader, &'a [u8]),
) -> Result<(), WireError> {
    let mut at = 0usize;
    for i in 0..u64::from(count) {
        let offset = first_offset.saturating_add(i);
        match parse_record_as(&bytes[at..], offset, payload_check)? {
            Parsed::Record { header, payload } => {
                each(offset, &header, payload);
                at += header.encoded_len();
            }
            Parsed::End => {
                return Err(WireError::BadRecord {
                    offset,
                    reason: "read response ends before its count",
                })
            }
        }
    }
    if at != bytes.len() {
        return Err(WireError::BadRecord {
            offset: first_offset.saturating_add(u64::from(count)),
            reason: "read response has bytes past its last record",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_record(&mut v, offset, 0, crc32c::crc32c(payload), payload);
        v
    }

    #[test]
    fn roundtrip_and_end() {
        let mut buf = rec(5, b"abc");
        buf.extend(rec(6, b""));
        let parsed = parse_records(&buf, 5, 2).expect("valid");
        assert_eq!(parsed, vec![(5, &b"abc"[..]), (6, &b""[..])]);
        assert_eq!(parse_record(&[0u8; 64], 0), Ok(Parsed::End));
        assert_eq!(parse_record(&[0u8; 3], 0), Ok(Parsed::End));
    }

    #[test]
    fn detects_corruption() {
        let good = rec(0, b"payload");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(
                parse_record(&bad, 0).is_err(),
                "flip at byte {i} not caught"
            );
        }
        assert!(parse_record(&good[..good.len() - 1], 0).is_err());
        assert!(parse_record(&good, 1).is_err(), "wrong offset accepted");
        assert!(
            parse_records(&good, 0, 2).is_err(),
            "count past the data accepted"
        );
        let mut extra = good.clone();
        extra.push(0);
        assert!(
            parse_records(&extra, 0, 1).is_err(),
            "trailing bytes accepted"
        );
    }
}
