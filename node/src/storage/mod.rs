//! Storage: the segment replicas of one shard, in files on direct I/O.
//!
//! Why it looks the way it does:
//!
//! - **One data file and one control file per segment replica.** The data
//!   file (`<log_id:016x>-<segment:016x>.seg`) holds a 4 KiB header block
//!   ([`SegmentHeader`]) and then the records, packed with no padding, in
//!   the layout of [`trilog_wire::record`], so a read sends file bytes as
//!   they are. The control file (`.ctl`, [`CtlState`]) holds the little
//!   state that must survive a crash beside the data: the fence epoch, the
//!   seal and the watermark.
//!   Deleting a trimmed segment is an unlink of both: the space comes back
//!   at once, with no compaction.
//! - **Direct I/O in whole blocks.** Every write is a whole number of
//!   [`BLOCK_BYTES`] blocks at an aligned position. The partial block at the
//!   end of the data is kept in memory and rewritten, with the new records
//!   after it, by the next flush.
//! - **Group commit.** Records are staged in memory (the one copy out of the
//!   receive buffer, straight into an aligned buffer); one flush writes all
//!   of them in a single write and makes them durable with a single
//!   fdatasync, and only then may they be acknowledged.
//! - **No borrow across an `.await`.** A [`SegmentFile`] lives in an
//!   `Rc<RefCell<_>>` on a single-threaded executor, where many tasks use it
//!   at once. Every operation that does I/O is therefore split in
//!   three:
//!
//!   1. a synchronous *begin* step on `&mut SegmentFile` (or `&SegmentFile`
//!      for reads) that takes what the I/O needs — an `Rc` of the open file,
//!      an aligned buffer, positions — into a job value;
//!   2. an async `run(self)` on the job, which borrows nothing from the
//!      segment, so the `RefCell` is free while the disk works;
//!   3. a synchronous *complete* step on `&mut SegmentFile` that applies the
//!      outcome (success or failure) to the in-memory state.
//!
//!   | begin                            | run                                   | complete                            |
//!   |----------------------------------|---------------------------------------|-------------------------------------|
//!   | [`SegmentFile::begin_flush`]     | [`FlushJob::run`] -> [`FlushDone`]    | [`SegmentFile::complete_flush`]     |
//!   | [`SegmentFile::read_plan`]       | [`ReadPlan::run`] -> `(count, bytes)` | nothing to apply                    |
//!   | [`SegmentFile::begin_ctl_write`] | [`CtlWrite::run`] -> `()`             | [`SegmentFile::complete_ctl_write`] |
//!
//!   A job that fails (or is dropped unfinished) needs no complete step: it
//!   tells the segment itself, through a cell they share, so a caller
//!   cannot leave the segment believing a failed write is still running.
//!   Only one flush and one control write per segment may be in flight;
//!   beginning a second panics.
//!   Creating, recovering and removing a segment are plain async functions:
//!   nobody else holds the segment while they run.
//! - **Recovery** ([`recover_dir`]) scans each data file up to its first bad
//!   record, rebuilds the in-memory index and applies the seal recorded in
//!   the control file. A torn tail (the last group commit of an open
//!   segment, cut by a crash) is dropped: what lies past the recovered end
//!   is zeroed, so a later crash can never resurrect stale bytes. Damage
//!   (a bad record that was durable: see [`damage`](Finding)) is reported
//!   in [`Recovered::damage`] and left on disk untouched.
//!
//! **Generic over the disk.** Every type and function here is generic over
//! a [`Disk`] (`SegmentFile<D>`, `FlushJob<D>`, `recover_dir(disk, dir)`,
//! ...), and that trait is the only way this code reaches a file: no
//! glommio, no std::fs, no spawning, no timers. The node runs it on
//! [`GlommioDisk`] (io_uring, `O_DIRECT`); the deterministic simulator
//! (`trilog_sim::SimDisk`) runs the very same code on an in-memory disk
//! that loses what was not synced in a crash, tears unsynced writes sector
//! by sector, flips bits and fills up, and checks after each crash that
//! recovery gives back every acknowledged record and nothing else. The
//! format on disk does not depend on the disk.
//!
//! Every executor thread must settle glommio's polled-I/O probe for the
//! storage device before it opens any file there with direct I/O
//! ([`avoid_poll_probe_trap`]). [`GlommioDisk::open`](Disk::open) does it
//! first, once per thread and device, so storage cannot get it wrong;
//! other code opening direct files on that device must call it too.

mod ctl;
mod damage;
mod direct_file;
mod disk;
mod error;
mod flush;
mod glommio_disk;
mod header;
mod probe;
mod read;
mod recover;
mod remove;
mod rewind;
mod scan;
mod segment;
mod staging;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::path::{Path, PathBuf};

pub use ctl::{CtlError, CtlState, CtlWrite, CTL_FILE_BYTES, CTL_SLOT_BYTES};
pub use damage::{classify, Damage, Finding};
pub use disk::{BufferOf, Disk, DiskBuffer, DiskFile, FileOf, OpenMode};
pub use error::StorageError;
pub use flush::{FlushDone, FlushJob};
pub use glommio_disk::{GlommioBuffer, GlommioDisk, GlommioFile};
pub use header::{HeaderError, SegmentHeader, SEGMENT_MAGIC, SEGMENT_VERSION};
pub use probe::avoid_poll_probe_trap;
pub use read::{ReadPlan, ReadRecords};
pub use recover::{recover_dir, Recovered};
pub use remove::remove_segment_files;
pub use rewind::{Rewind, RewindPlan};
pub use scan::ScanStop;
pub use segment::SegmentFile;

use trilog_wire::limits::{ENTRY_BYTES_MAX, READ_BYTES_MAX};
use trilog_wire::record::RECORD_HEADER_BYTES;

/// The unit of every write and of every read position: one filesystem
/// block. Direct I/O needs at least the device's logical block size (512 or
/// 4096); 4096 covers both.
pub const BLOCK_BYTES: u64 = 4096;

/// The header block at the start of each data file; records start after it.
pub const SEGMENT_HEADER_BYTES: u64 = 4096;

/// Largest preallocation step of a data file. A flush that would write past
/// the allocated end first extends the allocation (see
/// [`next_allocation`]), so most flushes overwrite allocated blocks and
/// fdatasync does not have to allocate.
pub const PREALLOC_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// What a new data file preallocates: an empty or tiny segment costs at most
/// this much per replica (short logs used to take 16 MiB per segment).
pub const PREALLOC_FIRST_BYTES: u64 = 1024 * 1024;

/// Size of each read while recovery scans a data file.
pub const SCAN_CHUNK_BYTES: u64 = 1024 * 1024;

/// First capacity of a segment's staging buffer; it doubles as needed.
pub const STAGE_BYTES_INITIAL: u64 = 64 * 1024;

const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(PREALLOC_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(PREALLOC_CHUNK_BYTES >= SEGMENT_HEADER_BYTES + BLOCK_BYTES);
const _: () = assert!(PREALLOC_FIRST_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(PREALLOC_FIRST_BYTES >= SEGMENT_HEADER_BYTES + BLOCK_BYTES);
const _: () = assert!(PREALLOC_FIRST_BYTES <= PREALLOC_CHUNK_BYTES);
const _: () = assert!(SCAN_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(SCAN_CHUNK_BYTES >= RECORD_HEADER_BYTES as u64);
const _: () = assert!(STAGE_BYTES_INITIAL.is_multiple_of(BLOCK_BYTES));
// A read of the largest record alone, with its aligned cover, is bounded.
const _: () = assert!(ENTRY_BYTES_MAX as u64 + RECORD_HEADER_BYTES as u64 <= READ_BYTES_MAX as u64);
// Positions are u64 and buffers are indexed by usize: this code assumes a
// 64-bit target.
const _: () = assert!(usize::BITS >= 64);

/// The name of one segment replica on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentKey {
    pub log_id: u64,
    pub segment: u64,
}

/// Suffix of a data file.
pub const DATA_SUFFIX: &str = ".seg";
/// Suffix of a control file.
pub const CTL_SUFFIX: &str = ".ctl";
/// Suffix of a data file being created; renamed to [`DATA_SUFFIX`] once its
/// header is durable, so a `.seg` file always has a valid header.
pub const CREATING_SUFFIX: &str = ".seg.creating";

/// Hex digits of each number in a file name.
const NAME_HEX_DIGITS: usize = 16;

impl SegmentKey {
    fn stem(&self) -> String {
        format!("{:016x}-{:016x}", self.log_id, self.segment)
    }

    /// `<dir>/<log_id:016x>-<segment:016x>.seg`
    pub fn data_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}{DATA_SUFFIX}", self.stem()))
    }

    /// `<dir>/<log_id:016x>-<segment:016x>.ctl`
    pub fn ctl_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}{CTL_SUFFIX}", self.stem()))
    }

    /// Where [`SegmentFile::create`] builds the data file before renaming it.
    pub fn creating_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}{CREATING_SUFFIX}", self.stem()))
    }

    /// The key of a file name `<16 hex>-<16 hex><suffix>`; `None` for any
    /// other name (lower-case hex only, as written by this module).
    pub fn parse_file_name(name: &str, suffix: &str) -> Option<SegmentKey> {
        let stem = name.strip_suffix(suffix)?;
        let (log, seg) = stem.split_once('-')?;
        let hex = |s: &str| {
            let ok = s.len() == NAME_HEX_DIGITS
                && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if ok {
                u64::from_str_radix(s, 16).ok()
            } else {
                None
            }
        };
        Some(SegmentKey {
            log_id: hex(log)?,
            segment: hex(seg)?,
        })
    }
}

impl fmt::Display for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log {} segment {}", self.log_id, self.segment)
    }
}

/// The allocation a data file of `allocated` bytes grows to so that a write
/// ending at `write_end` fits: it doubles (a small segment stays small), by
/// at most [`PREALLOC_CHUNK_BYTES`] a step (a big one does not overshoot by
/// more than that), and always covers the write. Whole blocks.
pub const fn next_allocation(allocated: u64, write_end: u64) -> u64 {
    let step = if allocated < PREALLOC_CHUNK_BYTES {
        allocated
    } else {
        PREALLOC_CHUNK_BYTES
    };
    let step = if step < PREALLOC_FIRST_BYTES {
        PREALLOC_FIRST_BYTES
    } else {
        step
    };
    let grown = allocated + step;
    let wanted = if grown > write_end { grown } else { write_end };
    align_up(wanted)
}

/// `pos` rounded down to a block boundary.
pub(crate) const fn align_down(pos: u64) -> u64 {
    pos & !(BLOCK_BYTES - 1)
}

/// `pos` rounded up to a block boundary.
pub(crate) const fn align_up(pos: u64) -> u64 {
    align_down(pos + (BLOCK_BYTES - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_roundtrip() {
        let key = SegmentKey {
            log_id: 0xabc,
            segment: 7,
        };
        let dir = Path::new("/d");
        let data = key.data_path(dir);
        assert_eq!(data, Path::new("/d/0000000000000abc-0000000000000007.seg"));
        assert_eq!(
            key.ctl_path(dir),
            Path::new("/d/0000000000000abc-0000000000000007.ctl")
        );
        let name = data
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        assert_eq!(SegmentKey::parse_file_name(name, DATA_SUFFIX), Some(key));
        assert_eq!(SegmentKey::parse_file_name(name, CTL_SUFFIX), None);
        for bad in [
            "0000000000000abc-0000000000000007.seg.creating",
            "0000000000000ABC-0000000000000007.seg",
            "abc-7.seg",
            "0000000000000abc_0000000000000007.seg",
            "+000000000000abc-0000000000000007.seg",
            ".trilog-probe-1-2",
        ] {
            assert_eq!(SegmentKey::parse_file_name(bad, DATA_SUFFIX), None, "{bad}");
        }
    }

    #[test]
    fn allocation_doubles_up_to_a_chunk() {
        let mib = 1024 * 1024;
        assert_eq!(next_allocation(PREALLOC_FIRST_BYTES, mib + 1), 2 * mib);
        assert_eq!(next_allocation(2 * mib, 2 * mib + 1), 4 * mib);
        assert_eq!(next_allocation(16 * mib, 16 * mib + 1), 32 * mib);
        assert_eq!(next_allocation(32 * mib, 32 * mib + 1), 48 * mib);
        // A write past the doubled size is covered whole.
        assert_eq!(next_allocation(mib, 10 * mib + 5), 10 * mib + BLOCK_BYTES);
        // A recovered file that is smaller than the first step.
        assert_eq!(next_allocation(8192, 8193), 8192 + mib);
    }

    #[test]
    fn alignment() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(4097), 8192);
    }
}
