//! One segment replica on disk: its data file, its control file and the
//! in-memory state that goes with them.
//!
//! [`SegmentFile`] is held by the node as `Rc<RefCell<SegmentFile<D>>>` on
//! one executor thread, so no method holds `&mut self` across an `.await`:
//! each I/O is begun, run and completed in three steps (see the module doc
//! of [`super`]). The flush steps live in [`super::flush`], reads in
//! [`super::read`], recovery in [`super::recover`].
//!
//! In memory, per segment:
//! - the **index**: a `Vec<u64>` of the file position of every record, plus
//!   one for the end of the last one (8 bytes per entry; a segment of ten
//!   million entries costs 80 MB, which a node serving segments of that
//!   size can afford, and sealing a segment keeps it only while it is
//!   served);
//! - the **partial tail block**: the bytes of the last, partly filled
//!   block, which the next flush rewrites with new records after them;
//! - the **staging buffer** of records not yet given to a flush
//!   ([`super::staging`]).
//!
//! Lengths are counted in entries (offsets in the segment), positions in
//! bytes of the data file.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use trilog_wire::limits::ENTRY_BYTES_MAX;
use trilog_wire::record::{RecordHeader, RECORD_HEADER_BYTES};

use super::ctl::{CtlFile, CtlState, CtlWrite};
use super::direct_file::{close_shared, open_direct, sync_dir, write_all_at};
use super::disk::{Disk, DiskFile, FileOf, OpenMode};
use super::error::io_error;
use super::flush::InFlight;
use super::remove::remove_segment_files;
use super::staging::Staging;
use super::{
    align_down, SegmentHeader, SegmentKey, StorageError, BLOCK_BYTES, PREALLOC_FIRST_BYTES,
    SEGMENT_HEADER_BYTES,
};

/// One segment replica: see the module doc.
#[derive(Debug)]
pub struct SegmentFile<D: Disk> {
    pub(super) disk: D,
    pub(super) header: SegmentHeader,
    pub(super) dir: PathBuf,
    pub(super) data_path: PathBuf,
    pub(super) data: Rc<FileOf<D>>,
    pub(super) ctl: CtlFile<D>,
    /// `positions[i]` is the file position of record `i` for every staged
    /// offset `i`, and `positions[staged_len]` the position just past the
    /// last staged record. Never empty; `positions[0]` is the first byte
    /// after the header block.
    pub(super) positions: Vec<u64>,
    /// Entries on disk and synced: `[0, durable_len)`.
    pub(super) durable_len: u64,
    /// The bytes of the partial block at the end of the data given to
    /// flushes so far (durable or in flight); shorter than a block.
    pub(super) tail: Vec<u8>,
    /// Records staged since the last flush began.
    pub(super) staging: Option<Staging<D>>,
    /// The flush in flight, if any (at most one).
    pub(super) in_flight: Option<InFlight>,
    /// The file's size as preallocated, including by the flush in flight.
    pub(super) allocated_bytes: u64,
    /// Set, by the flush job itself, when a flush failed: the segment
    /// takes no more entries (see [`super::flush`]).
    pub(super) failed: Rc<RefCell<Option<String>>>,
}

impl<D: Disk> SegmentFile<D> {
    /// Creates the files of a new segment replica in `dir` on `disk` and makes them
    /// durable: the control file (empty: the default state) and, at the
    /// same time, the data file with its header block, preallocated, under
    /// a temporary name, each synced; then the directory synced (the
    /// control file's name is durable); then the data file renamed to its
    /// final name and the directory synced again. A crash at any point
    /// leaves either no `.seg` file or a complete one with its `.ctl`.
    ///
    /// Refuses with [`StorageError::AlreadyExists`] if the segment's data
    /// file exists. Any other failure (a full disk, most often) removes
    /// the files this call made before it returns.
    pub async fn create(
        disk: &D,
        dir: &Path,
        header: SegmentHeader,
    ) -> Result<SegmentFile<D>, StorageError> {
        let key = header.key();
        let data_path = key.data_path(dir);
        let exists = disk
            .exists(&data_path)
            .await
            .map_err(|e| io_error(key, &data_path, "stat", e))?;
        if exists {
            return Err(StorageError::AlreadyExists {
                segment: key,
                file: data_path,
            });
        }
        match Self::create_files(disk, dir, header).await {
            Ok(segment) => Ok(segment),
            Err(e) => {
                // No half-made files (a full disk fails creations often):
                // the replica was never announced, so whatever this attempt
                // made goes, durably; a crash before that leaves what
                // recovery already skips (a `.ctl` without its `.seg`, a
                // `.seg.creating`) and a later delete removes.
                match remove_segment_files(disk, dir, key).await {
                    Ok(n) => {
                        tracing::info!("{key}: creation failed; removed the {n} files it made")
                    }
                    Err(cleanup) => tracing::warn!(
                        "{key}: creation failed, and so did removing what it made: {cleanup}"
                    ),
                }
                Err(e)
            }
        }
    }

    /// The files of [`Self::create`], made and synced in their order. The
    /// control file and the data file under its temporary name are made
    /// at the same time (each with its own sync): only the names' order
    /// matters, and the data file's name comes last. A new segment is
    /// waited for by the first append sent to it (after a switch, while
    /// the log's appends wait), so one sync fewer in a row is time off
    /// every switch.
    async fn create_files(
        disk: &D,
        dir: &Path,
        header: SegmentHeader,
    ) -> Result<SegmentFile<D>, StorageError> {
        let key = header.key();
        let data_path = key.data_path(dir);
        let creating = key.creating_path(dir);
        let (ctl, data) = futures_lite::future::zip(
            CtlFile::create(disk, key, &key.ctl_path(dir)),
            Self::create_data(disk, &creating, header),
        )
        .await;
        let (ctl, data) = (ctl?, data?);
        // The control file's name is durable before the data file's can
        // be: a `.seg` without its `.ctl` is damage, not a crash.
        sync_dir(disk, dir).await?;
        disk.rename(&creating, &data_path)
            .await
            .map_err(|e| io_error(key, &data_path, "rename into place", e))?;
        sync_dir(disk, dir).await?;

        let segment = SegmentFile {
            disk: disk.clone(),
            header,
            dir: dir.to_path_buf(),
            data_path,
            data: Rc::new(data),
            ctl,
            positions: vec![SEGMENT_HEADER_BYTES],
            durable_len: 0,
            tail: Vec::with_capacity(BLOCK_BYTES as usize),
            staging: None,
            in_flight: None,
            allocated_bytes: PREALLOC_FIRST_BYTES,
            failed: Rc::default(),
        };
        segment.check_invariants();
        Ok(segment)
    }

    /// The data file at `creating`: preallocated, its header written and
    /// synced.
    async fn create_data(
        disk: &D,
        creating: &Path,
        header: SegmentHeader,
    ) -> Result<FileOf<D>, StorageError> {
        let key = header.key();
        let data = open_direct(disk, key, creating, OpenMode::CreateEmpty).await?;
        data.pre_allocate(PREALLOC_FIRST_BYTES)
            .await
            .map_err(|e| io_error(key, creating, "preallocate", e))?;
        let mut block = data.alloc_buffer(SEGMENT_HEADER_BYTES as usize);
        header.encode(&mut block);
        write_all_at(&data, key, creating, "write header", block, 0).await?;
        data.fdatasync()
            .await
            .map_err(|e| io_error(key, creating, "fdatasync", e))?;
        Ok(data)
    }

    pub fn key(&self) -> SegmentKey {
        self.header.key()
    }

    pub fn header(&self) -> SegmentHeader {
        self.header
    }

    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Entries staged or durable: the offset the next entry must have.
    /// After a failed flush, the durable length: the staged entries are gone.
    pub fn staged_len(&self) -> u64 {
        if self.is_failed() {
            return self.durable_len;
        }
        self.positions.len() as u64 - 1
    }

    /// Entries on disk and synced: what may be acknowledged and read.
    pub fn durable_len(&self) -> u64 {
        self.durable_len
    }

    /// Whether records wait for a flush.
    pub fn has_staged(&self) -> bool {
        !self.is_failed() && self.staging.as_ref().is_some_and(Staging::has_records)
    }

    /// Record bytes staged and not yet given to a flush.
    pub fn staged_bytes(&self) -> u64 {
        if self.is_failed() {
            return 0;
        }
        self.staging.as_ref().map_or(0, Staging::staged_bytes)
    }

    /// Whether a flush is in flight (a new one may begin only when not).
    pub fn flush_in_flight(&self) -> bool {
        !self.is_failed() && self.in_flight.is_some()
    }

    /// Why the segment takes no more entries, if a flush failed.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    pub(super) fn is_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    /// Forgets the staged records and the flush in flight once a flush has
    /// failed. Every `&mut self` method calls it first.
    pub(super) fn absorb_failure(&mut self) {
        if self.is_failed() {
            self.in_flight = None;
            self.staging = None;
            self.positions.truncate(self.durable_len as usize + 1);
        }
    }

    /// Stages one entry at `offset`, which must be [`Self::staged_len`]. This
    /// is the one copy of the payload, into the aligned buffer of the next
    /// flush. The caller has checked `payload_crc` against the payload and
    /// that the segment is not sealed, or sealed past `offset` and healing
    /// (the replica refuses any other append to a sealed segment; staging
    /// one panics).
    ///
    /// After a failed flush ([`Self::failure`]) this does nothing: the
    /// entry is never flushed, so never acknowledged.
    ///
    /// The staged bytes are bounded by the node's flow control (bytes in
    /// flight per connection), not here.
    pub fn stage(&mut self, offset: u64, commit: u64, payload_crc: u32, payload: &[u8]) {
        self.absorb_failure();
        let key = self.key();
        if self.is_failed() {
            tracing::debug!("{key}: entry {offset} not staged: a flush failed");
            return;
        }
        // A sealed segment takes entries only below its seal: a heal of
        // entries it misses (see [`super::rewind`]).
        assert!(
            self.ctl.state().sealed_len.is_none_or(|s| offset < s),
            "{key}: entry staged into a sealed segment"
        );
        assert_eq!(
            offset,
            self.staged_len(),
            "{key}: entry staged out of order"
        );
        assert!(
            payload.len() <= ENTRY_BYTES_MAX as usize,
            "{key}: entry over the limit"
        );
        let record_bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
        let record = RecordHeader {
            payload_len: payload.len() as u32,
            offset,
            commit,
            payload_crc,
        };
        let end = self.last_position();
        let staging = self.staging.get_or_insert_with(|| {
            // Nothing staged: the new records continue the data given to
            // flushes so far, right after the partial tail block.
            let base = align_down(end);
            assert_eq!(end - base, self.tail.len() as u64, "tail block out of step");
            Staging::new(&*self.data, base, &self.tail, offset, record_bytes as usize)
        });
        let new_end = staging.push_record(&*self.data, &record, payload);
        assert_eq!(new_end, end + record_bytes);
        self.positions.push(new_end);
    }

    /// The last durable control state.
    pub fn ctl(&self) -> CtlState {
        self.ctl.state()
    }

    /// Whether a control write is in flight (a new one may begin only when
    /// not).
    pub fn ctl_write_in_flight(&self) -> bool {
        self.ctl.write_in_flight()
    }

    /// Begins the durable write of `state`. Panics if a control write is in
    /// flight: control writes of a segment are sequential.
    pub fn begin_ctl_write(&mut self, state: CtlState) -> CtlWrite<D> {
        self.ctl.begin_write(state)
    }

    /// Makes `state` the durable control state, after the [`CtlWrite`]
    /// that wrote it succeeded. Panics if that write is not the one begun
    /// last or did not succeed. (A write that failed needs no call: the
    /// durable state stays as it was, and a new write may be begun.)
    pub fn complete_ctl_write(&mut self, state: CtlState) {
        self.ctl.complete_write(state);
    }

    /// Drops, in memory, every entry at or past `len` (staged, indexed,
    /// durable), after a seal at `len` is durable in the control file;
    /// recovery applies the same seal from there. The bytes past `len` may
    /// stay on disk. A flush in flight may finish, but what it wrote past
    /// `len` is not counted.
    pub fn seal_truncate(&mut self, len: u64) {
        self.absorb_failure();
        let key = self.key();
        assert_eq!(
            self.ctl.state().sealed_len,
            Some(len),
            "{key}: seal_truncate({len}) without that seal durable in the control file"
        );
        if len < self.staged_len() {
            let cut = self.positions[len as usize];
            self.positions.truncate(len as usize + 1);
            if self
                .staging
                .as_ref()
                .is_some_and(|s| len <= s.first_offset())
            {
                self.staging = None;
            } else if let Some(staging) = &mut self.staging {
                staging.truncate_at(cut);
            }
        }
        self.durable_len = self.durable_len.min(len);
        self.check_invariants();
    }

    /// Deletes both files. Unlinking gives the space back at once; jobs
    /// still running keep their file handles until they finish.
    pub async fn remove(self) -> Result<(), StorageError> {
        let key = self.key();
        let ctl_path = self.ctl.path().to_path_buf();
        // The data file first: without it recovery ignores the segment.
        self.disk
            .unlink(&self.data_path)
            .await
            .map_err(|e| io_error(key, &self.data_path, "unlink", e))?;
        self.disk
            .unlink(&ctl_path)
            .await
            .map_err(|e| io_error(key, &ctl_path, "unlink", e))?;
        sync_dir(&self.disk, &self.dir).await?;
        close_shared(key, &self.data_path, self.data).await?;
        close_shared(key, &ctl_path, self.ctl.into_file()).await
    }

    /// Closes both files (what dropping does, but waiting for it).
    pub async fn close(self) -> Result<(), StorageError> {
        let key = self.key();
        let ctl_path = self.ctl.path().to_path_buf();
        close_shared(key, &self.data_path, self.data).await?;
        close_shared(key, &ctl_path, self.ctl.into_file()).await
    }

    /// The file position just past the last staged record.
    pub(super) fn last_position(&self) -> u64 {
        match self.positions.last() {
            Some(pos) => *pos,
            None => unreachable!("the index always holds the end position"),
        }
    }

    /// The invariants of the in-memory state that hold between any two
    /// calls.
    pub(super) fn check_invariants(&self) {
        let key = self.key();
        assert_eq!(
            self.positions.first(),
            Some(&SEGMENT_HEADER_BYTES),
            "{key}: index start"
        );
        assert!(
            self.durable_len <= self.staged_len(),
            "{key}: durable past staged"
        );
        assert!(
            (self.tail.len() as u64) < BLOCK_BYTES,
            "{key}: tail is a partial block"
        );
        assert!(
            self.allocated_bytes.is_multiple_of(BLOCK_BYTES),
            "{key}: allocation unaligned"
        );
        if let Some(staging) = &self.staging {
            assert_eq!(
                staging.end_pos(),
                self.last_position(),
                "{key}: staging and index disagree"
            );
        }
    }
}
