//! Durability of the metadata store's logs (leases are volatile, see
//! [`crate::state`]).
//!
//! The whole state (the revision and every log's version and record) is one
//! file, `meta.db`, rewritten on every change:
//!
//! ```text
//! offset size field
//!  0     8    magic        "TRLGMETA"
//!  8     4    version      4, u32 little-endian (1 to 3 are read too)
//! 12     4    reserved     0
//! 16     8    payload_len  u64 LE; the file is exactly 32 + payload_len bytes
//! 24     4    crc32c       over bytes 0..24, then the payload
//! 28     4    reserved     0
//! 32     ..   payload      rkyv archive of `PersistedState`
//! ```
//!
//! `PersistedState` (version 4) holds the cluster id (0: none yet), the
//! revision, every log's version and record, and every node id's mode other
//! than active (leaving, removed). Older files are read and rewritten as
//! version 4 at the next change:
//! - version 3 is the same without node modes (every node active);
//! - version 2 is the same with log records of the layout before trim
//!   (no `deleting`, no `deleted`; `LogMetaV2` keeps that layout, frozen:
//!   an rkyv archive is only readable with the exact types that wrote it);
//! - version 1, written before the store had a cluster id, is version 2
//!   without the cluster id; it is read as a state with no cluster id, and
//!   the server creates one at once (see [`crate::server`]).
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
use trilog_wire::meta::{LogMeta, NodeModeEntry, SegmentMeta};

use crate::state::MetaState;

pub const META_FILE_NAME: &str = "meta.db";
pub const META_TEMP_FILE_NAME: &str = "meta.db.tmp";
pub const META_LOCK_FILE_NAME: &str = "meta.lock";
pub const META_FILE_MAGIC: [u8; 8] = *b"TRLGMETA";
/// 4: node modes (decommission). 3: log records gained `deleting` and
/// `deleted` (trim and delete).
pub const META_FILE_VERSION: u32 = 4;
/// The formats before: still read (see the module doc).
pub const META_FILE_VERSION_V3: u32 = 3;
pub const META_FILE_VERSION_V2: u32 = 2;
pub const META_FILE_VERSION_V1: u32 = 1;
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

/// Format version 4.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedState {
    /// 0: none created yet.
    cluster_id: u64,
    revision: u64,
    logs: Vec<PersistedLog>,
    node_modes: Vec<NodeModeEntry>,
}

/// Format version 3, before node modes. Frozen: never change it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedStateV3 {
    cluster_id: u64,
    revision: u64,
    logs: Vec<PersistedLog>,
}

/// A log record as versions 1 and 2 wrote it. Frozen: never change it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct LogMetaV2 {
    log_id: u64,
    epoch: u64,
    trim_seq: u64,
    segments: Vec<SegmentMeta>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedLogV2 {
    version: u64,
    record: LogMetaV2,
}

impl PersistedLogV2 {
    fn upgrade(self) -> PersistedLog {
        let r = self.record;
        PersistedLog {
            version: self.version,
            record: LogMeta {
                log_id: r.log_id,
                epoch: r.epoch,
                trim_seq: r.trim_seq,
                segments: r.segments,
                deleting: Vec::new(),
                deleted: false,
            },
        }
    }
}

/// Format version 2, log records before trim.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedStateV2 {
    cluster_id: u64,
    revision: u64,
    logs: Vec<PersistedLogV2>,
}

/// Format version 1, before the cluster id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct PersistedStateV1 {
    revision: u64,
    logs: Vec<PersistedLogV2>,
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
        replace_durably(&self.dir, META_TEMP_FILE_NAME, META_FILE_NAME, &bytes)
            .map_err(|(op, path, source)| PersistError::Io { op, path, source })
    }
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old file or
/// the new one, never a mix: writes and fsyncs `dir/temp`, renames it over
/// `dir/name`, and fsyncs `dir`. On error: what failed, on which path.
/// (Shared with the node's identity file.)
pub fn replace_durably(
    dir: &Path,
    temp: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), (&'static str, PathBuf, io::Error)> {
    fn at<'a>(
        op: &'static str,
        p: &'a Path,
    ) -> impl FnOnce(io::Error) -> (&'static str, PathBuf, io::Error) + 'a {
        move |e| (op, p.to_path_buf(), e)
    }
    assert_ne!(temp, name, "the temporary file is another file");
    let tmp = dir.join(temp);
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(at("create", &tmp))?;
    f.write_all(bytes).map_err(at("write", &tmp))?;
    f.sync_all().map_err(at("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(at("rename over", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("fsync directory", dir))?;
    Ok(())
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
        cluster_id: state.cluster_id().unwrap_or(0),
        revision: state.revision(),
        logs: state
            .logs()
            .map(|v| PersistedLog {
                version: v.version,
                record: v.record.clone(),
            })
            .collect(),
        node_modes: state.modes(),
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
    if ![
        META_FILE_VERSION,
        META_FILE_VERSION_V3,
        META_FILE_VERSION_V2,
        META_FILE_VERSION_V1,
    ]
    .contains(&version)
    {
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
    let persisted = if version == META_FILE_VERSION_V1 {
        let v1 = rkyv::from_bytes::<PersistedStateV1, BoxedError>(&aligned)
            .map_err(|e| format!("payload does not decode: {e}"))?;
        PersistedState {
            cluster_id: 0,
            revision: v1.revision,
            logs: v1.logs.into_iter().map(PersistedLogV2::upgrade).collect(),
            node_modes: Vec::new(),
        }
    } else if version == META_FILE_VERSION_V2 {
        let v2 = rkyv::from_bytes::<PersistedStateV2, BoxedError>(&aligned)
            .map_err(|e| format!("payload does not decode: {e}"))?;
        PersistedState {
            cluster_id: v2.cluster_id,
            revision: v2.revision,
            logs: v2.logs.into_iter().map(PersistedLogV2::upgrade).collect(),
            node_modes: Vec::new(),
        }
    } else if version == META_FILE_VERSION_V3 {
        let v3 = rkyv::from_bytes::<PersistedStateV3, BoxedError>(&aligned)
            .map_err(|e| format!("payload does not decode: {e}"))?;
        PersistedState {
            cluster_id: v3.cluster_id,
            revision: v3.revision,
            logs: v3.logs,
            node_modes: Vec::new(),
        }
    } else {
        rkyv::from_bytes::<PersistedState, BoxedError>(&aligned)
            .map_err(|e| format!("payload does not decode: {e}"))?
    };
    let cluster_id = (persisted.cluster_id != 0).then_some(persisted.cluster_id);
    MetaState::from_logs(
        cluster_id,
        persisted.revision,
        persisted.logs.into_iter().map(|l| (l.version, l.record)),
    )
    .and_then(|state| state.with_modes(persisted.node_modes))
    .map_err(|e| format!("inconsistent content: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            cluster_id: 0,
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
            node_modes: Vec::new(),
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
    fn node_modes_roundtrip_and_an_active_mode_stored_is_refused() {
        use trilog_wire::meta::NodeMode;
        let mut state = sample_state();
        assert_eq!(state.set_mode(7, NodeMode::Leaving), Ok(true));
        assert_eq!(state.set_mode(9, NodeMode::Removed), Ok(true));
        let back = decode_state(&encode_state(&state)).expect("decodes");
        assert_eq!(back, state);
        assert_eq!(back.mode(7), NodeMode::Leaving);
        assert_eq!(back.mode(9), NodeMode::Removed);
        assert_eq!(back.mode(8), NodeMode::Active);
        let bad = MetaState::default().with_modes([NodeModeEntry {
            node_id: 1,
            mode: NodeMode::Active,
        }]);
        assert!(bad.is_err(), "an active mode is never stored");
    }

    #[test]
    fn the_cluster_id_roundtrips_and_version_1_and_2_files_are_read() {
        let mut state = sample_state();
        state.cluster_id_or_create(0xfeed);
        let back = decode_state(&encode_state(&state)).expect("decodes");
        assert_eq!(back.cluster_id(), Some(0xfeed));
        assert_eq!(back, state);
        let old_logs = || -> Vec<PersistedLogV2> {
            state
                .logs()
                .map(|v| {
                    assert!(v.record.deleting.is_empty() && !v.record.deleted);
                    PersistedLogV2 {
                        version: v.version,
                        record: LogMetaV2 {
                            log_id: v.record.log_id,
                            epoch: v.record.epoch,
                            trim_seq: v.record.trim_seq,
                            segments: v.record.segments.clone(),
                        },
                    }
                })
                .collect()
        };
        let framed = |version: u32, payload: &[u8]| {
            let mut bytes = encode_state(&MetaState::default())[..24].to_vec();
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            bytes[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes), payload);
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&[0u8; 4]);
            bytes.extend_from_slice(payload);
            bytes
        };
        // A file from before the cluster id: same logs, no cluster id.
        let v1 = PersistedStateV1 {
            revision: state.revision(),
            logs: old_logs(),
        };
        let payload = rkyv::to_bytes::<BoxedError>(&v1).expect("serializes");
        let old = decode_state(&framed(META_FILE_VERSION_V1, &payload)).expect("version 1 read");
        assert_eq!(old.cluster_id(), None);
        assert_eq!(old.list_logs(), state.list_logs());
        assert_eq!(old.revision(), state.revision());
        // A file from before trim: the same state exactly.
        let v2 = PersistedStateV2 {
            cluster_id: 0xfeed,
            revision: state.revision(),
            logs: old_logs(),
        };
        let payload = rkyv::to_bytes::<BoxedError>(&v2).expect("serializes");
        let old = decode_state(&framed(META_FILE_VERSION_V2, &payload)).expect("version 2 read");
        assert_eq!(old, state);
        // A file from before node modes: the same state, every node active.
        let v3 = PersistedStateV3 {
            cluster_id: 0xfeed,
            revision: state.revision(),
            logs: state
                .logs()
                .map(|v| PersistedLog {
                    version: v.version,
                    record: v.record.clone(),
                })
                .collect(),
        };
        let payload = rkyv::to_bytes::<BoxedError>(&v3).expect("serializes");
        let old = decode_state(&framed(META_FILE_VERSION_V3, &payload)).expect("version 3 read");
        assert_eq!(old, state);
        assert!(old.modes().is_empty());
        // An unknown version is refused, not guessed at.
        let err = decode_state(&framed(META_FILE_VERSION + 1, &payload)).expect_err("refused");
        assert!(err.contains("unsupported format version"), "{err}");
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
