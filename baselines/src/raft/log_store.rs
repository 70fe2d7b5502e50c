//! The durable Raft log: openraft's [`RaftLogStorage`] and
//! [`RaftLogReader`] over the segment files written by the log writer
//! thread (`log_writer.rs`, whose doc describes the files).
//!
//! The entries not yet purged are also kept in memory, so that readers
//! (replication to each follower) never touch the disk and an appended
//! entry is readable as soon as `append` returns, as openraft requires,
//! while the writer thread makes it durable. Memory is bounded by the
//! snapshot policy: the log is purged after each snapshot.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, OptionalSend, StorageError, StorageIOError, Vote};
use tokio::sync::oneshot;

pub use super::log_writer::{LogStoreError, Meta};
use super::log_writer::{LogWriter, WriteCmd};
use super::types::{Entry, LogId, NodeId, TypeConfig};

/// The entries in memory: those after the purged log id, by index.
#[derive(Debug)]
struct Cache {
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

impl Cache {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(self.purged)
    }
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    // A panic while holding the lock cannot leave the cache half-changed
    // in a way later readers could misread: each change is one call.
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

/// The log of one node. Dropping it (and its readers' writer handle)
/// stops its writer thread once the queued writes are done.
pub struct LogStore {
    cache: Arc<Mutex<Cache>>,
    vote: Option<Vote<NodeId>>,
    writer: mpsc::Sender<WriteCmd>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("vote", &self.vote)
            .finish_non_exhaustive()
    }
}

/// A reader of the log, for a replication task.
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<Mutex<Cache>>,
}

impl LogStore {
    /// Opens the log in `dir` (created if absent), recovers what is on
    /// disk and starts the writer thread.
    pub fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        let (writer, recovered) = LogWriter::open(dir)?;
        let purged = recovered.meta.purged;
        let n = recovered.entries.len();
        let entries: BTreeMap<u64, Entry> = recovered
            .entries
            .into_iter()
            .map(|e| (e.log_id.index, e))
            .collect();
        assert!(
            entries.len() == n && purged.is_none_or(|p| entries.keys().all(|&i| i > p.index)),
            "recovery yields distinct entries after the purged ones"
        );
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| LogStoreError::Io {
                path: dir.to_path_buf(),
                what: "start the writer thread",
                source,
            })?;
        Ok(LogStore {
            cache: Arc::new(Mutex::new(Cache { purged, entries })),
            vote: recovered.meta.vote,
            writer: tx,
        })
    }

    /// Sends `cmd` to the writer thread and waits for its answer.
    async fn call(
        &self,
        cmd: impl FnOnce(oneshot::Sender<io::Result<()>>) -> WriteCmd,
    ) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(cmd(tx))
            .map_err(|_| io::Error::other("the log writer thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("the log writer thread is gone"))?
    }
}

fn write_err(e: io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let cache = lock(&self.cache);
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(cache
            .entries
            .range(start..end)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let mut r = LogReader {
            cache: self.cache.clone(),
        };
        r.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let cache = lock(&self.cache);
        Ok(LogState {
            last_purged_log_id: cache.purged,
            last_log_id: cache.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            cache: self.cache.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let v = *vote;
        self.call(|done| WriteCmd::SaveVote { vote: v, done })
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.vote = Some(v);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        // Entries at or below the purged log id are in the snapshot
        // already (committed entries are the same on every node): openraft
        // never sends them, its storage test suite does. Skip them.
        let purged = lock(&self.cache).purged.map(|p| p.index);
        entries.retain(|e| purged.is_none_or(|p| e.log_id.index > p));
        // openraft truncates a conflicting tail before appending over it;
        // its storage test suite appends over entries directly. Appending
        // at an index means what follows is replaced: truncate first.
        if let Some(first) = entries.first().map(|e| e.log_id) {
            let last = lock(&self.cache).last_log_id().map(|l| l.index);
            if last.is_some_and(|l| first.index <= l) {
                self.truncate(first).await?;
            }
        }
        {
            let mut cache = lock(&self.cache);
            for e in &entries {
                let last = cache.last_log_id().map(|l| l.index);
                if last.is_some_and(|l| e.log_id.index <= l) {
                    return Err(write_err(io::Error::other(format!(
                        "append of entry {} after entry {last:?}",
                        e.log_id.index,
                    ))));
                }
                cache.entries.insert(e.log_id.index, e.clone());
            }
        }
        self.writer
            .send(WriteCmd::Append {
                entries,
                done: callback,
            })
            .map_err(|_| write_err(io::Error::other("the log writer thread is gone")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        {
            let mut cache = lock(&self.cache);
            cache.entries.split_off(&log_id.index);
        }
        self.call(|done| WriteCmd::Truncate {
            index: log_id.index,
            done,
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        {
            let mut cache = lock(&self.cache);
            if cache.purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            cache.entries = cache.entries.split_off(&(log_id.index + 1));
            cache.purged = Some(log_id);
        }
        self.call(|done| WriteCmd::Purge { log_id, done })
            .await
            .map_err(write_err)
    }
}
