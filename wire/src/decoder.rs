//! The one frame decoder, sans IO: every reader of frames (the node's
//! connections, the metadata server, its client, the client's connections)
//! drives it from its own socket.
//!
//! The caller asks where the next bytes go ([`FrameDecoder::read_buf`]),
//! reads into that slice from its stream, and reports how many arrived
//! ([`FrameDecoder::advance`]), which returns a whole [`Frame`] once one is
//! complete. What it guarantees:
//! - `read_buf` never reaches past the end of the current frame, so a read
//!   never takes bytes of the next one: nothing is carried or copied from
//!   one frame to the next, and a fresh decoder can start at any frame
//!   boundary;
//! - the header is checked (magic, version, kind, size limit, reserved)
//!   as soon as its last byte arrives, before any payload byte is accepted;
//!   the crc is checked before a frame is returned, and with it the crcs
//!   of what an `Append` or a `ReadResponse` carries, every payload byte
//!   read once for both ([`crate::check`]);
//! - the payload buffer is 16-byte aligned (rkyv reads it in place) and
//!   grows with the bytes that actually arrive: it starts at
//!   [`FRAME_BUFFER_BYTES_INITIAL`] (or the whole payload, if smaller) and
//!   at most doubles each time it is full, so a peer that announces a large
//!   frame and goes silent pins about what it sent, never the announced
//!   length;
//! - after an error the decoder stays failed (every later `advance` returns
//!   the same error): the stream is out of step and must be closed.

use rkyv::util::AlignedVec;

use crate::check::check_frame;
use crate::error::WireError;
use crate::frame::{FrameHeader, FRAME_HEADER_BYTES};
use crate::limits::{FRAME_BUFFER_BYTES_INITIAL, FRAME_PAYLOAD_BYTES_MAX};

/// One whole frame: its checked header and its payload, 16-byte aligned
/// so that rkyv can read it in place. `payload.len()` is the header's
/// `payload_len` and the crc matched; in an `Append` every entry matched
/// its crc, in a `ReadResponse` every record its own
/// ([`crate::check::check_frame`]).
#[derive(Debug)]
pub struct Frame {
    pub header: FrameHeader,
    pub payload: AlignedVec<16>,
}

/// Reassembles frames from bytes that arrive in pieces of any size. See the
/// module doc.
#[derive(Debug)]
pub struct FrameDecoder {
    head: [u8; FRAME_HEADER_BYTES],
    /// Header bytes received of the current frame.
    head_filled: usize,
    /// The current frame's header, once all of it arrived and checked out.
    header: Option<FrameHeader>,
    /// The payload so far: `payload.len()` bytes are allocated (and
    /// zeroed), the first `payload_filled` of them received.
    payload: AlignedVec<16>,
    payload_filled: usize,
    failed: Option<WireError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder at a frame boundary. Allocates nothing.
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            head: [0; FRAME_HEADER_BYTES],
            head_filled: 0,
            header: None,
            payload: AlignedVec::new(),
            payload_filled: 0,
            failed: None,
        }
    }

    /// Where the next bytes of the stream go: the rest of the header, or the
    /// part of the payload buffer not yet received (grown first if it is
    /// full). Never past the end of the current frame; empty only after an
    /// error.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.failed.is_some() {
            return &mut [];
        }
        let Some(header) = self.header else {
            debug_assert!(self.head_filled < FRAME_HEADER_BYTES);
            return &mut self.head[self.head_filled..];
        };
        let payload_len = header.payload_len as usize;
        // A complete payload was returned by `advance`, never left here.
        assert!(
            self.payload_filled < payload_len,
            "payload already complete"
        );
        if self.payload_filled == self.payload.len() {
            self.grow(payload_len);
        }
        assert!(self.payload.len() <= payload_len);
        &mut self.payload[self.payload_filled..]
    }

    /// Counts `n` bytes written at the start of the last [`Self::read_buf`].
    /// Returns the frame they complete, if any; an error if the header is
    /// invalid (as soon as it is whole) or the crc does not match (once the
    /// payload is whole). `n` must not exceed that slice's length.
    pub fn advance(&mut self, n: usize) -> Result<Option<Frame>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.header {
            None => {
                assert!(
                    n <= FRAME_HEADER_BYTES - self.head_filled,
                    "advance past the header's end"
                );
                self.head_filled += n;
                if self.head_filled < FRAME_HEADER_BYTES {
                    return Ok(None);
                }
                let header = FrameHeader::parse(&self.head).map_err(|e| self.fail(e))?;
                assert!(header.payload_len <= FRAME_PAYLOAD_BYTES_MAX);
                self.header = Some(header);
            }
            Some(_) => {
                assert!(
                    n <= self.payload.len() - self.payload_filled,
                    "advance past the read buffer"
                );
                self.payload_filled += n;
            }
        }
        self.take_if_complete()
    }

    /// True when some bytes of a frame have arrived but not the whole frame:
    /// an end of stream now cuts a frame short.
    pub fn in_frame(&self) -> bool {
        self.head_filled > 0
    }

    /// Bytes the payload buffer holds allocated: what a peer pins by
    /// announcing a frame. At most twice what arrived, or the initial size.
    pub fn payload_capacity(&self) -> usize {
        self.payload.capacity()
    }

    fn take_if_complete(&mut self) -> Result<Option<Frame>, WireError> {
        let Some(header) = self.header else {
            return Ok(None);
        };
        if self.payload_filled < header.payload_len as usize {
            return Ok(None);
        }
        assert_eq!(self.payload_filled, header.payload_len as usize);
        assert_eq!(self.payload.len(), self.payload_filled);
        check_frame(&header, &self.payload).map_err(|e| self.fail(e))?;
        let payload = std::mem::take(&mut self.payload);
        self.head_filled = 0;
        self.header = None;
        self.payload_filled = 0;
        Ok(Some(Frame { header, payload }))
    }

    /// Makes room for more of a payload of `payload_len` bytes: the first
    /// allocation is the initial size (or the payload, if smaller), each
    /// later one doubles what arrived, never past the payload.
    fn grow(&mut self, payload_len: usize) {
        let have = self.payload.len();
        assert!(have < payload_len);
        let target = have
            .saturating_mul(2)
            .max(FRAME_BUFFER_BYTES_INITIAL)
            .min(payload_len);
        self.payload.reserve_exact(target - have);
        self.payload.resize(target, 0);
    }

    fn fail(&mut self, e: WireError) -> WireError {
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Kind;
    use crate::frame::FRAME_MAGIC;

    fn frame(kind: Kind, request_id: u64, payload: &[u8]) -> Vec<u8> {
        crate::codec::frame(kind, request_id, payload)
    }

    /// Feeds `bytes` in pieces of at most `chunk` bytes (and never more
    /// than the decoder asks for); returns the frames, or the first error.
    fn feed(d: &mut FrameDecoder, mut bytes: &[u8], chunk: usize) -> Result<Vec<Frame>, WireError> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let buf = d.read_buf();
            let n = buf.len().min(chunk).min(bytes.len());
            assert!(n > 0, "the decoder asked for nothing mid-stream");
            buf[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if let Some(f) = d.advance(n)? {
                frames.push(f);
            }
        }
        Ok(frames)
    }

    #[test]
    fn byte_at_a_time_gives_the_frame_and_nothing_early() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let bytes = frame(Kind::Append, 7, &payload);
        let mut d = FrameDecoder::new();
        assert!(!d.in_frame());
        for (i, b) in bytes.iter().enumerate() {
            let buf = d.read_buf();
            assert!(!buf.is_empty());
            buf[0] = *b;
            let got = d.advance(1).expect("valid bytes");
            if i + 1 < bytes.len() {
                assert!(
                    got.is_none(),
                    "a frame after {} of {} bytes",
                    i + 1,
                    bytes.len()
                );
                assert!(d.in_frame());
            } else {
                let f = got.expect("the last byte completes the frame");
                assert_eq!(f.header.kind, Kind::Append);
                assert_eq!(f.header.request_id, 7);
                assert_eq!(&f.payload[..], &payload[..]);
                assert!(!d.in_frame());
            }
        }
    }

    #[test]
    fn many_frames_back_to_back_in_any_chunking() {
        let payloads: Vec<Vec<u8>> = (0..20usize)
            .map(|i| vec![i as u8; (i * 997) % 5000])
            .chain([vec![9u8; 200_000], Vec::new()])
            .collect();
        let mut stream = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            stream.extend_from_slice(&frame(Kind::ReadResponse, i as u64, p));
        }
        for chunk in [1, 3, 24, 25, 4096, 65_536, usize::MAX] {
            let mut d = FrameDecoder::new();
            let frames = feed(&mut d, &stream, chunk).expect("valid stream");
            assert_eq!(frames.len(), payloads.len(), "chunk {chunk}");
            for (i, (f, p)) in frames.iter().zip(&payloads).enumerate() {
                assert_eq!(f.header.request_id, i as u64);
                assert_eq!(&f.payload[..], &p[..], "frame {i}, chunk {chunk}");
                assert!((f.payload.as_ptr() as usize).is_multiple_of(16) || p.is_empty());
            }
            assert!(!d.in_frame());
        }
    }

    #[test]
    fn the_read_buffer_stops_at_the_end_of_the_frame() {
        let bytes = frame(Kind::Seal, 1, &[5u8; 100]);
        let mut d = FrameDecoder::new();
        assert_eq!(d.read_buf().len(), FRAME_HEADER_BYTES);
        let n = FRAME_HEADER_BYTES;
        d.read_buf()[..n].copy_from_slice(&bytes[..n]);
        assert!(d.advance(n).expect("header").is_none());
        assert_eq!(d.read_buf().len(), 100);
    }

    fn header_bytes(payload_len: u32) -> [u8; FRAME_HEADER_BYTES] {
        let mut h = FrameHeader::for_payload(Kind::Append, 1, b"").to_bytes();
        h[4..8].copy_from_slice(&payload_len.to_le_bytes());
        h
    }

    #[test]
    fn a_silent_peer_pins_only_what_it_sent() {
        let mut d = FrameDecoder::new();
        feed(&mut d, &header_bytes(FRAME_PAYLOAD_BYTES_MAX), usize::MAX).expect("valid header");
        assert_eq!(
            d.payload_capacity(),
            0,
            "nothing allocated before a payload byte"
        );
        feed(&mut d, &[1u8; 10], usize::MAX).expect("payload bytes");
        assert_eq!(d.payload_capacity(), FRAME_BUFFER_BYTES_INITIAL);
        let mut sent = 10usize;
        for _ in 0..40 {
            feed(&mut d, &vec![1u8; 100_000], usize::MAX).expect("payload bytes");
            sent += 100_000;
            let cap = d.payload_capacity();
            assert!(cap >= sent && cap <= (2 * sent).max(FRAME_BUFFER_BYTES_INITIAL));
        }
        assert!(d.payload_capacity() < FRAME_PAYLOAD_BYTES_MAX as usize);
    }

    #[test]
    fn a_small_frame_allocates_only_its_payload() {
        let mut d = FrameDecoder::new();
        let bytes = frame(Kind::Read, 3, &[1u8; 40]);
        let frames = feed(&mut d, &bytes, 30).expect("valid");
        assert_eq!(frames[0].payload.capacity(), 40);
    }

    /// Feeds a header whose last byte makes it bad: nothing is judged
    /// before that byte, the error comes with it, no payload room was
    /// made, and the decoder stays failed.
    fn refused(bytes: [u8; FRAME_HEADER_BYTES]) -> WireError {
        let mut d = FrameDecoder::new();
        feed(&mut d, &bytes[..FRAME_HEADER_BYTES - 1], 1).expect("partial header");
        d.read_buf()[0] = bytes[FRAME_HEADER_BYTES - 1];
        let e = d.advance(1).expect_err("a bad header");
        assert_eq!(d.payload_capacity(), 0);
        assert!(d.read_buf().is_empty());
        assert_eq!(d.advance(0).expect_err("still failed"), e);
        e
    }

    #[test]
    fn bad_headers_are_refused_before_any_payload_byte() {
        let good = header_bytes(16);
        let with = |at: usize, value: u8| {
            let mut h = good;
            h[at] = value;
            h
        };
        assert!(matches!(
            refused(with(0, good[0] ^ 0xFF)),
            WireError::BadMagic { expected, .. } if expected == u32::from(FRAME_MAGIC)
        ));
        assert_eq!(refused(with(2, 9)), WireError::UnsupportedVersion(9));
        assert_eq!(refused(with(3, 200)), WireError::UnknownKind(200));
        assert!(matches!(
            refused(header_bytes(FRAME_PAYLOAD_BYTES_MAX + 1)),
            WireError::Oversized { .. }
        ));
        assert_eq!(refused(with(20, 1)), WireError::Reserved(1));
    }

    #[test]
    fn a_crc_mismatch_is_refused_when_the_payload_is_whole() {
        let mut bytes = frame(Kind::Append, 4, &[7u8; 300]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let mut d = FrameDecoder::new();
        feed(&mut d, &bytes[..last], 50).expect("not whole yet");
        d.read_buf()[0] = bytes[last];
        assert!(matches!(d.advance(1), Err(WireError::CrcMismatch { .. })));
        // A flipped header byte that still parses also fails the crc.
        let mut bytes = frame(Kind::Append, 4, &[7u8; 300]);
        bytes[8] ^= 1;
        let mut d = FrameDecoder::new();
        assert!(matches!(
            feed(&mut d, &bytes, 64),
            Err(WireError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn an_empty_payload_completes_with_the_header() {
        let bytes = frame(Kind::MetaListLogs, 11, b"");
        let mut d = FrameDecoder::new();
        let frames = feed(&mut d, &bytes, usize::MAX).expect("valid");
        assert_eq!(frames.len(), 1);
        assert!(frames[0].payload.is_empty());
        assert_eq!(frames[0].header.request_id, 11);
    }
}
