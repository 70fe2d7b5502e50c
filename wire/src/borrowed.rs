//! Messages serialized straight from data their sender holds, without
//! first copying it into an owned message: the same archived bytes, one
//! copy fewer.
//!
//! **Appends.** An append is serialized from entries the producer holds:
//! the archived bytes of an [`Append`], built without first cloning its
//! entries into one.
//!
//! The producer keeps the entries it has not seen committed; an append is
//! a window onto them. Building an owned [`Append`] to serialize it would
//! copy every payload once more than needed (clone, then serialize), so
//! [`AppendRef`] archives as [`ArchivedAppend`] from borrowed entries: the
//! payload bytes are copied once, into the buffer the replicas are sent.
//! The bytes are exactly those of the owned append (a test holds them to
//! it), so the node cannot tell the two apart.
//!
//! **Read answers.** A node answers a read with records in the buffer its
//! disk read filled; [`read_response_frame`] archives them as a
//! [`ReadResponse`] from that slice straight into the frame that is sent
//! (after room left for its header), so they are copied once, into the
//! frame: not first out of the read buffer, nor from an answer into a
//! frame.

use std::cell::Cell;

use rkyv::munge::munge;
use rkyv::rancor::{Error as RancorError, Fallible};
use rkyv::ser::{Allocator, Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};

use crate::crc::Fold;
use crate::frame::{FrameHeader, Kind, FRAME_HEADER_BYTES};
use crate::message::{
    Append, ArchivedAppend, ArchivedEntry, ArchivedReadResponse, Entry, ReadResponse,
};

/// Archived bytes per entry besides its payload, at most: the crc, the
/// payload's relative pointer and length, padding to 4.
const ENTRY_OVERHEAD_BYTES: usize = 16;
/// Archived bytes of an append besides its entries, at most: six u64s, the
/// entries' pointer and length, padding.
const HEAD_BYTES: usize = 128;

/// The fields of an [`Append`] but its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendHead {
    pub log_id: u64,
    pub segment: u64,
    pub epoch: u64,
    pub first_seq: u64,
    pub first_offset: u64,
    pub commit: u64,
}

/// An [`Append`] whose entries are borrowed, in order, from `entries`.
pub struct AppendRef<I> {
    pub head: AppendHead,
    pub entries: I,
}

/// Where [`AppendRef`]'s entries were written.
pub struct AppendRefResolver {
    entries: VecResolver,
}

impl<'a, I> Archive for AppendRef<I>
where
    I: ExactSizeIterator<Item = &'a Entry> + Clone,
{
    type Archived = ArchivedAppend;
    type Resolver = AppendRefResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedAppend {
            log_id,
            segment,
            epoch,
            first_seq,
            first_offset,
            commit,
            entries,
        } = out);
        let h = &self.head;
        h.log_id.resolve((), log_id);
        h.segment.resolve((), segment);
        h.epoch.resolve((), epoch);
        h.first_seq.resolve((), first_seq);
        h.first_offset.resolve((), first_offset);
        h.commit.resolve((), commit);
        ArchivedVec::resolve_from_len(self.entries.len(), resolver.entries, entries);
    }
}

impl<'a, I, S> Serialize<S> for AppendRef<I>
where
    I: ExactSizeIterator<Item = &'a Entry> + Clone,
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        let entries = ArchivedVec::<ArchivedEntry>::serialize_from_iter::<Entry, _, _>(
            self.entries.clone(),
            serializer,
        )?;
        Ok(AppendRefResolver { entries })
    }
}

/// An append's payload, and its crc32c.
pub struct EncodedAppend {
    pub payload: AlignedVec,
    /// crc32c of `payload`, built from the entries' crcs and the bytes
    /// between their payloads: the payloads were not read for it.
    pub crc: u32,
}

/// The payload of an `Append` frame of `head` and `entries`: the same
/// bytes as [`crate::encode_payload`] of the owned [`Append`], with its
/// crc32c taken from the entries' (so each payload byte is checksummed
/// once on this side, when its entry was made). An entry whose `crc` is not
/// its payload's makes a frame the receiver refuses.
pub fn encode_append<'a, I>(head: AppendHead, entries: I) -> EncodedAppend
where
    I: ExactSizeIterator<Item = &'a Entry> + Clone,
{
    // The buffer is sized up front: grown by doubling instead, it would
    // copy what it holds at each step, and allocate up to twice the
    // payload.
    let size: usize = entries
        .clone()
        .map(|e| e.payload.len() + ENTRY_OVERHEAD_BYTES)
        .sum::<usize>()
        + HEAD_BYTES;
    let append = AppendRef { head, entries };
    // As in `encode_payload`: serializing into memory fails only on
    // allocation failure or pointer overflow, programmer errors here.
    let payload = match rkyv::api::high::to_bytes_in::<_, RancorError>(
        &append,
        AlignedVec::with_capacity(size),
    ) {
        Ok(p) => p,
        Err(e) => panic!("serializing an append from borrowed entries failed: {e}"),
    };
    let crc = append_crc(&payload);
    EncodedAppend { payload, crc }
}

/// The crc32c of an append just serialized here, from its entries' crcs.
fn append_crc(payload: &[u8]) -> u32 {
    let archived = match crate::access::<Append>(payload) {
        Ok(a) => a,
        Err(e) => panic!("an append just serialized fails its check: {e}"),
    };
    let base = payload.as_ptr() as usize;
    // The serializer writes each payload before the next, and the entries'
    // array after them all: the pieces are in order.
    let pieces = archived
        .entries
        .iter()
        .filter(|e| !e.payload.is_empty())
        .map(|e| {
            let start = e.payload.as_ptr() as usize - base;
            (start..start + e.payload.len(), e.crc.to_native())
        });
    let mut fold = Fold::new(&[]);
    match fold.body_with_known(payload, pieces) {
        Some(()) => fold.crc(),
        None => panic!("an append's payloads were not serialized in order"),
    }
}

impl AppendHead {
    /// The head of `append`.
    pub fn of(append: &Append) -> AppendHead {
        AppendHead {
            log_id: append.log_id,
            segment: append.segment,
            epoch: append.epoch,
            first_seq: append.first_seq,
            first_offset: append.first_offset,
            commit: append.commit,
        }
    }
}

/// The fields of a [`ReadResponse`] but its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadResponseHead {
    pub log_id: u64,
    pub segment: u64,
    pub from_offset: u64,
    pub count: u32,
    pub watermark: u64,
    pub sealed_len: Option<u64>,
}

/// A [`ReadResponse`] whose records are borrowed.
pub struct ReadResponseRef<'a> {
    pub head: ReadResponseHead,
    pub records: &'a [u8],
    /// Where serializing put the records, from the payload's start: the
    /// frame's crc is built around them.
    records_at: Cell<Option<usize>>,
}

/// Where [`ReadResponseRef`]'s parts were written.
pub struct ReadResponseRefResolver {
    sealed_len: Option<()>,
    records: VecResolver,
}

impl Archive for ReadResponseRef<'_> {
    type Archived = ArchivedReadResponse;
    type Resolver = ReadResponseRefResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedReadResponse {
            log_id,
            segment,
            from_offset,
            count,
            watermark,
            sealed_len,
            records,
        } = out);
        let h = &self.head;
        h.log_id.resolve((), log_id);
        h.segment.resolve((), segment);
        h.from_offset.resolve((), from_offset);
        h.count.resolve((), count);
        h.watermark.resolve((), watermark);
        h.sealed_len.resolve(resolver.sealed_len, sealed_len);
        ArchivedVec::resolve_from_len(self.records.len(), resolver.records, records);
    }
}

impl<S> Serialize<S> for ReadResponseRef<'_>
where
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        let sealed_len = self.head.sealed_len.serialize(serializer)?;
        // Bytes need no alignment: they are written where the writer is.
        let start = serializer.pos();
        let records = ArchivedVec::<u8>::serialize_from_slice(self.records, serializer)?;
        assert_eq!(
            serializer.pos(),
            start + self.records.len(),
            "the records are written as they are, where the writer was"
        );
        self.records_at.set(Some(start));
        Ok(ReadResponseRefResolver {
            sealed_len,
            records,
        })
    }
}

/// A whole frame being built: the header's room, then the payload, whose
/// positions the serializer counts from the payload's start (the receiver
/// reads the payload into an aligned buffer of its own, so alignment is
/// relative to it).
struct FrameWriter(Vec<u8>);

impl Positional for FrameWriter {
    fn pos(&self) -> usize {
        self.0.len() - FRAME_HEADER_BYTES
    }
}

impl<E> Writer<E> for FrameWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The whole `ReadResponse` frame answering `request_id` with `head` and
/// `records`, whose crc32c is `records_crc` (as
/// [`crate::record::check_records_crc`] gives it while checking them): the
/// same bytes as [`crate::encode`] of the owned [`ReadResponse`], with the
/// records copied once, into it, and not read again for the frame's crc.
pub fn read_response_frame(
    request_id: u64,
    head: ReadResponseHead,
    records: &[u8],
    records_crc: u32,
) -> Vec<u8> {
    let mut room = Vec::with_capacity(FRAME_HEADER_BYTES + records.len() + HEAD_BYTES);
    room.resize(FRAME_HEADER_BYTES, 0);
    let response = ReadResponseRef {
        head,
        records,
        records_at: Cell::new(None),
    };
    let mut frame =
        match rkyv::api::high::to_bytes_in::<_, RancorError>(&response, FrameWriter(room)) {
            Ok(w) => w.0,
            Err(e) => panic!("serializing a read answer from borrowed records failed: {e}"),
        };
    let Some(start) = response.records_at.get() else {
        panic!("a read answer was serialized without its records");
    };
    let body = &frame[FRAME_HEADER_BYTES..];
    let end = start + records.len();
    assert!(end <= body.len(), "the records lie inside the answer");
    let mut fold = Fold::new(&[]);
    fold.bytes(&body[..start]);
    fold.known(records_crc, records.len());
    fold.bytes(&body[end..]);
    let header =
        FrameHeader::for_payload_crc(Kind::ReadResponse, request_id, body.len(), fold.crc());
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&header.to_bytes());
    frame
}

impl ReadResponseHead {
    /// The head of `response`.
    pub fn of(response: &ReadResponse) -> ReadResponseHead {
        ReadResponseHead {
            log_id: response.log_id,
            segment: response.segment,
            from_offset: response.from_offset,
            count: response.count,
            watermark: response.watermark,
            sealed_len: response.sealed_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_payload, encode_payload, Message};
    use crate::frame::Kind;

    fn append(entries: Vec<Entry>) -> Append {
        Append {
            log_id: 7,
            segment: 3,
            epoch: 2,
            first_seq: 100,
            first_offset: 5,
            commit: 4,
            entries,
        }
    }

    #[test]
    fn borrowed_entries_archive_to_the_owned_appends_bytes() {
        for entries in [
            Vec::new(),
            vec![Entry::new(Vec::new())],
            vec![
                Entry::new(b"one".to_vec()),
                Entry::new(vec![0xab; 5000]),
                Entry::new(b"three".to_vec()),
            ],
        ] {
            let owned = append(entries);
            let borrowed = encode_append(AppendHead::of(&owned), owned.entries.iter());
            assert_eq!(&borrowed.payload[..], &encode_payload(&owned)[..]);
            assert_eq!(borrowed.crc, crc32c::crc32c(&borrowed.payload));
            let back = decode_payload(Kind::Append, &borrowed.payload).expect("a valid append");
            assert_eq!(back, Message::Append(owned));
        }
    }

    #[test]
    fn borrowed_records_frame_to_the_owned_answers_bytes() {
        for (sealed_len, records) in [
            (None, Vec::new()),
            (Some(9), vec![1u8, 2, 3]),
            (None, vec![0x5a; 70_001]),
        ] {
            let owned = ReadResponse {
                log_id: 1,
                segment: 4,
                from_offset: 17,
                count: 3,
                watermark: 20,
                sealed_len,
                records,
            };
            let records_crc = crc32c::crc32c(&owned.records);
            let frame = read_response_frame(
                77,
                ReadResponseHead::of(&owned),
                &owned.records,
                records_crc,
            );
            // The crc built around the records is the frame's crc.
            assert_eq!(frame, crate::codec::encode(77, &owned));
            let back = decode_payload(Kind::ReadResponse, &frame[FRAME_HEADER_BYTES..])
                .expect("a valid answer");
            assert_eq!(back, Message::ReadResponse(owned));
        }
    }

    #[test]
    fn a_window_of_a_deque_is_serialized_in_place() {
        let held: std::collections::VecDeque<Entry> =
            (0..6u8).map(|i| Entry::new(vec![i; 10])).collect();
        let owned = append(held.range(2..5).cloned().collect());
        let borrowed = encode_append(AppendHead::of(&owned), held.range(2..5));
        assert_eq!(&borrowed.payload[..], &encode_payload(&owned)[..]);
    }
}
