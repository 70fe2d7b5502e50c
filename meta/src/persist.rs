//! Durability of the metadata store's logs (leases are volatile, see
//! [`crate::state`]).
//!
//! The whole state (the revision and every log's version and record) is one
//! file, `meta.db`, rewritten on every change:
//!
//! ```text
//! offset size field
//!  0     8    magic        "TRLGMETA"
//!  8     4    version      1, u32 little-endian
//! 12     4    reserved     0
//! 16     8    payload_len  u64 LE; the file is exactly 32 + payload_len bytes
//! 24     4    crc32c       over bytes 0..24, then the payload
//! 28     4    reserved     0
//! 32     ..   payload      rkyv archive of `PersistedState`
//! ```
//!
//! A save writes `meta.db.tmp`, fsyncs it, renames it over `meta.db` and
//! fsyncs the directory, all before the change is answered: after a crash
//! the file is either the old state or the new one, never a mix, and a
//! leftover `meta.db.tmp` is ignored (the next save truncates it). On load a
//! missing file is an empty store; a file with a bad magic, version, length,
//! crc or content is refused with an error: the store never starts empty
//! over a corrupt file, which would silently forget every log.
//!
//! `meta.lock` is held with an exclusive `flock` while the file is open, so
//! two stores never write the same directory.
//!
//! The IO is blocking `std::fs`, called from the server's thread. That is
//! acceptable here: metadata changes are rare (a log's creation, a segment
//! switch, a takeover) and the file is small, and the embedded store serves
//! one host and tests. A production deployment uses etcd.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rkyv::rancor::BoxedError;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use trilog_wire::meta::LogMeta;

use crate::state::MetaState;

pub const META_FILE_NAME: &str = "meta.db";
pub const META_TEMP_FILE_NAME: &str = "meta.db.tmp";
pub const META_LOCK_FILE_NAME: &str = "meta.lock";
pub const META_FILE_MAGIC: [u8; 8] = *b"TRLGMETA";
/// 2: log records gained `deleting` and `deleted` (trim and delete).
pub const META_FILE_VERSION: u32 = 2;
pub const META_FILE_HEADER_BYTES: usize = 32;
// magic, version, reserved, payload_len, crc32c, reserved: see the table.
const _: () = assert!(META_FILE_HEADER_BYTES == 8 + 4 + 4 + 8 + 4 + 4);

/// Why the metadata file could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is corrupt ({reason}); refusing to start over it (restore it or move it away)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} is locked by another metadata store")]
    Locked { path: PathBuf },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedLog {
    version: u64,
    record: LogMeta,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedState {
    revision: u64,
    logs: Vec<PersistedLog>,
}

/// The open, locked metadata directory.
#[derive(Debug)]
pub struct MetaFile {
    dir: PathBuf,
    /// Held for the flock; closing it releases the lock.
    _lock: File,
}

impl MetaFile {
    /// Creates `dir` if needed, locks it and loads the state (empty if there
    /// is no `meta.db` yet).
    pub fn open(dir: &Path) -> Result<(MetaFile, MetaState), PersistError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let lock_path = dir.join(META_LOCK_FILE_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        lock_exclusive(&lock, &lock_path)?;
        let path = dir.join(META_FILE_NAME);
        let state = match fs::read(&path) {
            Ok(bytes) => decode_state(&bytes).map_err(|reason| PersistError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => MetaState::default(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let file = MetaFile {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        Ok((file, state))
    }

    /// The path of `meta.db`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(META_FILE_NAME)
    }

    /// Replaces the file with `state`, durably (see the module doc). When
    /// this returns an error the file holds either the old or the new state:
    /// the caller must treat the change as of unknown outcome.
    pub fn save(&self, state: &MetaState) -> Result<(), PersistError> {
        let bytes = encode_state(state);
        let tmp = self.dir.join(META_TEMP_FILE_NAME);
        let path = self.path();
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err("rename over", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &self.dir))?;
        Ok(())
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn lock_exclusive(file: &File, path: &Path) -> Result<(), PersistError> {
    // SAFETY: flock takes a descriptor that `file` keeps open for the whole
    // call, and no pointers.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(PersistError::Locked {
            path: path.to_path_buf(),
        })
    } else {
        Err(io_err("flock", path)(e))
    }
}

/// The whole file for `state`: header, then payload.
pub fn encode_state(state: &MetaState) -> Vec<u8> {
    let persisted = PersistedState {
        revision: state.revision(),
        logs: state
            .logs()
            .map(|v| PersistedLog {
                version: v.version,
                record: v.record.clone(),
            })
            .collect(),
    };
    // Serializing owned values into memory fails only on allocation failure
    // or pointer overflow: programmer errors at these sizes.
    let payload = match rkyv::to_bytes::<BoxedError>(&persisted) {
        Ok(p) => p,
        Err(e) => panic!("serializing the metadata state failed: {e}"),
    };
    let mut out = Vec::with_capacity(META_FILE_HEADER_BYTES + payload.len());
    out.extend_from_slice(&META_FILE_MAGIC);
    out.extend_from_slice(&META_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    debug_assert_eq!(out.len(), META_FILE_HEADER_BYTES);
    out.extend_from_slice(&payload);
    out
}

/// Reads a whole file back. Every field is checked; the error says which.
pub fn decode_state(bytes: &[u8]) -> Result<MetaState, String> {
    let Some(header) = bytes.get(..META_FILE_HEADER_BYTES) else {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    };
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if header[..8] != META_FILE_MAGIC {
        return Err(format!("bad magic {:02x?}", &header[..8]));
    }
    let version = u32_at(8);
    if version != META_FILE_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    if u32_at(12) != 0 || u32_at(28) != 0 {
        return Err("reserved header fields are not 0".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[16..24]);
    let payload_len = u64::from_le_bytes(len);
    let payload = &bytes[META_FILE_HEADER_BYTES..];
    if payload.len() as u64 != payload_len {
        return Err(format!(
            "header says {payload_len} payload bytes, file has {}",
            payload.len()
        ));
    }
    let computed = crc32c::crc32c_append(crc32c::crc32c(&header[..24]), payload);
    let carried = u32_at(24);
    if computed != carried {
        return Err(format!(
            "crc mismatch: computed {computed:#010x}, carried {carried:#010x}"
        ));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let persisted = rkyv::from_bytes::<PersistedState, BoxedError>(&aligned)
        .map_err(|e| format!("payload does not decode: {e}"))?;
    MetaState::from_logs(
        persisted.revision,
        persisted.logs.into_iter().map(|l| (l.version, l.record)),
    )
    .map_err(|e| format!("inconsistent content: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trilog_wire::meta::SegmentMeta;

    fn sample_state() -> MetaState {
        let mut s = MetaState::default();
        for log_id in [3u64, 1, 2] {
            let record = LogMeta {
                log_id,
                epoch: 2,
                trim_seq: 0,
                segments: vec![
                    SegmentMeta {
                        id: 0,
                        replicas: vec![1, 2, 3],
                        first_seq: 0,
                        epoch: 1,
                        sealed_len: Some(10),
                    },
                    SegmentMeta {
                        id: 1,
                        replicas: vec![4, 5, 6],
                        first_seq: 10,
                        epoch: 2,
                        sealed_len: None,
                    },
                ],
                deleting: Vec::new(),
                deleted: false,
            };
            s.cas(log_id, 0, record).expect("valid record");
        }
        s
    }

    #[test]
    fn roundtrip_keeps_versions_and_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, empty) = MetaFile::open(dir.path()).expect("opens");
        assert_eq!(empty, MetaState::default());
        let state = sample_state();
        file.save(&state).expect("saves");
        drop(file);
        let (_file, back) = MetaFile::open(dir.path()).expect("reopens");
        assert_eq!(back, state);
        assert_eq!(back.revision(), 3);
        assert_eq!(back.version(2), 3);
        assert_eq!(decode_state(&encode_state(&state)), Ok(state));
    }

    #[test]
    fn corrupt_files_are_refused() {
        let good = encode_state(&sample_state());
        let mut cases: Vec<(&str, Vec<u8>)> =
            vec![("empty", vec![]), ("header only", good[..32].to_vec())];
        for at in [0usize, 8, 12, 16, 24, 28, 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            cases.push(("flipped byte", bad));
        }
        let mut longer = good.clone();
        longer.push(0);
        cases.push(("trailing byte", longer));
        cases.push(("truncated", good[..good.len() - 1].to_vec()));
        for (what, bytes) in cases {
            assert!(decode_state(&bytes).is_err(), "{what} accepted");
            let dir = tempfile::tempdir().expect("tempdir");
            fs::write(dir.path().join(META_FILE_NAME), &bytes).expect("write");
            match MetaFile::open(dir.path()) {
                Err(PersistError::Corrupt { path, .. }) => assert!(path.ends_with(META_FILE_NAME)),
                other => panic!("{what}: opened over a corrupt file: {other:?}"),
            }
        }
    }

    #[test]
    fn valid_crc_over_inconsistent_content_is_refused() {
        // A file whose bytes are intact but whose content this store could
        // not have written (a version above the revision).
        let persisted = PersistedState {
            revision: 1,
            logs: vec![PersistedLog {
                version: 2,
                record: LogMeta {
                    log_id: 1,
                    epoch: 0,
                    trim_seq: 0,
                    segments: vec![],
                    deleting: Vec::new(),
                    deleted: false,
                },
            }],
        };
        let payload = rkyv::to_bytes::<BoxedError>(&persisted).expect("serializes");
        let mut bytes = encode_state(&MetaState::default())[..24].to_vec();
        bytes[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes), &payload);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        bytes.extend_from_slice(&payload);
        let err = decode_state(&bytes).expect_err("refused");
        assert!(err.contains("inconsistent"), "{err}");
    }

    #[test]
    fn leftover_temp_file_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = sample_state();
        {
            let (file, _) = MetaFile::open(dir.path()).expect("opens");
            file.save(&state).expect("saves");
        }
        // A crash between writing the temp file and the rename leaves it.
        fs::write(dir.path().join(META_TEMP_FILE_NAME), b"half a write").expect("write");
        let (file, back) = MetaFile::open(dir.path()).expect("reopens");
        assert_eq!(back, state);
        file.save(&MetaState::default())
            .expect("saves over the leftover");
        drop(file);
        let (_file, back) = MetaFile::open(dir.path()).expect("reopens");
        assert_eq!(back, MetaState::default());
        assert!(!dir.path().join(META_TEMP_FILE_NAME).exists());
    }

    #[test]
    fn a_directory_is_locked_by_one_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, _) = MetaFile::open(dir.path()).expect("opens");
        assert!(matches!(
            MetaFile::open(dir.path()),
            Err(PersistError::Locked { .. })
        ));
        drop(file);
        assert!(MetaFile::open(dir.path()).is_ok());
    }
}
