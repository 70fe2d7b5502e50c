//! The check of a whole frame that the decoder makes before returning it:
//! the frame's crc, and the crcs of the entries or records it carries,
//! with each payload byte read once.
//!
//! An `Append` carries entries with the producer's crc of each payload,
//! and a `ReadResponse` records with their header and payload crcs. A
//! receiver must check both those and the frame's crc, which covers the
//! same bytes. Here each entry's or record's payload is read once, for its
//! own crc, and the frame's crc is built from those crcs and the few bytes
//! between the payloads ([`crate::crc::Fold`]).
//!
//! A frame of those kinds whose payload is not a valid archive has its crc
//! checked the plain way; the archive's error is then its reader's to
//! report, as for every other kind.

use crate::codec::access;
use crate::crc::{crc32c, Fold};
use crate::error::WireError;
use crate::frame::{FrameHeader, Kind};
use crate::message::{Append, ReadResponse};
use crate::record::check_records_crc;

/// Checks `payload` (16-byte aligned, as the decoder holds it) against
/// `header`: its length and crc always; for an `Append` every entry's
/// payload against its crc; for a `ReadResponse` every record (headers,
/// sequence, payloads against their crcs, nothing left over). A frame whose
/// crc fails is refused as such, whatever else is wrong with it.
pub fn check_frame(header: &FrameHeader, payload: &[u8]) -> Result<(), WireError> {
    if payload.len() != header.payload_len as usize {
        return Err(WireError::Truncated {
            needed: header.payload_len as usize,
            have: payload.len(),
        });
    }
    match header.kind {
        Kind::Append => check_append(header, payload),
        Kind::ReadResponse => check_read_response(header, payload),
        _ => header.verify(payload),
    }
}

fn check_append(header: &FrameHeader, payload: &[u8]) -> Result<(), WireError> {
    let Ok(append) = access::<Append>(payload) else {
        return header.verify(payload);
    };
    let base = payload.as_ptr() as usize;
    let mut fold = Fold::new(&header.head_bytes());
    // Where the frame's bytes were folded up to; `None` once a payload
    // lies before it (a layout this crate's encoder never makes, but a
    // valid archive may), and the frame's crc is then taken the plain way.
    let mut folded_to = Some(0usize);
    let mut bad_entry = None;
    for (index, entry) in append.entries.iter().enumerate() {
        let bytes = entry.payload.as_slice();
        let crc = crc32c(bytes);
        if crc != entry.crc.to_native() && bad_entry.is_none() {
            bad_entry = Some(index as u64);
        }
        if bytes.is_empty() {
            continue;
        }
        // The archive was checked: the payload lies inside the frame's.
        let start = bytes.as_ptr() as usize - base;
        assert!(start + bytes.len() <= payload.len(), "checked archive");
        folded_to = match folded_to {
            Some(at) if at <= start => {
                fold.bytes(&payload[at..start]);
                fold.known(crc, bytes.len());
                Some(start + bytes.len())
            }
            _ => None,
        };
    }
    match folded_to {
        Some(at) => {
            fold.bytes(&payload[at..]);
            compare(fold.crc(), header.crc)?;
        }
        None => header.verify(payload)?,
    }
    match bad_entry {
        Some(index) => Err(WireError::EntryCrc { index }),
        None => Ok(()),
    }
}

fn check_read_response(header: &FrameHeader, payload: &[u8]) -> Result<(), WireError> {
    let Ok(response) = access::<ReadResponse>(payload) else {
        return header.verify(payload);
    };
    let records = response.records.as_slice();
    let records_crc = check_records_crc(
        records,
        response.from_offset.to_native(),
        response.count.to_native(),
    );
    let records_crc = match records_crc {
        Ok(crc) => crc,
        Err(bad) => {
            // Bytes damaged on the way are the frame's crc error; records
            // that arrived as sent are the sender's.
            header.verify(payload)?;
            return Err(bad);
        }
    };
    let start = records.as_ptr() as usize - payload.as_ptr() as usize;
    let end = start + records.len();
    assert!(end <= payload.len(), "checked archive");
    let mut fold = Fold::new(&header.head_bytes());
    fold.bytes(&payload[..start]);
    fold.known(records_crc, records.len());
    fold.bytes(&payload[end..]);
    compare(fold.crc(), header.crc)
}

fn compare(computed: u32, carried: u32) -> Result<(), WireError> {
    if computed == carried {
        Ok(())
    } else {
        Err(WireError::CrcMismatch { computed, carried })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::frame::FRAME_HEADER_BYTES;
    use crate::message::{Entry, Seal};
    use crate::record::encode_record;
    use rkyv::util::AlignedVec;

    fn split(frame: &[u8]) -> (FrameHeader, AlignedVec<16>) {
        let header = FrameHeader::parse(frame).expect("a header");
        let mut payload = AlignedVec::<16>::new();
        payload.extend_from_slice(&frame[FRAME_HEADER_BYTES..]);
        (header, payload)
    }

    fn append(entries: Vec<Entry>) -> Append {
        Append {
            log_id: 1,
            segment: 2,
            epoch: 3,
            first_seq: 4,
            first_offset: 5,
            commit: 6,
            entries,
        }
    }

    fn records(from: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut out, from + i as u64, 0, crc32c::crc32c(p), p);
        }
        out
    }

    fn answer(records: Vec<u8>, count: u32) -> ReadResponse {
        ReadResponse {
            log_id: 1,
            segment: 2,
            from_offset: 10,
            count,
            watermark: 12,
            sealed_len: Some(13),
            records,
        }
    }

    #[test]
    fn an_append_is_checked_reading_each_payload_once() {
        let a = append(vec![
            Entry::new(vec![1; 5000]),
            Entry::new(Vec::new()),
            Entry::new(vec![2; 70_000]),
        ]);
        let (header, payload) = split(&encode(9, &a));
        let before = crate::crc::bytes_summed();
        check_frame(&header, &payload).expect("a sound append");
        let read = crate::crc::bytes_summed() - before;
        assert!(read >= 75_000, "every payload byte read: {read}");
        assert!(read < 75_000 + 200, "and only once: {read}");
    }

    #[test]
    fn a_damaged_append_is_a_crc_error_and_a_lying_entry_names_itself() {
        let a = append(vec![Entry::new(vec![1; 100]), Entry::new(vec![2; 100])]);
        let frame = encode(9, &a);
        for at in [FRAME_HEADER_BYTES, frame.len() - 1, frame.len() / 2] {
            let mut bad = frame.clone();
            bad[at] ^= 0x40;
            let (header, payload) = split(&bad);
            assert!(
                matches!(
                    check_frame(&header, &payload),
                    Err(WireError::CrcMismatch { .. })
                ),
                "byte {at}"
            );
        }
        let mut liar = a.clone();
        liar.entries[1].crc ^= 1;
        let (header, payload) = split(&encode(9, &liar));
        assert_eq!(
            check_frame(&header, &payload),
            Err(WireError::EntryCrc { index: 1 })
        );
    }

    #[test]
    fn a_read_answer_is_checked_reading_each_payload_once() {
        let r = answer(records(10, &[&[7; 3000], b"", &[8; 9000]]), 3);
        let (header, payload) = split(&encode(4, &r));
        let before = crate::crc::bytes_summed();
        check_frame(&header, &payload).expect("a sound answer");
        let read = crate::crc::bytes_summed() - before;
        assert!(read >= 12_000, "every payload byte read: {read}");
        assert!(read < 12_000 + 400, "and only once: {read}");
    }

    #[test]
    fn a_read_answer_with_a_bad_record_is_refused_with_its_reason() {
        // A record whose payload fails its crc, in a frame sent as it is.
        let mut bytes = records(10, &[b"good", b"evil"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let (header, payload) = split(&encode(4, &answer(bytes.clone(), 2)));
        assert!(matches!(
            check_frame(&header, &payload),
            Err(WireError::BadRecord { offset: 11, .. })
        ));
        // Fewer records than announced.
        let (header, payload) = split(&encode(4, &answer(records(10, &[b"one"]), 2)));
        assert!(matches!(
            check_frame(&header, &payload),
            Err(WireError::BadRecord { .. })
        ));
        // Damage on the way is the frame's crc error.
        let mut frame = encode(4, &answer(records(10, &[b"good"]), 1));
        let at = frame.len() - 40;
        frame[at] ^= 2;
        let (header, payload) = split(&frame);
        assert!(matches!(
            check_frame(&header, &payload),
            Err(WireError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn other_kinds_and_non_archives_are_checked_the_plain_way() {
        let seal = Seal {
            log_id: 1,
            segment: 2,
            epoch: 3,
            len: 4,
        };
        let (header, payload) = split(&encode(1, &seal));
        check_frame(&header, &payload).expect("a sound seal");
        let junk = vec![0xA5u8; 64];
        let mut frame = FrameHeader::for_payload(Kind::Append, 1, &junk)
            .to_bytes()
            .to_vec();
        frame.extend_from_slice(&junk);
        let (header, payload) = split(&frame);
        check_frame(&header, &payload).expect("the crc holds; the archive is the reader's error");
    }
}
