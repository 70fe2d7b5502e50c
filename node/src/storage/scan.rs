//! The scan of a data file at recovery: find every valid record, stop at
//! the first one that is not.
//!
//! The file is read in [`SCAN_CHUNK_BYTES`] direct reads into a sliding
//! window; a record that straddles two chunks, or is larger than a chunk,
//! makes the window read on until the record is whole (at most
//! `ENTRY_BYTES_MAX` plus a header, which `parse_record` checks before
//! asking for more). The scan stops at:
//! - zeros where a record header would start: the clean end of the data
//!   (preallocated space reads as zeros);
//! - the seal recorded in the control file: entries past it do not exist;
//! - a record whose magic, crcs or offset are wrong, or that runs past the
//!   end of the file: a write torn by a crash (or a damaged disk).

use std::path::Path;

use trilog_wire::limits::ENTRY_BYTES_MAX;
use trilog_wire::record::{parse_record, Parsed, RECORD_HEADER_BYTES, RECORD_MAGIC};
use trilog_wire::WireError;

use super::disk::DiskFile;
use super::error::io_error;
use super::{
    align_down, align_up, SegmentKey, StorageError, BLOCK_BYTES, SCAN_CHUNK_BYTES,
    SEGMENT_HEADER_BYTES,
};

/// Where and why the scan of a data file stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Zeros where the next record would start, or the sealed length
    /// reached: nothing was lost.
    CleanEnd,
    /// The record at `offset` is damaged (a torn write or a bad disk).
    Corrupt { offset: u64, reason: &'static str },
    /// The record at `offset` runs past the end of the file.
    Truncated { offset: u64 },
}

impl ScanStop {
    /// Whether the scan stopped at a record that is not valid.
    pub fn is_bad(&self) -> bool {
        !matches!(self, ScanStop::CleanEnd)
    }
}

/// What a scan found.
#[derive(Debug)]
pub(super) struct Scanned {
    /// File positions of the records found, and of the end of the last.
    pub(super) positions: Vec<u64>,
    /// The largest commit field among the records found (0 if none).
    pub(super) max_commit: u64,
    pub(super) stop: ScanStop,
}

/// Scans the records of `file` from the end of its header block, up to
/// `limit` entries if given.
pub(super) async fn scan_records<F: DiskFile>(
    file: &F,
    key: SegmentKey,
    path: &Path,
    file_size: u64,
    limit: Option<u64>,
) -> Result<Scanned, StorageError> {
    let mut window = Window {
        pos: SEGMENT_HEADER_BYTES,
        bytes: Vec::new(),
        eof: false,
    };
    let mut positions = vec![SEGMENT_HEADER_BYTES];
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut offset = 0u64;
    let mut max_commit = 0u64;
    let stop = loop {
        if limit.is_some_and(|limit| offset >= limit) {
            break ScanStop::CleanEnd;
        }
        window
            .fill(file, key, path, file_size, pos, RECORD_HEADER_BYTES)
            .await?;
        let mut step = Step::of(window.from(pos), offset);
        if let Step::Need(needed) = step {
            if !window.eof && window.from(pos).len() < needed {
                window.fill(file, key, path, file_size, pos, needed).await?;
                step = Step::of(window.from(pos), offset);
            }
        }
        match step {
            Step::Record { bytes, commit } => {
                pos += bytes;
                offset += 1;
                positions.push(pos);
                max_commit = max_commit.max(commit);
            }
            Step::End => break ScanStop::CleanEnd,
            Step::Need(_) => break ScanStop::Truncated { offset },
            Step::Bad(reason) => break ScanStop::Corrupt { offset, reason },
        }
    };
    match &stop {
        ScanStop::CleanEnd => {}
        ScanStop::Corrupt { reason, .. } => {
            tracing::warn!(
                "{key}: {}: recovery stops at offset {offset}, file position {pos}: {reason}",
                path.display()
            );
        }
        ScanStop::Truncated { .. } => {
            tracing::warn!(
                "{key}: {}: recovery stops at offset {offset}, file position {pos}: record runs past the end of the file",
                path.display()
            );
        }
    }
    Ok(Scanned {
        positions,
        max_commit,
        stop,
    })
}

/// The valid records with an offset above `after_offset` anywhere in the
/// file past position `start` (the position of a bad record): how many,
/// and the largest commit field among them. Looks for the record magic at
/// every byte: after a bad record nothing says where the next one starts.
pub(super) async fn records_after<F: DiskFile>(
    file: &F,
    key: SegmentKey,
    path: &Path,
    file_size: u64,
    start: u64,
    after_offset: u64,
) -> Result<After, StorageError> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let first = start + 1;
    let mut window = Window {
        pos: align_down(first),
        bytes: Vec::new(),
        eof: false,
    };
    let lead = (first - window.pos) as usize;
    window
        .fill(
            file,
            key,
            path,
            file_size,
            window.pos,
            lead + RECORD_HEADER_BYTES,
        )
        .await?;
    let mut at = first.min(window.end());
    let mut found = After::default();
    loop {
        window
            .fill(file, key, path, file_size, at, RECORD_HEADER_BYTES)
            .await?;
        let bytes = window.from(at);
        if bytes.len() < RECORD_HEADER_BYTES {
            return Ok(found);
        }
        let candidates = bytes.len() - RECORD_HEADER_BYTES + 1;
        let Some(i) = bytes
            .windows(magic.len())
            .take(candidates)
            .position(|w| w == magic)
        else {
            at += candidates as u64;
            continue;
        };
        at += i as u64;
        let mut offset_bytes = [0u8; 8];
        offset_bytes.copy_from_slice(&window.from(at)[8..16]);
        let offset = u64::from_le_bytes(offset_bytes);
        let mut step = 1;
        if offset > after_offset {
            let need = RECORD_HEADER_BYTES + ENTRY_BYTES_MAX as usize;
            window.fill(file, key, path, file_size, at, need).await?;
            if let Ok(Parsed::Record { header, .. }) = parse_record(window.from(at), offset) {
                found.records += 1;
                found.max_commit = found.max_commit.max(header.commit);
                step = header.encoded_len() as u64;
            }
        }
        at += step;
    }
}

/// What [`records_after`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct After {
    pub(super) records: u64,
    pub(super) max_commit: u64,
}

/// What lies at one position, without borrowing the window.
enum Step {
    Record {
        bytes: u64,
        commit: u64,
    },
    End,
    /// A record that needs this many bytes from its start.
    Need(usize),
    Bad(&'static str),
}

impl Step {
    fn of(bytes: &[u8], offset: u64) -> Step {
        match parse_record(bytes, offset) {
            Ok(Parsed::Record { header, .. }) => Step::Record {
                bytes: header.encoded_len() as u64,
                commit: header.commit,
            },
            Ok(Parsed::End) => Step::End,
            Err(WireError::Truncated { needed, .. }) => Step::Need(needed),
            Err(WireError::BadRecord { reason, .. }) => Step::Bad(reason),
            Err(_) => Step::Bad("unexpected record error"),
        }
    }
}

/// The bytes of the file from `pos` on, as far as read so far.
struct Window {
    /// File position of `bytes[0]`; block-aligned.
    pos: u64,
    bytes: Vec<u8>,
    /// The last read reached the end of the file.
    eof: bool,
}

impl Window {
    fn end(&self) -> u64 {
        self.pos + self.bytes.len() as u64
    }

    fn from(&self, at: u64) -> &[u8] {
        &self.bytes[(at - self.pos) as usize..]
    }

    /// Reads until the window holds `need` bytes from `at`, or the end of
    /// the file. Forgets the whole blocks before `at`.
    async fn fill<F: DiskFile>(
        &mut self,
        file: &F,
        key: SegmentKey,
        path: &Path,
        file_size: u64,
        at: u64,
        need: usize,
    ) -> Result<(), StorageError> {
        assert!(
            at >= self.pos && at <= self.end(),
            "scan went backwards or skipped"
        );
        let keep_from = align_down(at);
        if keep_from > self.pos {
            self.bytes.drain(..(keep_from - self.pos) as usize);
            self.pos = keep_from;
        }
        let want_end = at + need as u64;
        while !self.eof && self.end() < want_end {
            let read_pos = self.end();
            assert_eq!(
                read_pos % BLOCK_BYTES,
                0,
                "scan reads are whole blocks until the end"
            );
            if read_pos >= file_size {
                self.eof = true;
                break;
            }
            let len = SCAN_CHUNK_BYTES
                .max(align_up(want_end - read_pos))
                .min(align_up(file_size - read_pos));
            let read = file
                .read_at_aligned(read_pos, len as usize)
                .await
                .map_err(|e| io_error(key, path, "scan read", e))?;
            self.bytes.extend_from_slice(&read);
            if (read.len() as u64) < len {
                self.eof = true;
            }
        }
        Ok(())
    }
}
