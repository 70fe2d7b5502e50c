//! Errors of the storage layer.
//!
//! Each variant carries what an operator needs to act on the log line
//! alone: the segment, the file, the operation. Running out of space is its
//! own variant ([`StorageError::NoSpace`]) because the node answers it
//! differently from a failing disk (it stops taking new segments; it does
//! not report the device as broken).
//!
//! The [`super::Disk`] reports failures as `io::Error`s that keep their OS
//! error code; [`io_error`] tells ENOSPC (and EDQUOT) from the rest by that
//! code.

use std::io;
use std::path::PathBuf;

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
    /// A durable record that does not check out: damage (see
    /// `storage/damage.rs`) from entry `offset` on.
    #[error("{segment}: {} at file position {pos} (entry {offset}): {source}", file.display())]
    CorruptRecord {
        segment: SegmentKey,
        file: PathBuf,
        pos: u64,
        offset: u64,
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

    /// What a remote client is told: the kind of failure and the
    /// operation, never a local path (the node's log has the whole error).
    pub fn remote_summary(&self) -> String {
        match self {
            StorageError::NoSpace { op, .. } => format!("{op}: no space left on the device"),
            StorageError::Io { op, source, .. } | StorageError::Dir { op, source, .. } => {
                format!("{op}: {}", source.kind())
            }
            StorageError::Probe { .. } => "direct I/O does not work here".into(),
            StorageError::ShortWrite { .. } => "short write".into(),
            StorageError::ShortRead { .. } => "short read".into(),
            StorageError::UnsupportedAlignment { .. } => "direct I/O alignment".into(),
            StorageError::BadHeader { .. } => "bad segment header".into(),
            StorageError::BadCtl { .. } | StorageError::MissingCtl { .. } => {
                "bad control file".into()
            }
            StorageError::CorruptRecord { offset, .. } => format!("damaged at entry {offset}"),
            StorageError::AlreadyExists { .. } => "segment file exists".into(),
        }
    }
}

/// Whether an OS error means "the device or the quota is full".
pub(crate) fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A failed disk operation on a file of `segment`, as a storage error.
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

    #[test]
    fn enospc_and_edquot_are_no_space() {
        let key = SegmentKey {
            log_id: 1,
            segment: 2,
        };
        let file = std::path::Path::new("/x.seg");
        for code in [libc::ENOSPC, libc::EDQUOT] {
            let err = io_error(key, file, "write", io::Error::from_raw_os_error(code));
            assert!(err.is_no_space(), "{err:?}");
        }
        let err = io_error(key, file, "write", io::Error::from_raw_os_error(libc::EIO));
        assert!(!err.is_no_space(), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/x.seg") && msg.contains("segment 2"), "{msg}");
    }

    #[test]
    fn what_a_remote_client_is_told_names_no_local_path() {
        let key = SegmentKey {
            log_id: 1,
            segment: 2,
        };
        let file = PathBuf::from("/var/lib/trilog/secret/x.seg");
        let errors = [
            io_error(key, &file, "write", io::Error::from_raw_os_error(libc::EIO)),
            io_error(
                key,
                &file,
                "write",
                io::Error::from_raw_os_error(libc::ENOSPC),
            ),
            StorageError::Dir {
                dir: file.clone(),
                op: "sync",
                source: io::Error::from_raw_os_error(libc::EIO),
            },
            StorageError::MissingCtl {
                segment: key,
                file: file.clone(),
            },
            StorageError::AlreadyExists {
                segment: key,
                file: file.clone(),
            },
        ];
        for e in errors {
            assert!(e.to_string().contains("/var/lib"), "the log line keeps it");
            let told = e.remote_summary();
            assert!(!told.contains('/'), "{told}");
        }
    }
}
