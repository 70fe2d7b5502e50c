//! [`GlommioDisk`]: the [`Disk`] of the node, on glommio (io_uring, real
//! `O_DIRECT`).
//!
//! Two glommio traps are handled here, once, so that no caller can forget
//! them:
//! - **The polled-I/O probe** ([`super::probe`]): every [`Disk::open`]
//!   settles it first for the file's device on the calling executor thread.
//! - **Lost OS error codes**: converting a `GlommioError` into an
//!   `io::Error` with `From` keeps only the message, so ENOSPC would no
//!   longer be recognisable; [`os_error`] takes the `io::Error` out of the
//!   variant instead.
//!
//! `DmaFile::create` is not used: it opens write-only, and every read on
//! such a file fails with EBADF. Listing a directory, checking that a path
//! exists and creating a directory are blocking std calls: storage makes
//! them only while recovering or creating a segment, never per append.

use std::ffi::OsString;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::rc::Rc;

use glommio::io::{Directory, DmaBuffer, DmaFile, OpenOptions, ReadResult};
use glommio::GlommioError;

use super::disk::{Disk, DiskBuffer, DiskFile, OpenMode};
use super::probe::ensure_probed;
use super::StorageError;

/// The real disk, through glommio. A unit value: the state it keeps (which
/// devices this thread has probed) is per thread, as glommio's is.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioDisk;

/// A file of [`GlommioDisk`].
#[derive(Debug)]
pub struct GlommioFile {
    file: DmaFile,
}

/// A write buffer of [`GlommioDisk`].
#[derive(Debug)]
pub struct GlommioBuffer(DmaBuffer);

/// The `io::Error` inside a glommio error, with its OS error code kept.
pub(crate) fn os_error(err: GlommioError<()>) -> io::Error {
    match err {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// A failed probe as an `io::Error`: a failing file-system call keeps its
/// code (ENOSPC while writing the probe file stays ENOSPC).
fn probe_error(err: StorageError) -> io::Error {
    match err {
        StorageError::Dir { source, .. } if source.raw_os_error().is_some() => source,
        other => io::Error::other(other),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

impl Disk for GlommioDisk {
    type File = GlommioFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<GlommioFile> {
        ensure_probed(parent_dir(path)).await.map_err(probe_error)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if mode == OpenMode::CreateEmpty {
            options.create(true).truncate(true);
        }
        let file = options.dma_open(path).await.map_err(os_error)?;
        Ok(GlommioFile { file })
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(os_error)
    }

    async fn unlink(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(path).await.map_err(os_error)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let handle = Directory::open(dir).await.map_err(os_error)?;
        let synced = handle.sync().await.map_err(os_error);
        let closed = handle.close().await.map_err(os_error);
        synced.and(closed)
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    async fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        std::fs::exists(path)
    }
}

impl DiskFile for GlommioFile {
    type Buffer = GlommioBuffer;
    type ReadBuf = ReadResult;

    fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    fn alloc_buffer(&self, len: usize) -> GlommioBuffer {
        GlommioBuffer(self.file.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: GlommioBuffer, pos: u64) -> io::Result<usize> {
        self.file.write_at(buf.0, pos).await.map_err(os_error)
    }

    async fn read_at_aligned(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        self.file.read_at_aligned(pos, len).await.map_err(os_error)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(os_error)
    }

    async fn pre_allocate(&self, size: u64) -> io::Result<()> {
        self.file.pre_allocate(size, false).await.map_err(os_error)
    }

    async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()> {
        self.file.deallocate(pos, len).await.map_err(os_error)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(os_error)
    }

    async fn close(self: Rc<Self>) -> io::Result<()> {
        match Rc::try_unwrap(self) {
            Ok(last) => last.file.close().await.map_err(os_error),
            // Another handle (a job still running) closes it when dropped.
            Err(_shared) => Ok(()),
        }
    }
}

impl Deref for GlommioBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl DerefMut for GlommioBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

impl DiskBuffer for GlommioBuffer {
    fn trim_to(&mut self, len: usize) {
        assert!(len <= self.0.len(), "trim past the buffer");
        self.0.trim_to_size(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::error::io_error;
    use crate::storage::test_support::{run_local, test_dir};
    use crate::storage::SegmentKey;

    #[test]
    fn enospc_survives_the_glommio_wrapper() {
        let key = SegmentKey {
            log_id: 1,
            segment: 2,
        };
        let enhanced: GlommioError<()> = GlommioError::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::ENOSPC),
            op: "Writing",
            path: None,
            fd: Some(3),
        };
        // The std conversion drops the code: the reason for `os_error`.
        let lossy: io::Error = GlommioError::<()>::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::ENOSPC),
            op: "Writing",
            path: None,
            fd: None,
        }
        .into();
        assert_eq!(lossy.raw_os_error(), None);

        let path = Path::new("/x.seg");
        let err = io_error(key, path, "write", os_error(enhanced));
        assert!(err.is_no_space(), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/x.seg") && msg.contains("segment 2"), "{msg}");

        let plain: GlommioError<()> =
            GlommioError::IoError(io::Error::from_raw_os_error(libc::EIO));
        let err = io_error(key, path, "write", os_error(plain));
        assert!(!err.is_no_space());
        assert!(
            matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(libc::EIO))
        );
    }

    #[test]
    fn directory_calls() {
        let dir = test_dir();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let disk = GlommioDisk;
            let sub = path.join("a/b");
            assert!(!disk.exists(&sub).await.expect("exists"));
            disk.create_dir(&sub).await.expect("create");
            disk.create_dir(&sub).await.expect("create again");
            assert!(disk.exists(&sub).await.expect("exists"));

            let file = disk
                .open(&sub.join("f"), OpenMode::CreateEmpty)
                .await
                .expect("open");
            assert_eq!(file.size().await.expect("size"), 0);
            file.pre_allocate(8192).await.expect("preallocate");
            assert_eq!(file.size().await.expect("size"), 8192);
            Rc::new(file).close().await.expect("close");
            disk.rename(&sub.join("f"), &sub.join("g"))
                .await
                .expect("rename");
            disk.sync_dir(&sub).await.expect("sync");
            assert_eq!(disk.list_dir(&sub).await.expect("list"), vec!["g"]);
            disk.unlink(&sub.join("g")).await.expect("unlink");
            assert!(disk.list_dir(&sub).await.expect("list").is_empty());
            let missing = disk.open(&sub.join("g"), OpenMode::Existing).await;
            assert_eq!(
                missing.map(|_| ()).map_err(|e| e.raw_os_error()),
                Err(Some(libc::ENOENT))
            );
        });
    }
}
