//! Feeds arbitrary bytes to every decoder of untrusted input: the frame
//! header, the whole-frame decoder (crc, rkyv validation, limits) and the
//! record parser of read responses. None may panic; each must answer with
//! a value or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trilog_wire::record::{parse_record, parse_records};
use trilog_wire::{decode, decode_payload, FrameHeader, Kind};

fuzz_target!(|data: &[u8]| {
    let _ = FrameHeader::parse(data);
    let _ = decode(data);
    // Payloads behind a valid crc: a peer can always compute one.
    if let Some((&k, rest)) = data.split_first() {
        if let Ok(kind) = Kind::from_code(k) {
            let _ = decode_payload(kind, rest);
        }
    }
    let _ = parse_record(data, 0);
    let count = data.first().copied().unwrap_or(0) as u32;
    let _ = parse_records(data, 0, count);
});
