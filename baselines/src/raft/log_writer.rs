//! The log's disk side: segment files written by one dedicated thread, in
//! the order the commands arrive (openraft requires log and vote writes to
//! be serialized), so no fsync ever blocks the tokio reactor.
//!
//! **Files** in the log directory:
//!
//! - `log-<first index, 20 digits>.seg`: a 16-byte header (`TRLRAFT1`,
//!   then the segment's first index, u64 little-endian: no entry in it is
//!   below), then one record (see [`super::codec`]) per entry, bincode of
//!   `openraft::Entry`. Past the last record: zeroes (space preallocated
//!   with `fallocate`). A segment is closed past [`SEGMENT_BYTES_MAX`].
//!   Indexes strictly increase along the records of all segments in
//!   order; openraft appends them consecutively (its test suite also
//!   appends with gaps, which the log accepts).
//! - `meta`: one record holding the vote and the last purged log id,
//!   replaced atomically (written to `meta.tmp`, synced, renamed, the
//!   directory synced).
//!
//! **Durability.** An append command's entries are written with one
//! `pwrite` and made durable with one `fdatasync` before its
//! [`LogFlushed`] callback runs; commands queued behind it are taken into
//! the same write (group commit), so one fsync covers them all. A vote is
//! durable before `save_vote` returns.
//!
//! **Truncate** (drop entries from an index on: a follower's uncommitted
//! tail that conflicts with the leader) deletes the later segments and
//! cuts the segment holding the index with `ftruncate`, then syncs.
//! **Purge** (drop entries up to a log id, covered by a snapshot) records
//! the purged log id in `meta` first, then deletes the closed segments
//! all of whose entries are purged; entries at or below the purged log
//! id that remain on disk are skipped by recovery.
//!
//! **Recovery** reads the segments in order and stops at the first record
//! that is absent, torn (short or bad checksum), undecodable or not above
//! the previous one; the file is cut there and later segments deleted, so stale
//! bytes can never be read as entries after new appends.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use openraft::storage::LogFlushed;
use openraft::Vote;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::codec::{decode, encode_record, read_record};
use super::limits::{PREALLOC_CHUNK_BYTES, RECORD_BYTES_MAX, SEGMENT_BYTES_MAX};
use super::types::{Entry, LogId, NodeId, TypeConfig};

/// A segment's header: magic and first index.
const SEGMENT_HEADER_BYTES: u64 = 16;
const SEGMENT_MAGIC: &[u8; 8] = b"TRLRAFT1";

/// Append commands taken into one write and one fsync at most.
const COALESCED_APPENDS_MAX: usize = 1024;

/// Largest `meta` record body.
const META_BYTES_MAX: usize = 4096;

const _: () = assert!(SEGMENT_HEADER_BYTES < PREALLOC_CHUNK_BYTES);

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("{path}: damaged: {why}")]
    Damaged { path: PathBuf, why: String },
}

/// What survives a crash besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub vote: Option<Vote<NodeId>>,
    pub purged: Option<LogId>,
}

/// A command for the writer thread.
pub(super) enum WriteCmd {
    Append {
        entries: Vec<Entry>,
        done: LogFlushed<TypeConfig>,
    },
    SaveVote {
        vote: Vote<NodeId>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Drop the entries from `index` on.
    Truncate {
        index: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Drop the entries up to `log_id`, inclusive.
    Purge {
        log_id: LogId,
        done: oneshot::Sender<io::Result<()>>,
    },
}

struct Segment {
    first_index: u64,
    path: PathBuf,
    /// Open for the active (last) segment, and for one just truncated.
    file: Option<File>,
    /// Bytes in use: header and records.
    len: u64,
    /// The file's size (preallocated).
    allocated: u64,
    /// Index and offset of each entry's record, in order.
    records: Vec<(u64, u64)>,
}

impl Segment {
    fn last_index(&self) -> Option<u64> {
        self.records.last().map(|r| r.0)
    }

    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(ctx(&self.path, "open"))?;
            self.file = Some(f);
        }
        match &self.file {
            Some(f) => Ok(f),
            None => Err(io::Error::other("segment file not open")),
        }
    }
}

/// The writer thread's state: the segments and the meta.
pub(super) struct LogWriter {
    dir: PathBuf,
    /// In index order; the last one is the active segment. Never empty.
    segments: Vec<Segment>,
    meta: Meta,
    /// Every entry appended from now on must have an index above this:
    /// the last entry's, or the purged one's, or the one before a
    /// truncation point.
    floor: Option<u64>,
    /// Set on the first failed write: every later command fails too, as
    /// the disk's state is then unknown.
    failed: Option<String>,
    buf: Vec<u8>,
}

/// The log as recovered from disk.
pub(super) struct Recovered {
    pub meta: Meta,
    /// The entries after the purged log id, in index order.
    pub entries: Vec<Entry>,
}

fn ctx<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ctx(dir, "sync directory"))
}

/// Allocates `[offset, offset + len)` of `file` (extending its size).
fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate only reads its integer arguments; the descriptor
    // is owned by `file`, open for the whole call.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset as i64, len as i64) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A file system without fallocate: writes extend the file.
        return Ok(());
    }
    Err(e)
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("log-{first_index:020}.seg"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// `LogStoreError::Io` about `path`.
fn io_err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> LogStoreError {
    let path = path.to_path_buf();
    move |source| LogStoreError::Io { path, what, source }
}

/// The first indexes of the log's segment files, in order. Leftovers of
/// an interrupted `meta` replacement (`*.tmp`) are deleted.
fn segment_firsts(dir: &Path) -> Result<Vec<u64>, LogStoreError> {
    let mut firsts = Vec::new();
    for de in std::fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let de = de.map_err(io_err(dir, "list"))?;
        let name = de.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            std::fs::remove_file(de.path()).map_err(io_err(&de.path(), "remove"))?;
        } else if let Some(first) = parse_segment_name(&name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Recovery's progress through the segments, in order.
struct Recovery {
    /// Entries from this index on are returned; those below are purged.
    purged_next: u64,
    /// The last index read: every later record must be above it.
    last_seen: Option<u64>,
    /// Set at the first record that is absent, torn, undecodable or not
    /// above the previous one: every later segment is deleted.
    stopped: bool,
    entries: Vec<Entry>,
}

impl Recovery {
    /// Recovers the segment starting at `first`, cutting what follows its
    /// last intact record; None if the segment was deleted.
    fn segment(&mut self, dir: &Path, first: u64) -> Result<Option<Segment>, LogStoreError> {
        let path = segment_path(dir, first);
        if self.stopped {
            log::warn!("{}: after a damaged record: deleted", path.display());
            std::fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(io_err(&path, "read"))?;
        let header_ok = bytes.len() >= SEGMENT_HEADER_BYTES as usize
            && &bytes[..8] == SEGMENT_MAGIC
            && bytes[8..16] == first.to_le_bytes();
        if !header_ok {
            log::warn!("{}: bad header: deleted with what follows", path.display());
            std::fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
            self.stopped = true;
            return Ok(None);
        }
        let mut seg = Segment {
            first_index: first,
            path: path.clone(),
            file: None,
            len: SEGMENT_HEADER_BYTES,
            allocated: bytes.len() as u64,
            records: Vec::new(),
        };
        let pos = self.records(&bytes, &mut seg);
        seg.len = pos as u64;
        if self.stopped || bytes[pos..].iter().any(|&b| b != 0) {
            // Cut what follows the last intact record, so it is never
            // read once new records are written before it.
            log::warn!(
                "{}: log ends at offset {pos} (after entry {:?}): cut there",
                path.display(),
                seg.last_index()
            );
            let f = seg.file().map_err(io_err(&path, "open"))?;
            f.set_len(pos as u64).map_err(io_err(&path, "truncate"))?;
            f.sync_all().map_err(io_err(&path, "sync"))?;
            seg.allocated = pos as u64;
        }
        Ok(Some(seg))
    }

    /// Reads `seg`'s records from `bytes` (the whole file) and notes them;
    /// returns the offset where the intact records end.
    fn records(&mut self, bytes: &[u8], seg: &mut Segment) -> usize {
        let mut pos = SEGMENT_HEADER_BYTES as usize;
        while let Some((body, used)) = read_record(&bytes[pos..], RECORD_BYTES_MAX) {
            let Ok(entry) = decode::<Entry>(body, RECORD_BYTES_MAX) else {
                self.stopped = true;
                break;
            };
            let index = entry.log_id.index;
            if index < seg.first_index || self.last_seen.is_some_and(|l| index <= l) {
                self.stopped = true;
                break;
            }
            self.last_seen = Some(index);
            seg.records.push((index, pos as u64));
            if index >= self.purged_next {
                self.entries.push(entry);
            }
            pos += used;
        }
        pos
    }
}

impl LogWriter {
    /// Opens (or creates) the log in `dir` and recovers it.
    pub(super) fn open(dir: &Path) -> Result<(LogWriter, Recovered), LogStoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        let meta = read_meta(dir)?;
        let mut recovery = Recovery {
            purged_next: meta.purged.map_or(0, |p| p.index + 1),
            last_seen: None,
            stopped: false,
            entries: Vec::new(),
        };
        let mut segments = Vec::new();
        for first in segment_firsts(dir)? {
            segments.extend(recovery.segment(dir, first)?);
        }
        let floor = recovery.last_seen.max(meta.purged.map(|p| p.index));
        let mut w = LogWriter {
            dir: dir.to_path_buf(),
            segments,
            meta: meta.clone(),
            floor,
            failed: None,
            buf: Vec::new(),
        };
        if w.segments.is_empty() {
            w.rotate(floor.map_or(0, |f| f + 1))
                .map_err(io_err(dir, "start a segment"))?;
        }
        sync_dir(dir).map_err(io_err(dir, "sync"))?;
        let entries = recovery.entries;
        Ok((w, Recovered { meta, entries }))
    }

    /// Serves commands until every sender is gone.
    pub(super) fn run(mut self, rx: mpsc::Receiver<WriteCmd>) {
        let mut next: Option<WriteCmd> = None;
        loop {
            let cmd = match next.take() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match cmd {
                WriteCmd::Append { entries, done } => {
                    let mut batch = vec![(entries, done)];
                    while batch.len() < COALESCED_APPENDS_MAX {
                        match rx.try_recv() {
                            Ok(WriteCmd::Append { entries, done }) => batch.push((entries, done)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let r = self.guarded(|w| {
                        let all: Vec<&Entry> = batch.iter().flat_map(|(e, _)| e.iter()).collect();
                        w.append(&all)
                    });
                    for (_, done) in batch {
                        done.log_io_completed(copy_result(&r));
                    }
                }
                WriteCmd::SaveVote { vote, done } => {
                    let r = self.guarded(|w| {
                        let meta = Meta {
                            vote: Some(vote),
                            purged: w.meta.purged,
                        };
                        w.write_meta(&meta)?;
                        w.meta = meta;
                        Ok(())
                    });
                    let _ = done.send(r);
                }
                WriteCmd::Truncate { index, done } => {
                    let _ = done.send(self.guarded(|w| w.truncate(index)));
                }
                WriteCmd::Purge { log_id, done } => {
                    let _ = done.send(self.guarded(|w| w.purge(log_id)));
                }
            }
        }
    }

    fn guarded(&mut self, f: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(format!("log failed earlier: {why}")));
        }
        let r = f(self);
        if let Err(e) = &r {
            log::error!("raft log in {}: {e}", self.dir.display());
            self.failed = Some(e.to_string());
        }
        r
    }

    fn active(&mut self) -> &mut Segment {
        let n = self.segments.len();
        assert!(n > 0, "the log always has an active segment");
        &mut self.segments[n - 1]
    }

    /// Writes `entries` (whose indexes must increase, above the floor),
    /// then fdatasyncs.
    fn append(&mut self, entries: &[&Entry]) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut offsets = Vec::with_capacity(entries.len());
        let r = (|| {
            for e in entries {
                let index = e.log_id.index;
                if self.floor.is_some_and(|f| index <= f) {
                    return Err(io::Error::other(format!(
                        "append of entry {index}, not above {:?}",
                        self.floor
                    )));
                }
                let start = buf.len();
                encode_record(&mut buf, *e, RECORD_BYTES_MAX)
                    .map_err(|err| io::Error::other(format!("encode entry {index}: {err}")))?;
                let active = self.active();
                let full = active.len + buf.len() as u64 > SEGMENT_BYTES_MAX;
                let record_at = if full && (start > 0 || !active.records.is_empty()) {
                    // Close the active segment with what precedes this
                    // record; the record opens the next segment.
                    let record = buf.split_off(start);
                    self.write_active(&buf, &offsets)?;
                    buf.clear();
                    offsets.clear();
                    self.rotate(index)?;
                    buf.extend_from_slice(&record);
                    0
                } else {
                    start
                };
                offsets.push((index, record_at as u64));
                self.floor = Some(index);
            }
            self.write_active(&buf, &offsets)
        })();
        self.buf = buf;
        r
    }

    /// Writes `buf` (records starting at `offsets` within it) at the end
    /// of the active segment and fdatasyncs.
    fn write_active(&mut self, buf: &[u8], offsets: &[(u64, u64)]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let seg = self.active();
        let end = seg.len + buf.len() as u64;
        let (at, allocated) = (seg.len, seg.allocated);
        let path = seg.path.clone();
        let f = seg.file()?;
        if end > allocated {
            let target = round_up(end, PREALLOC_CHUNK_BYTES);
            preallocate(f, allocated, target - allocated).map_err(ctx(&path, "preallocate"))?;
            seg.allocated = target;
        }
        let f = seg.file()?;
        f.write_all_at(buf, at).map_err(ctx(&path, "write"))?;
        f.sync_data().map_err(ctx(&path, "fdatasync"))?;
        seg.records
            .extend(offsets.iter().map(|&(index, o)| (index, at + o)));
        seg.len = end;
        Ok(())
    }

    /// Starts a new active segment whose first entry will be `first_index`.
    fn rotate(&mut self, first_index: u64) -> io::Result<()> {
        assert!(
            self.segments
                .last()
                .is_none_or(|s| s.first_index < first_index),
            "segments start at increasing indexes"
        );
        let path = segment_path(&self.dir, first_index);
        let tmp = path.with_extension("tmp");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(ctx(&tmp, "create"))?;
        preallocate(&f, 0, PREALLOC_CHUNK_BYTES).map_err(ctx(&tmp, "preallocate"))?;
        let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
        header[..8].copy_from_slice(SEGMENT_MAGIC);
        header[8..].copy_from_slice(&first_index.to_le_bytes());
        f.write_all_at(&header, 0)
            .map_err(ctx(&tmp, "write header"))?;
        f.sync_data().map_err(ctx(&tmp, "fdatasync"))?;
        std::fs::rename(&tmp, &path).map_err(ctx(&path, "rename"))?;
        sync_dir(&self.dir)?;
        if let Some(old) = self.segments.last_mut() {
            old.file = None;
        }
        self.segments.push(Segment {
            first_index,
            path,
            file: Some(f),
            len: SEGMENT_HEADER_BYTES,
            allocated: PREALLOC_CHUNK_BYTES,
            records: Vec::new(),
        });
        Ok(())
    }

    /// Drops the entries from `index` on.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let purged_next = self.meta.purged.map_or(0, |p| p.index + 1);
        if index < purged_next {
            return Err(io::Error::other(format!(
                "truncate from {index}, but entries below {purged_next} are purged"
            )));
        }
        let keep = self.segments.iter().rposition(|s| s.first_index <= index);
        let later: Vec<Segment> = self.segments.drain(keep.map_or(0, |k| k + 1)..).collect();
        for s in &later {
            std::fs::remove_file(&s.path).map_err(ctx(&s.path, "remove"))?;
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        if keep.is_none() {
            // Every entry was at or above `index`.
            self.rotate(index)?;
        } else {
            let seg = self.active();
            let k = seg.records.partition_point(|r| r.0 < index);
            if k < seg.records.len() {
                let cut = seg.records[k].1;
                let path = seg.path.clone();
                let f = seg.file()?;
                f.set_len(cut).map_err(ctx(&path, "truncate"))?;
                f.sync_all().map_err(ctx(&path, "sync"))?;
                seg.len = cut;
                seg.allocated = cut;
                seg.records.truncate(k);
            }
        }
        self.floor = self
            .segments
            .iter()
            .rev()
            .find_map(Segment::last_index)
            .max(self.meta.purged.map(|p| p.index));
        Ok(())
    }

    /// Drops the entries up to `log_id`, inclusive.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        if self.meta.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        let meta = Meta {
            vote: self.meta.vote,
            purged: Some(log_id),
        };
        self.write_meta(&meta)?;
        self.meta = meta;
        self.floor = self.floor.max(Some(log_id.index));
        let closed = self.segments.len() - 1;
        let dead = self.segments[..closed]
            .iter()
            .take_while(|s| s.last_index().is_none_or(|l| l <= log_id.index))
            .count();
        if dead > 0 {
            for s in self.segments.drain(..dead) {
                std::fs::remove_file(&s.path).map_err(ctx(&s.path, "remove"))?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn write_meta(&mut self, meta: &Meta) -> io::Result<()> {
        let path = self.dir.join("meta");
        let tmp = self.dir.join("meta.tmp");
        let mut buf = Vec::new();
        encode_record(&mut buf, meta, META_BYTES_MAX)
            .map_err(|e| io::Error::other(format!("encode meta: {e}")))?;
        let f = File::create(&tmp).map_err(ctx(&tmp, "create"))?;
        f.write_all_at(&buf, 0).map_err(ctx(&tmp, "write"))?;
        f.sync_data().map_err(ctx(&tmp, "fdatasync"))?;
        std::fs::rename(&tmp, &path).map_err(ctx(&path, "rename"))?;
        sync_dir(&self.dir)
    }
}

fn read_meta(dir: &Path) -> Result<Meta, LogStoreError> {
    let path = dir.join("meta");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(source) => {
            return Err(LogStoreError::Io {
                path,
                what: "read",
                source,
            })
        }
    };
    // Replaced atomically: a bad record is damage, not a torn write.
    let damaged = |why: String| LogStoreError::Damaged {
        path: path.clone(),
        why,
    };
    let (body, used) =
        read_record(&bytes, META_BYTES_MAX).ok_or_else(|| damaged("bad record".into()))?;
    if used != bytes.len() {
        return Err(damaged("trailing bytes".into()));
    }
    decode(body, META_BYTES_MAX).map_err(|e| damaged(e.to_string()))
}

fn copy_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}
