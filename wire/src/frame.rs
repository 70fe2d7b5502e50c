//! The frame: a fixed 24-byte little-endian header, then the payload.
//!
//! ```text
//! offset size field
//!  0     2    magic        0x4C54 ("TL")
//!  2     1    version      1
//!  3     1    kind         see [`Kind`]
//!  4     4    payload_len  bytes after the header, <= FRAME_PAYLOAD_BYTES_MAX
//!  8     8    request_id   echoed by the answer to a request
//! 16     4    crc32c       over header bytes 0..16, then the payload
//! 20     4    reserved     0
//! ```
//! The header size is a multiple of 8 so that a payload read right after it
//! into an aligned buffer stays aligned for rkyv.

use crate::error::WireError;
use crate::limits::FRAME_PAYLOAD_BYTES_MAX;

pub const FRAME_MAGIC: u16 = 0x4C54;
pub const FRAME_VERSION: u8 = 1;
pub const FRAME_HEADER_BYTES: usize = 24;
const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(8));

macro_rules! kinds {
    ($($name:ident = $code:expr,)*) => {
        /// What a frame's payload is. The code is the byte on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Kind { $($name = $code,)* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$name,)*];

            pub fn from_code(code: u8) -> Result<Kind, WireError> {
                match code {
                    $($code => Ok(Kind::$name),)*
                    other => Err(WireError::UnknownKind(other)),
                }
            }
        }
    };
}

kinds! {
    Hello = 1,
    HelloOk = 2,
    Append = 3,
    AppendAck = 4,
    Watermark = 5,
    Read = 6,
    ReadResponse = 7,
    Seal = 8,
    SealAck = 9,
    Fence = 10,
    FenceAck = 11,
    ErrorMsg = 12,
    DeleteSegment = 20,
    DeleteSegmentAck = 21,
    MetaGetLog = 32,
    MetaLog = 33,
    MetaCasLog = 34,
    MetaCasResult = 35,
    MetaListLogs = 36,
    MetaLogs = 37,
    MetaRegister = 38,
    MetaRegistered = 39,
    MetaListNodes = 40,
    MetaNodes = 41,
    MetaError = 42,
    MetaGetCluster = 43,
    MetaCluster = 44,
    MetaRegisterRefused = 45,
    MetaSetNodeMode = 46,
    MetaGetNodeModes = 47,
    MetaNodeModes = 48,
    MetaDeregister = 49,
    MetaDeregistered = 50,
}

/// A decoded, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    pub payload_len: u32,
    pub request_id: u64,
    pub crc: u32,
}

impl FrameHeader {
    /// Parses and checks the fixed header. Everything but the crc (which
    /// needs the payload) is checked here, so an oversized or unknown frame
    /// is refused before its payload is read.
    pub fn parse(bytes: &[u8]) -> Result<FrameHeader, WireError> {
        let Some(h) = bytes.get(..FRAME_HEADER_BYTES) else {
            return Err(WireError::Truncated {
                needed: FRAME_HEADER_BYTES,
                have: bytes.len(),
            });
        };
        let magic = u16::from_le_bytes([h[0], h[1]]);
        if magic != FRAME_MAGIC {
            return Err(WireError::BadMagic {
                found: u32::from(magic),
                expected: u32::from(FRAME_MAGIC),
            });
        }
        if h[2] != FRAME_VERSION {
            return Err(WireError::UnsupportedVersion(h[2]));
        }
        let kind = Kind::from_code(h[3])?;
        let payload_len = u32_at(h, 4);
        if payload_len > FRAME_PAYLOAD_BYTES_MAX {
            return Err(WireError::Oversized {
                len: u64::from(payload_len),
                max: u64::from(FRAME_PAYLOAD_BYTES_MAX),
            });
        }
        let reserved = u32_at(h, 20);
        if reserved != 0 {
            return Err(WireError::Reserved(reserved));
        }
        Ok(FrameHeader {
            kind,
            payload_len,
            request_id: u64_at(h, 8),
            crc: u32_at(h, 16),
        })
    }

    /// Checks the crc over the header's first 16 bytes and the payload.
    pub fn verify(&self, payload: &[u8]) -> Result<(), WireError> {
        if payload.len() != self.payload_len as usize {
            return Err(WireError::Truncated {
                needed: self.payload_len as usize,
                have: payload.len(),
            });
        }
        let computed = frame_crc(&self.head_bytes(), payload);
        if computed != self.crc {
            return Err(WireError::CrcMismatch {
                computed,
                carried: self.crc,
            });
        }
        Ok(())
    }

    /// The header's first 16 bytes, which the crc covers before the
    /// payload.
    pub(crate) fn head_bytes(&self) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0..2].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        h[2] = FRAME_VERSION;
        h[3] = self.kind as u8;
        h[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        h[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        h
    }

    /// Builds the header for `payload`, crc included.
    pub fn for_payload(kind: Kind, request_id: u64, payload: &[u8]) -> FrameHeader {
        assert!(
            payload.len() <= FRAME_PAYLOAD_BYTES_MAX as usize,
            "payload over the frame limit"
        );
        let mut header = FrameHeader {
            kind,
            payload_len: payload.len() as u32,
            request_id,
            crc: 0,
        };
        header.crc = frame_crc(&header.head_bytes(), payload);
        header
    }

    /// Builds the header for a payload of `payload_len` bytes whose own
    /// crc32c is `payload_crc`: the same header as [`Self::for_payload`],
    /// without reading the payload again. A payload sent to several
    /// replicas under different request ids is checksummed once.
    pub fn for_payload_crc(
        kind: Kind,
        request_id: u64,
        payload_len: usize,
        payload_crc: u32,
    ) -> FrameHeader {
        assert!(
            payload_len <= FRAME_PAYLOAD_BYTES_MAX as usize,
            "payload over the frame limit"
        );
        let mut header = FrameHeader {
            kind,
            payload_len: payload_len as u32,
            request_id,
            crc: 0,
        };
        header.crc = crate::crc::combine(
            crate::crc::crc32c(&header.head_bytes()),
            payload_crc,
            payload_len,
        );
        header
    }

    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..16].copy_from_slice(&self.head_bytes());
        out[16..20].copy_from_slice(&self.crc.to_le_bytes());
        out
    }
}

fn frame_crc(head: &[u8; 16], payload: &[u8]) -> u32 {
    crate::crc::crc32c_append(crate::crc::crc32c(head), payload)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_from_the_payload_crc_equals_one_from_the_payload() {
        for payload in [&b""[..], b"x", &[7u8; 4099][..]] {
            let direct = FrameHeader::for_payload(Kind::Append, 9, payload);
            let combined = FrameHeader::for_payload_crc(
                Kind::Append,
                9,
                payload.len(),
                crc32c::crc32c(payload),
            );
            assert_eq!(direct.to_bytes(), combined.to_bytes());
        }
    }

    #[test]
    fn header_roundtrip_and_crc() {
        let payload = b"hello";
        let h = FrameHeader::for_payload(Kind::Append, 42, payload);
        let bytes = h.to_bytes();
        let parsed = FrameHeader::parse(&bytes).expect("valid header");
        assert_eq!(parsed, h);
        parsed.verify(payload).expect("crc matches");
        assert!(matches!(
            parsed.verify(b"hellp"),
            Err(WireError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn refuses_bad_headers() {
        let h = FrameHeader::for_payload(Kind::Read, 1, b"").to_bytes();
        assert!(matches!(
            FrameHeader::parse(&h[..10]),
            Err(WireError::Truncated { .. })
        ));
        let mut bad = h;
        bad[0] ^= 1;
        assert!(matches!(
            FrameHeader::parse(&bad),
            Err(WireError::BadMagic { .. })
        ));
        let mut bad = h;
        bad[2] = 9;
        assert_eq!(
            FrameHeader::parse(&bad),
            Err(WireError::UnsupportedVersion(9))
        );
        let mut bad = h;
        bad[3] = 200;
        assert_eq!(FrameHeader::parse(&bad), Err(WireError::UnknownKind(200)));
        let mut bad = h;
        bad[4..8].copy_from_slice(&(FRAME_PAYLOAD_BYTES_MAX + 1).to_le_bytes());
        assert!(matches!(
            FrameHeader::parse(&bad),
            Err(WireError::Oversized { .. })
        ));
        let mut bad = h;
        bad[20] = 1;
        assert!(matches!(
            FrameHeader::parse(&bad),
            Err(WireError::Reserved(1))
        ));
    }

    #[test]
    fn every_kind_code_roundtrips() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(*k as u8), Ok(*k));
        }
    }
}
