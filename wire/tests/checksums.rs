//! How many times each side reads a payload byte for a checksum, counted
//! by `trilog_wire::crc::bytes_summed` (per thread), along the functions
//! the producer, the node and the consumer call:
//! - append, client: the entry's crc when the entry is made; the frame's
//!   crc is built from the entries' ([`encode_append`]);
//! - append, node: the frame decoder checks every entry's crc and the
//!   frame's in one read;
//! - read, node: the records are checked as they come off the disk
//!   ([`check_records_crc`]; the node's read plan makes the same walk) and
//!   the answer's crc is built from that ([`read_response_frame`]);
//! - read, client: the frame decoder checks every record's crcs and the
//!   frame's in one read, and the consumer indexes the records without
//!   reading their payloads ([`index_checked_records`]).

use trilog_wire::crc::bytes_summed;
use trilog_wire::message::Entry;
use trilog_wire::record::{check_records_crc, encode_record, index_checked_records};
use trilog_wire::{
    encode_append, read_response_frame, AppendHead, Frame, FrameDecoder, FrameHeader, Kind,
    ReadResponseHead,
};

const ENTRIES: usize = 64;
const PAYLOAD: usize = 16 * 1024;
/// Bytes read per entry or record besides its payload, at most: its share
/// of the archive's fields, or its record header's (28 bytes for the
/// header's own crc, 32 for the frame's, 28 once more when the consumer
/// indexes the records).
const PER_ENTRY: u64 = 96;

/// Bytes this thread checksummed while `f` ran.
fn summed_by<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = bytes_summed();
    let out = f();
    (bytes_summed() - before, out)
}

fn decode(frame: &[u8]) -> Frame {
    let mut decoder = FrameDecoder::new();
    let mut rest = frame;
    loop {
        let buf = decoder.read_buf();
        let n = buf.len().min(rest.len());
        assert!(n > 0, "the frame ended early");
        buf[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        if let Some(frame) = decoder.advance(n).expect("a sound frame") {
            assert!(rest.is_empty());
            return frame;
        }
    }
}

fn within(read: u64, payload: u64, side: &str) {
    println!(
        "checksums: {side}: {read} bytes read for {payload} payload bytes ({:.3}x)",
        read as f64 / payload as f64
    );
    assert!(read >= payload, "{side}: every payload byte is read");
    assert!(
        read <= payload + ENTRIES as u64 * PER_ENTRY,
        "{side}: once: {read} bytes for {payload}"
    );
}

#[test]
fn an_append_is_checksummed_once_on_each_side() {
    let payload = (ENTRIES * PAYLOAD) as u64;
    let (made, entries) = summed_by(|| {
        (0..ENTRIES)
            .map(|i| Entry::new(vec![i as u8; PAYLOAD]))
            .collect::<Vec<_>>()
    });
    let head = AppendHead {
        log_id: 1,
        segment: 2,
        epoch: 3,
        first_seq: 0,
        first_offset: 0,
        commit: 0,
    };
    let (framed, frame) = summed_by(|| {
        let append = encode_append(head, entries.iter());
        let header =
            FrameHeader::for_payload_crc(Kind::Append, 7, append.payload.len(), append.crc);
        let mut frame = header.to_bytes().to_vec();
        frame.extend_from_slice(&append.payload);
        frame
    });
    within(made + framed, payload, "append, client");
    let (checked, got) = summed_by(|| decode(&frame));
    within(checked, payload, "append, node");
    assert_eq!(got.header.kind, Kind::Append);
}

#[test]
fn a_read_answer_is_checksummed_once_on_each_side() {
    let mut records = Vec::new();
    for i in 0..ENTRIES {
        let p = vec![i as u8; PAYLOAD];
        encode_record(&mut records, i as u64, 0, crc32c::crc32c(&p), &p);
    }
    let payload = (ENTRIES * PAYLOAD) as u64;
    let head = ReadResponseHead {
        log_id: 1,
        segment: 2,
        from_offset: 0,
        count: ENTRIES as u32,
        watermark: ENTRIES as u64,
        sealed_len: None,
    };
    let (sent, frame) = summed_by(|| {
        let crc = check_records_crc(&records, 0, ENTRIES as u32).expect("sound records");
        read_response_frame(9, head, &records, crc)
    });
    within(sent, payload, "read, node");
    let (received, indexed) = summed_by(|| {
        let frame = decode(&frame);
        let answer = trilog_wire::access::<trilog_wire::message::ReadResponse>(&frame.payload)
            .expect("an answer");
        index_checked_records(&answer.records, 0, ENTRIES as u32)
            .expect("records")
            .len()
    });
    within(received, payload, "read, client");
    assert_eq!(indexed, ENTRIES);
}
