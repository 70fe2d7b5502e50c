//! Feeds arbitrary bytes to every decoder of untrusted input: the stream
//! decoder every frame reader uses (`FrameDecoder`, in arbitrary chunks),
//! the frame header, the whole-frame decoder (crc, rkyv validation, limits),
//! the checks of an append's entries and a read answer's records with the
//! frame's crc folded from theirs, and the record parser of read responses. None may panic; each must
//! answer with a value or a typed error, and the stream decoder must give
//! the same frames and the same error however its input is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trilog_wire::limits::FRAME_BUFFER_BYTES_INITIAL;
use trilog_wire::check::check_frame;
use trilog_wire::record::{parse_record, parse_records};
use trilog_wire::{
    decode, decode_payload, frame, FrameDecoder, FrameHeader, Kind, WireError, FRAME_HEADER_BYTES,
};

/// How many leading bytes choose the chunk sizes.
const CHUNK_SIZE_BYTES: usize = 8;

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(CHUNK_SIZE_BYTES));
    let whole = decode_stream(stream, &[usize::MAX]);
    // Chunks of 1 to 256 bytes, cycling through the sizes the input chose.
    let chunks: Vec<usize> = sizes.iter().map(|&b| usize::from(b) + 1).collect();
    if !chunks.is_empty() {
        assert_eq!(
            whole,
            decode_stream(stream, &chunks),
            "chunking changed the result"
        );
    }
    // Valid frames around pieces of the input, so that whole frames, not
    // only errors, are reassembled under every chunking. (A kind whose
    // payload the decoder checks by its crc alone: a piece could be an
    // append whose entries fail their own crcs.)
    let piece_bytes = 1 + usize::from(sizes.first().copied().unwrap_or(0)) * 64;
    let pieces: Vec<&[u8]> = stream.chunks(piece_bytes).collect();
    let mut framed = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        framed.extend_from_slice(&frame(Kind::Seal, i as u64, piece));
    }
    let (frames, error) = decode_stream(&framed, if chunks.is_empty() { &[1] } else { &chunks });
    assert_eq!(error, None, "valid frames refused");
    assert_eq!(frames.len(), pieces.len());
    for (i, ((header, payload), piece)) in frames.iter().zip(&pieces).enumerate() {
        assert_eq!((header.request_id, &payload[..]), (i as u64, *piece));
    }
    // Payloads behind a valid frame: a peer can always compute a crc.
    for (header, payload) in &whole.0 {
        let _ = decode_payload(header.kind, payload);
    }

    // The input as the payload of an append and of a read's answer with a
    // valid frame crc: the frame's crc folded from the entries' or
    // records' must be the plain one (a mismatch here is a folding bug),
    // and an append passed only if every entry matches its crc.
    for kind in [Kind::Append, Kind::ReadResponse] {
        let header = FrameHeader::for_payload(kind, 0, stream);
        let mut payload = rkyv::util::AlignedVec::<16>::new();
        payload.extend_from_slice(stream);
        match check_frame(&header, &payload) {
            Err(e @ WireError::CrcMismatch { .. }) => {
                panic!("{kind:?} with a valid crc folded to another: {e}")
            }
            Ok(()) if kind == Kind::Append => {
                if let Ok(a) = trilog_wire::access::<trilog_wire::message::Append>(&payload) {
                    for e in a.entries.iter() {
                        assert_eq!(crc32c_of(e.payload.as_slice()), e.crc.to_native());
                    }
                }
            }
            _ => {}
        }
    }

    let _ = FrameHeader::parse(data);
    let _ = decode(data);
    if let Some((&k, rest)) = data.split_first() {
        if let Ok(kind) = Kind::from_code(k) {
            let _ = decode_payload(kind, rest);
        }
    }
    let _ = parse_record(data, 0);
    let count = data.first().copied().unwrap_or(0) as u32;
    let _ = parse_records(data, 0, count);
});

/// crc32c, through the crate's counting wrapper.
fn crc32c_of(bytes: &[u8]) -> u32 {
    trilog_wire::crc::crc32c(bytes)
}

type Decoded = (Vec<(FrameHeader, Vec<u8>)>, Option<WireError>);

/// Feeds `stream` to one decoder in pieces of the `chunks` sizes in turn
/// (each cut to what the decoder asks for): the frames it returned and the
/// error it stopped at, if any.
fn decode_stream(mut stream: &[u8], chunks: &[usize]) -> Decoded {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut chunk = chunks.iter().cycle();
    // Bytes of the current frame fed so far, header included.
    let mut in_frame = 0usize;
    while !stream.is_empty() {
        let buf = decoder.read_buf();
        assert!(!buf.is_empty(), "no room mid-stream without an error");
        let n = buf.len().min(stream.len()).min(*chunk.next().unwrap_or(&1));
        buf[..n].copy_from_slice(&stream[..n]);
        stream = &stream[n..];
        in_frame += n;
        match decoder.advance(n) {
            Ok(Some(frame)) => {
                assert_eq!(frame.payload.len(), frame.header.payload_len as usize);
                assert_eq!(frame.header.verify(&frame.payload), Ok(()));
                frames.push((frame.header, frame.payload.to_vec()));
                in_frame = 0;
            }
            Ok(None) => {
                // A peer pins at most twice what it sent (or the initial
                // buffer), never what it announced.
                let sent = in_frame.saturating_sub(FRAME_HEADER_BYTES);
                let pinned = decoder.payload_capacity();
                assert!(pinned <= FRAME_BUFFER_BYTES_INITIAL.max(2 * sent));
            }
            Err(e) => return (frames, Some(e)),
        }
    }
    (frames, None)
}
