//! Opening, reading and syncing the files of a segment on direct I/O.
//!
//! These few calls exist once so that every file is opened the same way
//! (read and write, direct I/O, checked alignment) and every failure is
//! reported with the segment and the file it concerns.

use std::path::Path;
use std::rc::Rc;

use super::disk::{Disk, DiskFile, FileOf, OpenMode};
use super::error::io_error;
use super::{SegmentKey, StorageError, BLOCK_BYTES};

/// Opens `path` for direct reads and writes.
pub(super) async fn open_direct<D: Disk>(
    disk: &D,
    key: SegmentKey,
    path: &Path,
    mode: OpenMode,
) -> Result<FileOf<D>, StorageError> {
    let file = disk
        .open(path, mode)
        .await
        .map_err(|e| io_error(key, path, "open", e))?;
    let alignment = file.alignment();
    if alignment == 0 || !BLOCK_BYTES.is_multiple_of(alignment) {
        // Closing is best effort: the error that matters is the alignment.
        let _ = Rc::new(file).close().await;
        return Err(StorageError::UnsupportedAlignment {
            segment: key,
            file: path.to_path_buf(),
            alignment,
        });
    }
    Ok(file)
}

/// Reads exactly `len` bytes at the aligned `pos`; fewer is an error.
pub(super) async fn read_exact_aligned<F: DiskFile>(
    file: &F,
    key: SegmentKey,
    path: &Path,
    pos: u64,
    len: usize,
) -> Result<F::ReadBuf, StorageError> {
    assert!(
        pos.is_multiple_of(BLOCK_BYTES) && (len as u64).is_multiple_of(BLOCK_BYTES),
        "unaligned read {pos}+{len}"
    );
    let read = file
        .read_at_aligned(pos, len)
        .await
        .map_err(|e| io_error(key, path, "read", e))?;
    if read.len() < len {
        return Err(StorageError::ShortRead {
            segment: key,
            file: path.to_path_buf(),
            pos,
            read: read.len(),
            expected: len,
        });
    }
    Ok(read)
}

/// Writes the whole of `buf` at `pos`; a short write is an error.
pub(super) async fn write_all_at<F: DiskFile>(
    file: &F,
    key: SegmentKey,
    path: &Path,
    op: &'static str,
    buf: F::Buffer,
    pos: u64,
) -> Result<(), StorageError> {
    let expected = buf.len();
    let written = file
        .write_at(buf, pos)
        .await
        .map_err(|e| io_error(key, path, op, e))?;
    if written != expected {
        return Err(StorageError::ShortWrite {
            segment: key,
            file: path.to_path_buf(),
            pos,
            written,
            expected,
        });
    }
    Ok(())
}

/// Makes the directory entries of `dir` durable (after a create, rename or
/// unlink in it).
pub(super) async fn sync_dir<D: Disk>(disk: &D, dir: &Path) -> Result<(), StorageError> {
    disk.sync_dir(dir)
        .await
        .map_err(|source| StorageError::Dir {
            dir: dir.to_path_buf(),
            op: "fsync",
            source,
        })
}

/// Closes a file shared by jobs: closes it now if this is the last handle,
/// otherwise the last job to drop its handle closes it.
pub(super) async fn close_shared<F: DiskFile>(
    key: SegmentKey,
    path: &Path,
    file: Rc<F>,
) -> Result<(), StorageError> {
    file.close()
        .await
        .map_err(|e| io_error(key, path, "close", e))
}
