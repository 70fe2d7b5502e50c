//! What a receiver's checksums cost per payload byte, the old way (the
//! frame's crc over the whole payload, then each entry's or record's crc)
//! and the way the frame decoder takes them now (each payload read once,
//! the frame's crc folded from the entries' or records'):
//!
//! ```text
//! cargo run --release -p trilog-wire --example checksum_cost
//! ```
//!
//! Prints the time per MiB of payload for an append of 64 entries of
//! 16 KiB and for a read answer of 64 such records, best of several runs
//! (the least disturbed by other work on the machine).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;
use trilog_wire::check::check_frame;
use trilog_wire::message::{Append, Entry, ReadResponse};
use trilog_wire::record::{encode_record, index_checked_records, parse_records};
use trilog_wire::{access, encode, FrameHeader, FRAME_HEADER_BYTES};

const ENTRIES: usize = 64;
const PAYLOAD: usize = 16 * 1024;
const ROUNDS: usize = 200;
const TRIES: usize = 7;

fn split(frame: &[u8]) -> (FrameHeader, AlignedVec<16>) {
    let header = match FrameHeader::parse(frame) {
        Ok(h) => h,
        Err(e) => panic!("a frame just encoded: {e}"),
    };
    let mut payload = AlignedVec::<16>::new();
    payload.extend_from_slice(&frame[FRAME_HEADER_BYTES..]);
    (header, payload)
}

/// The best time of `TRIES` runs of `ROUNDS` calls of `f`.
fn best(mut f: impl FnMut()) -> Duration {
    (0..TRIES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDS {
                f();
            }
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn report(what: &str, old: Duration, new: Duration) {
    let mib = (ENTRIES * PAYLOAD * ROUNDS) as f64 / (1024.0 * 1024.0);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / mib;
    println!(
        "{what}: two passes {:.1} us/MiB, one pass {:.1} us/MiB ({:.2}x)",
        per(old),
        per(new),
        per(new) / per(old)
    );
}

fn main() {
    let entries: Vec<Entry> = (0..ENTRIES)
        .map(|i| Entry::new(vec![i as u8; PAYLOAD]))
        .collect();
    let append = Append {
        log_id: 1,
        segment: 2,
        epoch: 3,
        first_seq: 0,
        first_offset: 0,
        commit: 0,
        entries,
    };
    let (header, payload) = split(&encode(1, &append));
    let old = best(|| {
        black_box(header.verify(&payload)).expect("crc");
        let a = access::<Append>(&payload).expect("append");
        for e in a.entries.iter() {
            assert_eq!(crc32c::crc32c(e.payload.as_slice()), e.crc.to_native());
        }
    });
    let new = best(|| black_box(check_frame(&header, &payload)).expect("sound"));
    report("append, receiver", old, new);

    let mut records = Vec::new();
    for i in 0..ENTRIES {
        let p = vec![i as u8; PAYLOAD];
        encode_record(&mut records, i as u64, 0, crc32c::crc32c(&p), &p);
    }
    let answer = ReadResponse {
        log_id: 1,
        segment: 2,
        from_offset: 0,
        count: ENTRIES as u32,
        watermark: ENTRIES as u64,
        sealed_len: None,
        records,
    };
    let (header, payload) = split(&encode(2, &answer));
    let old = best(|| {
        black_box(header.verify(&payload)).expect("crc");
        let r = access::<ReadResponse>(&payload).expect("answer");
        black_box(parse_records(&r.records, 0, ENTRIES as u32)).expect("records");
    });
    let new = best(|| {
        black_box(check_frame(&header, &payload)).expect("sound");
        let r = access::<ReadResponse>(&payload).expect("answer");
        black_box(index_checked_records(&r.records, 0, ENTRIES as u32)).expect("records");
    });
    report("read answer, receiver", old, new);
}
