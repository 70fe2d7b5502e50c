//! Errors of the storage layer.
//!
//! Each variant carries what an operator needs to act on the log line
//! alone: the segment, the file, the operation. Running out of space is its
//! own variant ([`StorageError::NoSpace`]) because the node answers it
//! differently from a failing disk (it stops taking new segments; it does
//! not report the device as broken).
//!
//! glommio reports I/O failures as `GlommioError`; converting that into an
//! `io::Error` with `From` keeps only the message and loses
//! `raw_os_error()`, so [`os_error`] takes the `io::Error` out of the
//! variant instead, and ENOSPC stays recognisable.

use std::io;
use std::path::PathBuf;

use glommio::GlommioError;
use trilog_wire::WireError;

use super::ctl::CtlError;
use super::header::HeaderError;
use super::SegmentKey;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{segment}: no space left on the device: {op} {}", file.display())]
    NoSpace {
        segment: SegmentKey,
        file: PathBuf,
        op: &'static str,
    },
    #[error("{segment}: {op} {}: {source}", file.display())]
    Io {
        segment: SegmentKey,
        file: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("storage directory {}: {op}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("storage directory {}: direct reads do not work on this thread: {reason}", dir.display())]
    Probe { dir: PathBuf, reason: String },
    #[error("{segment}: short write to {} at {pos}: {written} of {expected} bytes", file.display())]
    ShortWrite {
        segment: SegmentKey,
        file: PathBuf,
        pos: u64,
        written: usize,
        expected: usize,
    },
    #[error("{segment}: short read of {} at {pos}: {read} of {expected} bytes", file.display())]
    ShortRead {
        segment: SegmentKey,
        file: PathBuf,
        pos: u64,
        read: usize,
        expected: usize,
    },
    #[error("{segment}: {}: {alignment}-byte direct I/O alignment is not supported", file.display())]
    UnsupportedAlignment {
        segment: SegmentKey,
        file: PathBuf,
        alignment: u64,
    },
    #[error("segment data file {}: bad header: {reason}", file.display())]
    BadHeader {
        file: PathBuf,
        #[source]
        reason: HeaderError,
    },
    #[error("{segment}: control file {}: {reason}", file.display())]
    BadCtl {
        segment: SegmentKey,
        file: PathBuf,
        #[source]
        reason: CtlError,
    },
    #[error("{segment}: control file {} is missing", file.display())]
    MissingCtl { segment: SegmentKey, file: PathBuf },
    #[error("{segment}: {} at file position {pos}: {source}", file.display())]
    CorruptRecord {
        segment: SegmentKey,
        file: PathBuf,
        pos: u64,
        #[source]
        source: WireError,
    },
    #[error("{segment}: {} already exists", file.display())]
    AlreadyExists { segment: SegmentKey, file: PathBuf },
}

impl StorageError {
    /// Whether the device ran out of space (the node may retry elsewhere).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }
}

/// The `io::Error` inside a glommio error, with its OS error code kept.
pub(crate) fn os_error(err: GlommioError<()>) -> io::Error {
    match err {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Whether an OS error means "the device or the quota is full".
pub(crate) fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A failed glommio operation on a file of `segment`, as a storage error.
pub(crate) fn file_error(
    segment: SegmentKey,
    file: &std::path::Path,
    op: &'static str,
    err: GlommioError<()>,
) -> StorageError {
    io_error(segment, file, op, os_error(err))
}

/// A failed std operation on a file of `segment`, as a storage error.
pub(crate) fn io_error(
    segment: SegmentKey,
    file: &std::path::Path,
    op: &'static str,
    source: io::Error,
) -> StorageError {
    if is_no_space(&source) {
        StorageError::NoSpace {
            segment,
            file: file.to_path_buf(),
            op,
        }
    } else {
        StorageError::Io {
            segment,
            file: file.to_path_buf(),
            op,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SegmentKey {
        SegmentKey {
            log_id: 1,
            segment: 2,
        }
    }

    #[test]
    fn enospc_survives_the_glommio_wrapper() {
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

        let err = file_error(key(), std::path::Path::new("/x.seg"), "write", enhanced);
        assert!(err.is_no_space(), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/x.seg") && msg.contains("segment 2"), "{msg}");

        let plain: GlommioError<()> =
            GlommioError::IoError(io::Error::from_raw_os_error(libc::EIO));
        let err = file_error(key(), std::path::Path::new("/x.seg"), "write", plain);
        assert!(!err.is_no_space());
        assert!(
            matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(libc::EIO))
        );
    }
}
