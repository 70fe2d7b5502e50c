//! Opening, reading and syncing the files of a segment on direct I/O.
//!
//! These few calls exist once so that every file is opened the same way
//! (read and write, `O_DIRECT`, checked alignment, glommio's polled-I/O
//! probe settled first for the file's device, see [`super::probe`]) and
//! every failure is reported with the segment and the file it concerns. `DmaFile::create`
//! is not used: it opens write-only, and every read on such a file fails
//! with EBADF.

use std::path::Path;
use std::rc::Rc;

use glommio::io::{Directory, DmaFile, OpenOptions, ReadResult};

use super::error::{file_error, os_error};
use super::probe::ensure_probed;
use super::{SegmentKey, StorageError, BLOCK_BYTES};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    /// The file must exist.
    Existing,
    /// Create the file, or empty it if it exists.
    CreateEmpty,
}

/// Opens `path` for direct reads and writes.
pub(super) async fn open_direct(
    key: SegmentKey,
    path: &Path,
    how: Open,
) -> Result<DmaFile, StorageError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    ensure_probed(dir).await?;
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if how == Open::CreateEmpty {
        options.create(true).truncate(true);
    }
    let file = options
        .dma_open(path)
        .await
        .map_err(|e| file_error(key, path, "open", e))?;
    let alignment = file.alignment();
    if alignment == 0 || !BLOCK_BYTES.is_multiple_of(alignment) {
        // Closing is best effort: the error that matters is the alignment.
        let _ = file.close().await;
        return Err(StorageError::UnsupportedAlignment {
            segment: key,
            file: path.to_path_buf(),
            alignment,
        });
    }
    Ok(file)
}

/// Reads exactly `len` bytes at the aligned `pos`; fewer is an error.
pub(super) async fn read_exact_aligned(
    file: &DmaFile,
    key: SegmentKey,
    path: &Path,
    pos: u64,
    len: usize,
) -> Result<ReadResult, StorageError> {
    assert!(
        pos.is_multiple_of(BLOCK_BYTES) && (len as u64).is_multiple_of(BLOCK_BYTES),
        "unaligned read {pos}+{len}"
    );
    let read = file
        .read_at_aligned(pos, len)
        .await
        .map_err(|e| file_error(key, path, "read", e))?;
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

/// Makes the directory entries of `dir` durable (after a create, rename or
/// unlink in it).
pub(super) async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let fail = |op, e| StorageError::Dir {
        dir: dir.to_path_buf(),
        op,
        source: os_error(e),
    };
    let handle = Directory::open(dir).await.map_err(|e| fail("open", e))?;
    let synced = handle.sync().await.map_err(|e| fail("fsync", e));
    let closed = handle.close().await.map_err(|e| fail("close", e));
    synced.and(closed)
}

/// Closes a file shared by jobs: closes it now if this is the last handle,
/// otherwise the last job to drop its handle closes it.
pub(super) async fn close_shared(
    key: SegmentKey,
    path: &Path,
    file: Rc<DmaFile>,
) -> Result<(), StorageError> {
    DmaFile::close_rc(file)
        .await
        .map(|_| ())
        .map_err(|e| file_error(key, path, "close", e))
}
