//! The state machine: the replicated log the clients append to, as an
//! in-memory vector of payloads (the newest [`SM_TAIL_BYTES_MAX`] bytes
//! of them; older positions are only counted), plus the client sessions
//! that make a retried append apply once.
//!
//! It is not made durable on apply: a restarted node rebuilds it from its
//! last snapshot and the log after it (openraft re-applies committed
//! entries). So every snapshot is durable: the file `snapshot` (one
//! record, see [`super::codec`], holding the snapshot's metadata and the
//! bincode image of [`LogData`]) is replaced atomically, and never by an
//! older snapshot, before the log below it may be purged.

// The error types are openraft's, fixed by its traits.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::StoredMembership;
use openraft::{AnyError, EntryPayload, OptionalSend, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode_into, encode_record, read_record};
use super::limits::{SESSIONS_MAX, SESSION_SEQS_MAX, SM_TAIL_BYTES_MAX, SNAPSHOT_BYTES_MAX};
use super::types::{AppendRequest, Applied, Entry, LogId, Node, NodeId, TypeConfig};

/// The appends of one client the state machine remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    first_unacked: u64,
    /// Index of the last entry of this client applied (for eviction).
    last_log_index: u64,
    /// seq -> first position of the append's payloads.
    done: BTreeMap<u64, u64>,
}

/// The replicated log as applied, and what else a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogData {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, Node>,
    /// Payloads appended so far: the next payload's position.
    pub next_position: u64,
    /// Position of `tail[0]`.
    pub tail_start: u64,
    #[serde(with = "codec::payload_deque")]
    pub tail: VecDeque<Vec<u8>>,
    pub tail_bytes: u64,
    sessions: BTreeMap<u64, Session>,
}

impl LogData {
    /// Applies one client append (at log index `index`).
    fn append(&mut self, index: u64, req: AppendRequest) -> Applied {
        if !self.sessions.contains_key(&req.client) && self.sessions.len() >= SESSIONS_MAX {
            // Forget the client heard from least recently (by log index:
            // the same choice on every replica).
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_log_index)
                .map(|(c, _)| *c);
            if let Some(c) = oldest {
                self.sessions.remove(&c);
            }
        }
        let session = self.sessions.entry(req.client).or_default();
        session.last_log_index = index;
        if req.first_unacked > session.first_unacked {
            session.first_unacked = req.first_unacked;
            session.done = session.done.split_off(&req.first_unacked);
        }
        if let Some(&first_position) = session.done.get(&req.seq) {
            return Applied::Appended { first_position };
        }
        if req.seq < session.first_unacked {
            return Applied::Expired;
        }
        let first_position = self.next_position;
        session.done.insert(req.seq, first_position);
        if session.done.len() > SESSION_SEQS_MAX {
            session.done.pop_first();
        }
        for p in req.payloads {
            self.next_position += 1;
            self.tail_bytes += p.len() as u64;
            self.tail.push_back(p);
        }
        while self.tail_bytes > SM_TAIL_BYTES_MAX as u64 && self.tail.len() > 1 {
            if let Some(p) = self.tail.pop_front() {
                self.tail_bytes -= p.len() as u64;
                self.tail_start += 1;
            }
        }
        debug_assert_eq!(self.tail_start + self.tail.len() as u64, self.next_position);
        Applied::Appended { first_position }
    }

    /// Up to `max` payloads from position `from`, at most `bytes_max`
    /// bytes (at least one), or `None` if `from` is no longer kept.
    pub fn read(&self, from: u64, max: usize, bytes_max: usize) -> Option<Vec<Vec<u8>>> {
        if from < self.tail_start {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for p in self.tail.iter().skip((from - self.tail_start) as usize) {
            if out.len() >= max || (!out.is_empty() && bytes + p.len() > bytes_max) {
                break;
            }
            bytes += p.len();
            out.push(p.clone());
        }
        Some(out)
    }
}

/// A saved snapshot: its metadata and its image.
type SavedSnapshot = (SnapshotMeta<NodeId, Node>, Vec<u8>);

/// The snapshot file's record.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Node>,
    #[serde(with = "codec::bytes")]
    data: Vec<u8>,
}

/// Where snapshots are kept: one file, only ever replaced by a newer one.
#[derive(Debug)]
struct SnapshotDir {
    dir: PathBuf,
    /// The saved snapshot's last log id; held while replacing the file.
    saved: Mutex<Option<LogId>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks a [`StateMachine::data`] handle.
pub fn lock_data(d: &Mutex<LogData>) -> MutexGuard<'_, LogData> {
    lock(d)
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn snapshot_write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl SnapshotDir {
    fn path(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    /// Saves a snapshot durably unless a newer one is saved already.
    fn save(&self, meta: &SnapshotMeta<NodeId, Node>, data: &[u8]) -> io::Result<()> {
        let mut saved = lock(&self.saved);
        if *saved >= meta.last_log_id && saved.is_some() {
            return Ok(());
        }
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let mut buf = Vec::with_capacity(data.len() + 4096);
        encode_record(&mut buf, &file, SNAPSHOT_BYTES_MAX + 4096)
            .map_err(|e| io::Error::other(format!("encode snapshot: {e}")))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("snapshot.{id}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        std::fs::rename(&tmp, self.path())?;
        File::open(&self.dir)?.sync_all()?;
        *saved = meta.last_log_id;
        Ok(())
    }

    /// The saved snapshot, if any.
    fn load(&self) -> io::Result<Option<SavedSnapshot>> {
        let bytes = match std::fs::read(self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let damaged = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: damaged: {why}", self.path().display()),
            )
        };
        let (body, _) =
            read_record(&bytes, SNAPSHOT_BYTES_MAX + 4096).ok_or_else(|| damaged("bad record"))?;
        let file: SnapshotFile =
            decode(body, SNAPSHOT_BYTES_MAX + 4096).map_err(|e| damaged(&e.to_string()))?;
        Ok(Some((file.meta, file.data)))
    }
}

/// The state machine of one node.
#[derive(Debug, Clone)]
pub struct StateMachine {
    data: Arc<Mutex<LogData>>,
    snapshots: Arc<SnapshotDir>,
}

impl StateMachine {
    /// Opens the state machine whose snapshots live in `dir`: starts from
    /// the saved snapshot if there is one.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        for de in std::fs::read_dir(dir)? {
            let de = de?;
            if de.file_name().to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(de.path())?;
            }
        }
        let snapshots = SnapshotDir {
            dir: dir.to_path_buf(),
            saved: Mutex::new(None),
            next_id: AtomicU64::new(0),
        };
        let mut data = LogData::default();
        if let Some((meta, bytes)) = snapshots.load()? {
            data = decode(&bytes, SNAPSHOT_BYTES_MAX)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            assert_eq!(
                data.last_applied, meta.last_log_id,
                "a snapshot's image is of its last log id"
            );
            *lock(&snapshots.saved) = meta.last_log_id;
        }
        Ok(StateMachine {
            data: Arc::new(Mutex::new(data)),
            snapshots: Arc::new(snapshots),
        })
    }

    /// A handle on the applied log, for reads.
    pub fn data(&self) -> Arc<Mutex<LogData>> {
        self.data.clone()
    }
}

/// Builds a snapshot of a copy of the state machine taken when asked.
pub struct SnapshotBuilder {
    data: LogData,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = std::mem::take(&mut self.data);
        let snapshots = self.snapshots.clone();
        // Encoding and the fsyncs run off the reactor.
        tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            encode_into(&mut bytes, &data, SNAPSHOT_BYTES_MAX).map_err(snapshot_write_err)?;
            let id = snapshots.next_id.fetch_add(1, Ordering::Relaxed);
            let meta = SnapshotMeta {
                last_log_id: data.last_applied,
                last_membership: data.membership.clone(),
                snapshot_id: format!(
                    "{}-{}-{id}",
                    data.last_applied.map_or(0, |l| l.leader_id.term),
                    data.last_applied.map_or(0, |l| l.index)
                ),
            };
            snapshots.save(&meta, &bytes).map_err(snapshot_write_err)?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            })
        })
        .await
        .map_err(snapshot_write_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let d = lock(&self.data);
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut d = lock(&self.data);
        let mut out = Vec::new();
        for e in entries {
            d.last_applied = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => Applied::Nothing,
                EntryPayload::Normal(req) => d.append(e.log_id.index, req),
                EntryPayload::Membership(m) => {
                    d.membership = StoredMembership::new(Some(e.log_id), m);
                    Applied::Nothing
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            data: lock(&self.data).clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let data: LogData = decode(&bytes, SNAPSHOT_BYTES_MAX).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        if data.last_applied != meta.last_log_id {
            return Err(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(format!(
                    "snapshot image is of {:?}, its metadata says {:?}",
                    data.last_applied, meta.last_log_id
                )),
            )
            .into());
        }
        let snapshots = self.snapshots.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || snapshots.save(&m, &bytes))
            .await
            .map_err(snapshot_write_err)?
            .map_err(snapshot_write_err)?;
        *lock(&self.data) = data;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let snapshots = self.snapshots.clone();
        let loaded = tokio::task::spawn_blocking(move || snapshots.load())
            .await
            .map_err(sm_read_err)?
            .map_err(sm_read_err)?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: u64, seq: u64, first_unacked: u64, n: usize) -> AppendRequest {
        AppendRequest {
            client,
            seq,
            first_unacked,
            payloads: (0..n).map(|i| vec![seq as u8, i as u8]).collect(),
        }
    }

    #[test]
    fn a_retried_append_applies_once() {
        let mut d = LogData::default();
        assert_eq!(
            d.append(1, req(7, 1, 1, 2)),
            Applied::Appended { first_position: 0 }
        );
        assert_eq!(
            d.append(2, req(8, 1, 1, 1)),
            Applied::Appended { first_position: 2 }
        );
        // The retry of client 7's append (its first copy was committed
        // before the leader died) answers the first outcome.
        assert_eq!(
            d.append(3, req(7, 1, 1, 2)),
            Applied::Appended { first_position: 0 }
        );
        assert_eq!(d.next_position, 3);
        // Once the client moved past it, a late copy is ignored.
        assert_eq!(
            d.append(4, req(7, 2, 2, 1)),
            Applied::Appended { first_position: 3 }
        );
        assert_eq!(d.append(5, req(7, 1, 1, 2)), Applied::Expired);
        assert_eq!(d.next_position, 4);
        assert_eq!(
            d.read(0, 10, 1 << 20).expect("kept"),
            vec![vec![1, 0], vec![1, 1], vec![1, 0], vec![2, 0]]
        );
    }

    #[test]
    fn the_tail_is_bounded_and_positions_count_on() {
        let mut d = LogData::default();
        let big = SM_TAIL_BYTES_MAX / 4 + 1;
        for seq in 1..=8 {
            let r = AppendRequest {
                client: 1,
                seq,
                first_unacked: seq,
                payloads: vec![vec![0u8; big]],
            };
            d.append(seq, r);
        }
        assert_eq!(d.next_position, 8);
        assert!(d.tail_bytes <= SM_TAIL_BYTES_MAX as u64);
        assert_eq!(d.tail_start + d.tail.len() as u64, 8);
        assert!(d.read(0, 1, usize::MAX).is_none(), "trimmed");
        assert_eq!(d.read(7, 10, 1).expect("kept").len(), 1);
    }
}
