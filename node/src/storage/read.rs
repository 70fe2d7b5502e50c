//! Reads of durable records, in their on-disk layout.
//!
//! [`SegmentFile::read_plan`] uses the in-memory index to pick the records
//! and their byte range; [`ReadPlan::run`] reads the aligned cover of that
//! range with one direct read and returns exactly the bytes of the records,
//! ready to be sent as they are, in the buffer the disk filled
//! ([`ReadRecords`]: no copy out of it). Every record is checked (crcs, offsets)
//! before it is returned: a disk that corrupted data yields an error, never
//! garbage handed to a consumer.

use std::ops::{Deref, Range};
use std::path::PathBuf;
use std::rc::Rc;

use trilog_wire::crc::Fold;
use trilog_wire::limits::READ_BYTES_MAX;
use trilog_wire::record::{parse_record, Parsed};
use trilog_wire::WireError;

use super::disk::{Disk, DiskFile, FileOf, ReadBufOf};
use super::error::io_error;
use super::{align_down, align_up, SegmentFile, SegmentKey, StorageError};

/// A read taken out of a segment; borrows nothing from it.
#[must_use = "a read plan does nothing until run"]
#[derive(Debug)]
pub struct ReadPlan<D: Disk> {
    file: Rc<FileOf<D>>,
    path: PathBuf,
    key: SegmentKey,
    first_offset: u64,
    count: u32,
    /// File positions of the first record and just past the last.
    start_pos: u64,
    end_pos: u64,
}

impl<D: Disk> SegmentFile<D> {
    /// Plans a read of the records `[from, k)` for the largest `k <= to`
    /// whose bytes fit in `max_bytes` (capped at `READ_BYTES_MAX`), but at
    /// least one record when `from < to`, however large. `None` when
    /// `from == to`. Requires `from <= to <= durable_len()`.
    pub fn read_plan(&self, from: u64, to: u64, max_bytes: u32) -> Option<ReadPlan<D>> {
        let key = self.key();
        assert!(from <= to, "{key}: read of [{from}, {to})");
        assert!(
            to <= self.durable_len,
            "{key}: read to {to} past the durable length {}",
            self.durable_len
        );
        if from == to {
            return None;
        }
        let max_bytes = u64::from(max_bytes.min(READ_BYTES_MAX));
        let start_pos = self.positions[from as usize];
        // Ends of the candidate records [from, to): positions[from + 1 ..= to].
        let ends = &self.positions[from as usize + 1..=to as usize];
        let fitting = ends.partition_point(|end| end - start_pos <= max_bytes);
        let count = fitting.max(1);
        let end_pos = ends[count - 1];
        // Records are at least 32 bytes and max_bytes is a u32.
        assert!(count <= u32::MAX as usize, "{key}: read of {count} records");
        let count = count as u32;
        Some(ReadPlan {
            file: self.data.clone(),
            path: self.data_path.clone(),
            key,
            first_offset: from,
            count,
            start_pos,
            end_pos,
        })
    }
}

/// The records a [`ReadPlan`] read: a range of the buffer the disk filled
/// (the aligned cover of the records), read as exactly their bytes.
#[derive(Debug)]
pub struct ReadRecords<B> {
    buf: B,
    range: Range<usize>,
    /// crc32c of the records' bytes, built while checking them (each
    /// payload read once), for the frame that sends them.
    crc: u32,
}

impl<B> ReadRecords<B> {
    /// crc32c of the records' bytes.
    pub fn crc(&self) -> u32 {
        self.crc
    }
}

impl<B: Deref<Target = [u8]>> Deref for ReadRecords<B> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl<D: Disk> ReadPlan<D> {
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the records this plan returns.
    pub fn bytes(&self) -> u64 {
        self.end_pos - self.start_pos
    }

    /// Reads and checks the records. Returns their count and exactly their
    /// bytes, in the record layout, where the disk put them.
    pub async fn run(self) -> Result<(u32, ReadRecords<ReadBufOf<D>>), StorageError> {
        let cover_start = align_down(self.start_pos);
        let cover_len = (align_up(self.end_pos) - cover_start) as usize;
        let lo = (self.start_pos - cover_start) as usize;
        let hi = (self.end_pos - cover_start) as usize;
        // The file may end inside the last block of the cover (a file cut
        // short and recovered): only the records' bytes must be there.
        let read = self
            .file
            .read_at_aligned(cover_start, cover_len)
            .await
            .map_err(|e| io_error(self.key, &self.path, "read", e))?;
        if read.len() < hi {
            return Err(StorageError::ShortRead {
                segment: self.key,
                file: self.path.clone(),
                pos: cover_start,
                read: read.len(),
                expected: hi,
            });
        }
        let crc = self.check(&read[lo..hi])?;
        let records = ReadRecords {
            buf: read,
            range: lo..hi,
            crc,
        };
        Ok((self.count, records))
    }

    /// Every record valid, in sequence, nothing left over. Returns the
    /// crc32c of `records`, built from the records' own crcs.
    fn check(&self, records: &[u8]) -> Result<u32, StorageError> {
        let mut fold = Fold::new(&[]);
        let mut at = 0usize;
        for i in 0..u64::from(self.count) {
            let offset = self.first_offset + i;
            let corrupt = |source| StorageError::CorruptRecord {
                segment: self.key,
                file: self.path.clone(),
                pos: self.start_pos + at as u64,
                offset,
                source,
            };
            match parse_record(&records[at..], offset).map_err(corrupt)? {
                Parsed::Record { header, .. } => {
                    fold.record(&records[at..], &header);
                    at += header.encoded_len();
                }
                Parsed::End => {
                    return Err(corrupt(WireError::BadRecord {
                        offset,
                        reason: "zeros where a durable record should be",
                    }))
                }
            }
        }
        if at != records.len() {
            return Err(StorageError::CorruptRecord {
                segment: self.key,
                file: self.path.clone(),
                pos: self.start_pos + at as u64,
                offset: self.first_offset + u64::from(self.count),
                source: WireError::BadRecord {
                    offset: self.first_offset + u64::from(self.count),
                    reason: "records end before their indexed end",
                },
            });
        }
        Ok(fold.crc())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use trilog_wire::limits::ENTRY_BYTES_MAX;
    use trilog_wire::record::{parse_records, RECORD_HEADER_BYTES};

    use crate::storage::test_support::{
        flush, header, path_of, payload, run_local, stage, test_dir,
    };
    use crate::storage::{GlommioDisk, SegmentFile, StorageError, SEGMENT_HEADER_BYTES};

    const H: u32 = RECORD_HEADER_BYTES as u32;

    #[test]
    fn plans_fit_max_bytes_but_always_take_one_record() {
        let dir = test_dir();
        let path = path_of(&dir);
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &path, header(1))
                .await
                .expect("create");
            let sizes = [10u32, 5000, 20, ENTRY_BYTES_MAX, 30];
            for (o, len) in sizes.iter().enumerate() {
                stage(&mut seg, o as u64, &payload(o as u64, *len as usize, 0));
            }
            flush(&mut seg).await;
            let plan = |from, to, max| {
                seg.read_plan(from, to, max)
                    .map(|p| (p.first_offset(), p.count(), p.bytes()))
            };

            assert_eq!(plan(2, 2, 1 << 20), None);
            assert_eq!(plan(0, 5, 0), Some((0, 1, u64::from(H + 10))));
            let two = H + 10 + H + 5000;
            assert_eq!(plan(0, 5, two), Some((0, 2, u64::from(two))));
            assert_eq!(plan(0, 5, two - 1), Some((0, 1, u64::from(H + 10))));
            assert_eq!(plan(0, 2, u32::MAX), Some((0, 2, u64::from(two))));
            // A record larger than max_bytes comes alone.
            assert_eq!(
                plan(3, 5, 100),
                Some((3, 1, u64::from(H + ENTRY_BYTES_MAX)))
            );
            // max_bytes is capped: everything fits in READ_BYTES_MAX here.
            let all: u32 = sizes.iter().map(|s| s + H).sum();
            assert_eq!(plan(0, 5, u32::MAX), Some((0, 5, u64::from(all))));

            let read = seg.read_plan(1, 4, u32::MAX).expect("plan");
            let summed = trilog_wire::crc::bytes_summed();
            let (count, bytes) = read.run().await.expect("read");
            let summed = trilog_wire::crc::bytes_summed() - summed;
            assert_eq!(count, 3);
            // The crc the answer is framed with, built while checking:
            // each payload read once, plus 60 bytes of each header.
            assert_eq!(bytes.crc(), crc32c::crc32c(&bytes));
            let payloads = u64::from(sizes[1] + sizes[2] + sizes[3]);
            assert_eq!(summed, payloads + 3 * 60);
            let records = parse_records(&bytes, 1, count).expect("exactly the records");
            for (o, p) in records {
                assert_eq!(p, &payload(o, sizes[o as usize] as usize, 0)[..]);
            }

            // Reading past the durable length is a programmer error.
            stage(&mut seg, 5, b"staged, not durable");
            let past = catch_unwind(AssertUnwindSafe(|| {
                seg.read_plan(0, 6, 100).map(|p| p.count())
            }));
            assert!(past.is_err(), "read past the durable length planned");
        });
    }

    #[test]
    fn a_corrupted_record_is_an_error_not_data() {
        let dir = test_dir();
        let path = path_of(&dir);
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &path, header(2))
                .await
                .expect("create");
            for o in 0..3 {
                stage(&mut seg, o, &payload(o, 100, 0));
            }
            flush(&mut seg).await;
            // Damage the payload of record 1 behind the segment's back.
            let record_1 = SEGMENT_HEADER_BYTES + u64::from(H) + 100;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(seg.data_path())
                .expect("open");
            f.write_all_at(&[0xff; 4], record_1 + u64::from(H) + 50)
                .expect("corrupt");
            f.sync_all().expect("sync");
            drop(f);

            let err = seg
                .read_plan(0, 3, 1 << 20)
                .expect("plan")
                .run()
                .await
                .expect_err("corruption served");
            match &err {
                StorageError::CorruptRecord { pos, file, .. } => {
                    assert_eq!(*pos, record_1);
                    assert_eq!(file, seg.data_path());
                }
                other => panic!("unexpected {other:?}"),
            }
            // The records before it are still served.
            let (count, _) = seg
                .read_plan(0, 1, 1)
                .expect("plan")
                .run()
                .await
                .expect("read");
            assert_eq!(count, 1);
        });
    }
}
