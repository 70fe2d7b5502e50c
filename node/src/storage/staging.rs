//! The staging buffer of a segment: records waiting for the next flush.
//!
//! It is an aligned buffer of the disk ([`super::DiskBuffer`]) laid out exactly as the next write will put
//! it on disk: it starts at the block-aligned file position of the partial
//! tail block, holds the bytes of that block that are already written (or
//! being written by the flush in flight), then the staged records. So a
//! record is copied once, from the receive buffer into this buffer, and a
//! flush pads it with zeros to a whole block and hands it to the disk as it
//! is. The buffer doubles when it fills; growing copies, but only a
//! logarithmic number of times per flush.

use trilog_wire::record::{RecordHeader, RECORD_HEADER_BYTES};

use super::disk::{BufferOf, Disk, DiskBuffer, DiskFile, FileOf};
use super::{align_down, align_up, BLOCK_BYTES, STAGE_BYTES_INITIAL};

#[derive(Debug)]
pub(super) struct Staging<D: Disk> {
    buf: BufferOf<D>,
    /// File position of `buf[0]`; block-aligned.
    base_pos: u64,
    /// Bytes at the start of `buf` that are already written or in flight:
    /// the partial tail block, rewritten by this flush.
    tail_bytes: usize,
    /// Bytes of `buf` in use.
    fill: usize,
    /// Offset of the first record after the tail bytes.
    first_offset: u64,
}

impl<D: Disk> Staging<D> {
    /// A staging buffer that continues the data at `base_pos + tail.len()`,
    /// where `tail` holds the bytes already there in the block at
    /// `base_pos`.
    pub(super) fn new(
        file: &FileOf<D>,
        base_pos: u64,
        tail: &[u8],
        first_offset: u64,
        extra_bytes: usize,
    ) -> Staging<D> {
        assert_eq!(base_pos % BLOCK_BYTES, 0, "staging base unaligned");
        assert!((tail.len() as u64) < BLOCK_BYTES, "tail is a partial block");
        let capacity = align_up((tail.len() + extra_bytes) as u64).max(STAGE_BYTES_INITIAL);
        let mut buf = file.alloc_buffer(capacity as usize);
        buf[..tail.len()].copy_from_slice(tail);
        Staging {
            buf,
            base_pos,
            tail_bytes: tail.len(),
            fill: tail.len(),
            first_offset,
        }
    }

    /// Record bytes staged (not counting the tail block's old bytes).
    pub(super) fn staged_bytes(&self) -> u64 {
        (self.fill - self.tail_bytes) as u64
    }

    pub(super) fn has_records(&self) -> bool {
        self.fill > self.tail_bytes
    }

    pub(super) fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// File position just past the last staged byte.
    pub(super) fn end_pos(&self) -> u64 {
        self.base_pos + self.fill as u64
    }

    /// File position just past the bytes that were there before staging.
    pub(super) fn start_pos(&self) -> u64 {
        self.base_pos + self.tail_bytes as u64
    }

    /// Appends one record; returns the file position just past it.
    pub(super) fn push_record(
        &mut self,
        file: &FileOf<D>,
        header: &RecordHeader,
        payload: &[u8],
    ) -> u64 {
        assert_eq!(
            header.payload_len as usize,
            payload.len(),
            "record header and payload disagree"
        );
        let record_bytes = RECORD_HEADER_BYTES + payload.len();
        self.reserve(file, record_bytes);
        let out = &mut self.buf[self.fill..self.fill + record_bytes];
        out[..RECORD_HEADER_BYTES].copy_from_slice(&header.to_bytes());
        out[RECORD_HEADER_BYTES..].copy_from_slice(payload);
        self.fill += record_bytes;
        self.end_pos()
    }

    fn reserve(&mut self, file: &FileOf<D>, extra: usize) {
        let needed = self.fill + extra;
        if needed <= self.buf.len() {
            return;
        }
        let capacity = align_up(needed as u64).max(2 * self.buf.len() as u64);
        let mut bigger = file.alloc_buffer(capacity as usize);
        bigger[..self.fill].copy_from_slice(&self.buf[..self.fill]);
        self.buf = bigger;
    }

    /// Drops the staged bytes at and past file position `pos`, which must be
    /// a record boundary inside the staged records.
    pub(super) fn truncate_at(&mut self, pos: u64) {
        assert!(
            pos >= self.start_pos() && pos <= self.end_pos(),
            "truncation outside the staged records"
        );
        self.fill = (pos - self.base_pos) as usize;
    }

    /// Turns the staged bytes into one aligned write: pads them with zeros
    /// to a whole block and returns the buffer and its file position. Puts
    /// into `tail` the bytes of the new partial tail block (what the block
    /// at the end of this write holds before its padding).
    pub(super) fn into_write(mut self, tail: &mut Vec<u8>) -> (BufferOf<D>, u64) {
        assert!(self.has_records(), "a flush with nothing staged");
        let padded = align_up(self.fill as u64) as usize;
        assert!(padded <= self.buf.len(), "capacity is whole blocks");
        let bytes = &mut self.buf[..];
        bytes[self.fill..padded].fill(0);
        let tail_start = align_down(self.fill as u64) as usize;
        tail.clear();
        tail.extend_from_slice(&bytes[tail_start..self.fill]);
        self.buf.trim_to(padded);
        (self.buf, self.base_pos)
    }
}
