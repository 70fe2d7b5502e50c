//! Group commit: one aligned write and one fdatasync for every record
//! staged since the last flush began.
//!
//! [`SegmentFile::begin_flush`] takes the staging buffer — the partial tail
//! block followed by the staged records, padded with zeros to a whole
//! block — into a [`FlushJob`]. [`FlushJob::run`] writes it at the aligned
//! position of the tail block and fdatasyncs, extending the preallocation
//! first when the write would pass it. [`SegmentFile::complete_flush`] then
//! advances `durable_len`. Records staged while the job runs go to a new
//! staging buffer that starts with the job's own partial tail block, so
//! they land in the next job. One job per segment is in flight at a time.
//!
//! **Rewriting the tail block.** Each flush rewrites the partial tail
//! block, which holds durable records. This is safe because the rewrite
//! puts back the same bytes for those records: whatever a crash leaves of
//! the write, each sector of that block holds either its old or its new
//! content, and both agree on the durable records. The assumption is that a
//! write of a sector (and so of an aligned 4 KiB block on a 4 KiB-sector
//! device) is atomic: it never leaves garbage in bytes it rewrites with
//! their own value. Reads of durable records that run during a flush read
//! the same bytes for the same reason.
//!
//! **A failed flush** (ENOSPC while extending the preallocation, an I/O
//! error, a failed fdatasync, or a job dropped before it finished) leaves
//! `durable_len` where it was and puts the segment in a failed state: the
//! job records the failure itself, in a cell it shares with the segment,
//! so the caller cannot forget to; the staged records are dropped,
//! [`SegmentFile::stage`] does nothing from then on, no further flush
//! begins, and [`SegmentFile::failure`] says why. Durable records stay
//! readable and control writes (fence, seal) still work. This is simpler
//! and safer than a retry: after a failed write or fdatasync it is unknown
//! what reached the disk, and a retried fdatasync that succeeds proves
//! nothing (Linux reports a writeback error once, then forgets it); and the
//! protocol needs no retry, since the producer seals a segment whose
//! replica failed and continues on another. Nothing was acknowledged past
//! `durable_len`, so nothing is lost.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::direct_file::write_all_at;
use super::disk::{BufferOf, Disk, DiskFile, FileOf};
use super::error::io_error;
use super::{next_allocation, SegmentFile, SegmentKey, StorageError};

/// What [`SegmentFile`] remembers of its flush in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InFlight {
    len_after: u64,
}

/// A flush taken out of a segment; borrows nothing from it.
#[must_use = "staged records are durable only once the flush runs and completes"]
#[derive(Debug)]
pub struct FlushJob<D: Disk> {
    file: Rc<FileOf<D>>,
    path: PathBuf,
    key: SegmentKey,
    buf: BufferOf<D>,
    pos: u64,
    /// Extend the preallocation to this size before writing.
    prealloc_to: Option<u64>,
    len_after: u64,
    failure: FailureGuard,
}

/// Records the failure of its flush job in the segment, including the
/// failure of being dropped before it finished.
#[derive(Debug)]
struct FailureGuard {
    failed: Rc<RefCell<Option<String>>>,
    armed: bool,
}

impl FailureGuard {
    fn fail(&mut self, err: &StorageError) {
        tracing::error!("flush failed, the segment takes no more entries: {err}");
        self.failed
            .borrow_mut()
            .get_or_insert_with(|| err.to_string());
        self.armed = false;
    }

    fn succeed(&mut self) {
        self.armed = false;
    }
}

impl Drop for FailureGuard {
    fn drop(&mut self) {
        if self.armed {
            tracing::error!(
                "flush job dropped before it finished, the segment takes no more entries"
            );
            self.failed
                .borrow_mut()
                .get_or_insert_with(|| "flush job dropped before it finished".to_string());
        }
    }
}

/// A flush that is durable; give it to [`SegmentFile::complete_flush`].
#[must_use = "the segment does not know the records are durable until completed"]
#[derive(Debug)]
pub struct FlushDone {
    key: SegmentKey,
    len_after: u64,
    sync_time: Duration,
}

impl FlushDone {
    /// How long the fdatasync took (the write before it not counted).
    pub fn sync_time(&self) -> Duration {
        self.sync_time
    }
}

impl<D: Disk> FlushJob<D> {
    /// The segment's durable length once this job completes.
    pub fn len_after(&self) -> u64 {
        self.len_after
    }

    /// Bytes this job writes (whole blocks).
    pub fn write_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Extends the preallocation if needed, writes, fdatasyncs. On failure
    /// the segment is marked failed before this returns.
    pub async fn run(self) -> Result<FlushDone, StorageError> {
        let FlushJob {
            file,
            path,
            key,
            buf,
            pos,
            prealloc_to,
            len_after,
            mut failure,
        } = self;
        match write_and_sync(&*file, &path, key, buf, pos, prealloc_to).await {
            Ok(sync_time) => {
                failure.succeed();
                Ok(FlushDone {
                    key,
                    len_after,
                    sync_time,
                })
            }
            Err(err) => {
                failure.fail(&err);
                Err(err)
            }
        }
    }

    /// Test hook: make the job fail in a real system call (fallocate with
    /// a zero length is EINVAL on every filesystem).
    #[cfg(test)]
    pub(super) fn break_for_test(&mut self) {
        self.prealloc_to = Some(0);
    }
}

async fn write_and_sync<F: DiskFile>(
    file: &F,
    path: &Path,
    key: SegmentKey,
    buf: F::Buffer,
    pos: u64,
    prealloc_to: Option<u64>,
) -> Result<Duration, StorageError> {
    if let Some(size) = prealloc_to {
        file.pre_allocate(size)
            .await
            .map_err(|e| io_error(key, path, "preallocate", e))?;
    }
    write_all_at(file, key, path, "write", buf, pos).await?;
    // Wall time even in the simulator: it is only reported, never decides.
    let started = Instant::now();
    file.fdatasync()
        .await
        .map_err(|e| io_error(key, path, "fdatasync", e))?;
    Ok(started.elapsed())
}

impl<D: Disk> SegmentFile<D> {
    /// Takes every staged record into one flush job, or `None` if nothing
    /// is staged or a flush failed. Panics if a flush is in flight.
    pub fn begin_flush(&mut self) -> Option<FlushJob<D>> {
        self.absorb_failure();
        let key = self.key();
        if self.is_failed() {
            return None;
        }
        assert!(
            self.in_flight.is_none(),
            "{key}: a second flush begun while one is in flight"
        );
        let staging = self.staging.take()?;
        if !staging.has_records() {
            // A seal dropped every staged record.
            return None;
        }
        assert_eq!(
            staging.end_pos(),
            self.last_position(),
            "{key}: staging and index disagree"
        );
        let len_after = self.staged_len();
        let (buf, pos) = staging.into_write(&mut self.tail);
        let write_end = pos + buf.len() as u64;
        let prealloc_to = (write_end > self.allocated_bytes)
            .then(|| next_allocation(self.allocated_bytes, write_end));
        if let Some(size) = prealloc_to {
            self.allocated_bytes = size;
        }
        self.in_flight = Some(InFlight { len_after });
        self.check_invariants();
        Some(FlushJob {
            file: self.data.clone(),
            path: self.data_path.clone(),
            key,
            buf,
            pos,
            prealloc_to,
            len_after,
            failure: FailureGuard {
                failed: self.failed.clone(),
                armed: true,
            },
        })
    }

    /// Applies a flush that succeeded and returns the new durable length:
    /// every record of the job may now be acknowledged. Panics if `done` is
    /// not the flush in flight. (A flush that failed needs no call: the job
    /// put the segment in the failed state itself.)
    pub fn complete_flush(&mut self, done: FlushDone) -> u64 {
        let key = self.key();
        assert_eq!(done.key, key, "flush of another segment");
        assert!(
            !self.is_failed(),
            "{key}: a flush succeeded after one failed"
        );
        let Some(in_flight) = self.in_flight.take() else {
            panic!("{key}: flush completed with none in flight");
        };
        assert_eq!(
            done.len_after, in_flight.len_after,
            "{key}: flush completed out of order"
        );
        // A seal may have cut the index below what the job wrote.
        let durable_len = in_flight.len_after.min(self.staged_len());
        assert!(
            durable_len >= self.durable_len,
            "{key}: durable length went back"
        );
        self.durable_len = durable_len;
        self.check_invariants();
        durable_len
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::rc::Rc;

    use trilog_wire::limits::{ENTRY_BYTES_MAX, READ_BYTES_MAX};
    use trilog_wire::record::{parse_record, Parsed, RECORD_HEADER_BYTES};

    use crate::storage::test_support::{
        flush, header, path_of, payload, read_range, run_local, stage, test_dir, write_ctl, Rng,
    };
    use crate::storage::{
        CtlState, GlommioDisk, SegmentFile, StorageError, PREALLOC_FIRST_BYTES,
        SEGMENT_HEADER_BYTES,
    };

    /// Checks `got` holds entries `from..` with the payloads of `sizes`.
    fn check_payloads(got: &[(u64, Vec<u8>)], from: u64, sizes: &[usize]) {
        for (i, (offset, bytes)) in got.iter().enumerate() {
            let expected = from + i as u64;
            assert_eq!(*offset, expected);
            assert_eq!(
                bytes,
                &payload(expected, sizes[expected as usize], 0),
                "payload of {expected}"
            );
        }
    }

    #[test]
    fn many_small_flushes_rewrite_the_tail_block_and_read_back() {
        const ENTRIES: u64 = 1000;
        let dir = test_dir();
        let path = path_of(&dir);
        let data_path = run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &path, header(1))
                .await
                .expect("create");
            let mut rng = Rng::new(7);
            let mut sizes = Vec::new();
            let mut offset = 0;
            let mut unaligned_ends = 0;
            while offset < ENTRIES {
                let batch = 1 + rng.below(4);
                for _ in 0..batch.min(ENTRIES - offset) {
                    let len = rng.below(9000) as usize;
                    stage(&mut seg, offset, &payload(offset, len, 0));
                    sizes.push(len);
                    offset += 1;
                }
                assert!(seg.has_staged());
                assert_eq!(seg.staged_len(), offset);
                assert_eq!(flush(&mut seg).await, offset);
                assert_eq!(seg.durable_len(), offset);
                assert!(!seg.has_staged());
                assert!(!seg.flush_in_flight());
                if seg.last_position() % 4096 != 0 {
                    unaligned_ends += 1;
                }
            }
            assert!(
                unaligned_ends > 100,
                "the tail block rewrite was hardly exercised"
            );
            let bytes: u64 = sizes.iter().map(|l| (RECORD_HEADER_BYTES + l) as u64).sum();
            assert_eq!(seg.last_position(), SEGMENT_HEADER_BYTES + bytes);

            for max_bytes in [0, 1, 4096, 9032, 65_536, 1 << 20, READ_BYTES_MAX] {
                let got = read_range(&seg, 0, ENTRIES, max_bytes).await;
                assert_eq!(got.len(), ENTRIES as usize, "max_bytes {max_bytes}");
                check_payloads(&got, 0, &sizes);
            }
            let got = read_range(&seg, 517, 601, 10_000).await;
            assert_eq!(got.len(), 84);
            check_payloads(&got, 517, &sizes);
            let data_path = seg.data_path().to_path_buf();
            seg.close().await.expect("close");
            (data_path, sizes)
        });

        // The file itself, read without the segment's index: every record
        // in sequence, then zeros.
        let (data_path, sizes) = data_path;
        let file = std::fs::read(&data_path).expect("read data file");
        let mut at = SEGMENT_HEADER_BYTES as usize;
        for offset in 0..ENTRIES {
            match parse_record(&file[at..], offset) {
                Ok(Parsed::Record { header, payload: p }) => {
                    assert_eq!(p, &payload(offset, sizes[offset as usize], 0)[..]);
                    assert_eq!(header.commit, offset / 2);
                    at += header.encoded_len();
                }
                other => panic!("record {offset} at {at}: {other:?}"),
            }
        }
        assert_eq!(parse_record(&file[at..], ENTRIES), Ok(Parsed::End));
    }

    #[test]
    fn records_staged_during_a_flush_land_in_the_next() {
        let dir = test_dir();
        let path = path_of(&dir);
        run_local(move || async move {
            let seg = Rc::new(RefCell::new(
                SegmentFile::create(&GlommioDisk, &path, header(2))
                    .await
                    .expect("create"),
            ));
            for o in 0..3 {
                stage(&mut seg.borrow_mut(), o, &payload(o, 5000, 0));
            }
            let job = seg.borrow_mut().begin_flush().expect("job");
            assert_eq!(job.len_after(), 3);
            let task = glommio::spawn_local(job.run());
            futures_lite::future::yield_now().await;
            // The job is in flight; the segment is free for more appends.
            for o in 3..5 {
                stage(&mut seg.borrow_mut(), o, &payload(o, 700, 0));
            }
            assert!(seg.borrow().flush_in_flight());
            assert_eq!(seg.borrow().staged_len(), 5);
            assert_eq!(seg.borrow().durable_len(), 0);
            let second = catch_unwind(AssertUnwindSafe(|| seg.borrow_mut().begin_flush()));
            assert!(second.is_err(), "two flushes in flight");

            let done = task.await.expect("first flush");
            assert_eq!(seg.borrow_mut().complete_flush(done), 3);
            assert!(
                seg.borrow().has_staged(),
                "records staged during the flush were lost"
            );
            assert_eq!(seg.borrow().staged_len(), 5);

            let job = seg.borrow_mut().begin_flush().expect("second job");
            assert_eq!(job.len_after(), 5);
            let done = job.run().await.expect("second flush");
            assert_eq!(seg.borrow_mut().complete_flush(done), 5);

            let seg = Rc::try_unwrap(seg).expect("only handle").into_inner();
            let got = read_range(&seg, 0, 5, 1 << 20).await;
            let sizes = [5000, 5000, 5000, 700, 700];
            check_payloads(&got, 0, &sizes);
        });
    }

    #[test]
    fn a_failed_flush_keeps_the_durable_prefix_and_stops_appends() {
        let dir = test_dir();
        let path = path_of(&dir);
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &path, header(3))
                .await
                .expect("create");
            for o in 0..4 {
                stage(&mut seg, o, &payload(o, 3000, 0));
            }
            assert_eq!(flush(&mut seg).await, 4);
            for o in 4..6 {
                stage(&mut seg, o, &payload(o, 3000, 0));
            }
            let mut job = seg.begin_flush().expect("job");
            job.break_for_test();
            let err = job.run().await.expect_err("broken flush");
            assert!(
                matches!(
                    err,
                    StorageError::Io {
                        op: "preallocate",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .contains(&seg.data_path().display().to_string()),
                "{err}"
            );

            assert!(seg.failure().is_some());
            assert_eq!(seg.durable_len(), 4);
            assert_eq!(seg.staged_len(), 4);
            assert!(!seg.has_staged());
            assert!(!seg.flush_in_flight());
            // Appends are ignored and no flush begins.
            stage(&mut seg, 4, &payload(4, 10, 0));
            assert_eq!(seg.staged_len(), 4);
            assert!(seg.begin_flush().is_none());
            // The durable prefix stays readable, control writes still work.
            let got = read_range(&seg, 0, 4, 1 << 20).await;
            check_payloads(&got, 0, &[3000; 4]);
            let fenced = CtlState {
                fenced_epoch: 9,
                ..CtlState::default()
            };
            write_ctl(&mut seg, fenced).await;
            assert_eq!(seg.ctl(), fenced);

            // A job dropped before it ran fails its segment too.
            let mut other = SegmentFile::create(&GlommioDisk, &path, header(4))
                .await
                .expect("create");
            stage(&mut other, 0, b"x");
            drop(other.begin_flush().expect("job"));
            assert!(other.failure().is_some());
            assert_eq!(other.staged_len(), 0);
            assert!(other.begin_flush().is_none());
        });
    }

    #[test]
    fn preallocation_starts_small_and_doubles() {
        let dir = test_dir();
        let path = path_of(&dir);
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &path, header(5))
                .await
                .expect("create");
            let size = |seg: &SegmentFile<GlommioDisk>| {
                std::fs::metadata(seg.data_path()).expect("stat").len()
            };
            assert_eq!(size(&seg), PREALLOC_FIRST_BYTES, "a new segment is small");
            let big = ENTRY_BYTES_MAX as usize;
            let entries = 20u64;
            for o in 0..entries {
                stage(&mut seg, o, &payload(o, big, 0));
                if o % 4 == 3 {
                    flush(&mut seg).await;
                }
            }
            assert_eq!(seg.durable_len(), entries);
            let end = seg.last_position();
            assert!(end > 4 * PREALLOC_FIRST_BYTES);
            // Grown in steps that double: never more than twice the data.
            assert!(
                size(&seg) >= end && size(&seg) <= 2 * end,
                "{} for {end}",
                size(&seg)
            );
            let got = read_range(&seg, entries - 3, entries, 1).await;
            assert_eq!(got.len(), 3);
            for (o, p) in got {
                assert_eq!(p, payload(o, big, 0));
            }
        });
    }

    #[test]
    fn a_seal_cuts_what_the_flush_in_flight_counts() {
        let dir = test_dir();
        let path = path_of(&dir);
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &path, header(6))
                .await
                .expect("create");
            for o in 0..10 {
                stage(&mut seg, o, &payload(o, 100, 0));
            }
            let job = seg.begin_flush().expect("job");
            let sealed = CtlState {
                fenced_epoch: 4,
                sealed_len: Some(4),
                watermark: 4,
            };
            write_ctl(&mut seg, sealed).await;
            seg.seal_truncate(4);
            assert_eq!(seg.staged_len(), 4);
            let done = job.run().await.expect("flush");
            assert_eq!(seg.complete_flush(done), 4);
            assert_eq!(seg.durable_len(), 4);
            assert!(seg.begin_flush().is_none());
            let got = read_range(&seg, 0, 4, 1 << 20).await;
            check_payloads(&got, 0, &[100; 4]);
            let staged = catch_unwind(AssertUnwindSafe(|| stage(&mut seg, 4, b"late")));
            assert!(staged.is_err(), "staged into a sealed segment");
        });
    }
}
