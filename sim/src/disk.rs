//! [`SimDisk`]: an in-memory [`Disk`] with the failure semantics of a real
//! one, for running the node's storage layer in the deterministic
//! simulator.
//!
//! What it promises, and what a crash takes away:
//! - **Writes go to a volatile cache.** [`DiskFile::fdatasync`] of a file
//!   makes its data and size durable. Creating, renaming and unlinking a
//!   file become durable on [`Disk::sync_dir`] of its directory; before
//!   that, a crash may undo them. Directories themselves are durable as
//!   soon as they are created (storage never creates them).
//! - **[`SimDisk::crash`]** keeps the durable state and, for each file,
//!   possibly parts of its unsynced writes: 512-byte sectors, each either
//!   old or any version written since the last sync, chosen independently
//!   (a torn write, its sectors landing in any order); the size is the
//!   durable one or the latest. A crash never invents bytes. Handles opened
//!   before a crash fail with EBADF afterwards.
//! - **Direct I/O rules**: writes and reads must be 4096-aligned in
//!   position and length (EINVAL otherwise), so storage's alignment bugs
//!   show; write buffers start out filled with junk, as uninitialized
//!   memory would be, so a write of bytes storage never filled shows too.
//! - **A full disk**: with a capacity set, an allocation or a write that
//!   extends a file past it fails with ENOSPC and changes nothing. Space is
//!   counted as the files' sizes rounded up to 4096 (preallocated space is
//!   used space), for files that have a name or are open.
//! - **Power off** ([`SimDisk::power_off_after`]): after a given number of
//!   further state-changing calls, every call fails with EIO until the
//!   crash, which is how a test crashes the node in the middle of a flush.
//! - **Damage**: [`SimDisk::flip_bit`].
//!
//! Deterministic: ordered maps only, no clock, no thread; randomness only
//! from the [`Rng`] given to [`SimDisk::crash`]. Every call completes the
//! first time it is polled; a wrapper implementing [`Disk`] around this one
//! can add latency or reorder completions.

mod media;
mod state;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use trilog_node::storage::{Disk, DiskBuffer, DiskFile, OpenMode};

pub use media::{CrashEffect, SECTOR_BYTES};

use crate::rng::Rng;
use media::Media;
use state::{aligned, err, parent, Ino, Inode, Power, State};

/// Position, length and buffer alignment of direct I/O on this disk.
pub const DIRECT_IO_ALIGN_BYTES: u64 = 4096;

/// What a fresh write buffer holds: junk, as uninitialized memory would.
const BUFFER_JUNK_BYTE: u8 = 0xdb;

const _: () = assert!(DIRECT_IO_ALIGN_BYTES.is_multiple_of(SECTOR_BYTES));

/// What [`SimDisk::crash`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CrashReport {
    /// Summed over every surviving file.
    pub effect: CrashEffect,
    /// Names that came back or went away because their directory was not
    /// synced.
    pub names_undone: u64,
}

/// The simulated disk: see the module doc. Clones share the disk.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Rc<RefCell<State>>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl SimDisk {
    /// An empty disk with only the root directory, no capacity limit.
    pub fn new() -> SimDisk {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        SimDisk {
            state: Rc::new(RefCell::new(State {
                boot: 0,
                capacity_bytes: None,
                power: Power::On,
                dirs,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                inodes: BTreeMap::new(),
                next_ino: 1,
                changes: 0,
            })),
        }
    }

    /// Limits the space files may use (`None`: unlimited). Files already
    /// past it keep their space; they cannot grow.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.borrow_mut().capacity_bytes = bytes;
    }

    /// Space the files use, as counted against the capacity.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }

    /// State-changing calls that succeeded so far (writes, syncs,
    /// allocations, creations, renames, unlinks).
    pub fn changes(&self) -> u64 {
        self.state.borrow().changes
    }

    /// After `changes` more state-changing calls succeed, every call fails
    /// with EIO until [`SimDisk::crash`].
    pub fn power_off_after(&self, changes: u64) {
        self.state.borrow_mut().power = Power::OffAfter(changes);
    }

    /// Whether the power went off (see [`SimDisk::power_off_after`]).
    pub fn is_powered_off(&self) -> bool {
        self.state.borrow().power == Power::Off
    }

    /// Crashes the machine: keeps what is durable and, at random, parts of
    /// what is not (see the module doc), turns the power back on, and kills
    /// every open handle.
    pub fn crash(&self, rng: &mut Rng) -> CrashReport {
        let mut state = self.state.borrow_mut();
        let mut report = CrashReport {
            names_undone: state
                .names
                .iter()
                .filter(|(p, ino)| state.durable_names.get(*p) != Some(*ino))
                .count() as u64
                + state
                    .durable_names
                    .keys()
                    .filter(|p| !state.names.contains_key(*p))
                    .count() as u64,
            ..CrashReport::default()
        };
        state.names = state.durable_names.clone();
        for inode in state.inodes.values_mut() {
            inode.open_handles = 0;
        }
        state.collect_garbage();
        for inode in state.inodes.values_mut() {
            report.effect.add(inode.media.crash(rng));
        }
        state.boot += 1;
        state.power = Power::On;
        report
    }

    /// Flips bit `bit` of the byte at `pos` of the file `path` (current
    /// name), in what is cached and what is durable alike: damage.
    pub fn flip_bit(&self, path: &Path, pos: u64, bit: u8) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let ino = *state.names.get(path).ok_or_else(|| err(libc::ENOENT))?;
        let media = state.media(ino);
        if pos >= media.size() || bit >= 8 {
            return Err(err(libc::EINVAL));
        }
        media.flip_bit(pos, bit);
        Ok(())
    }

    /// Garbles one unsynced sector version of one file (see
    /// `Media::garble_unsynced`): a bit flipped in a write that no
    /// `fdatasync` covered yet. Returns whether any file had one.
    pub fn garble_unsynced(&self, rng: &mut Rng) -> bool {
        let mut state = self.state.borrow_mut();
        let inos: Vec<_> = state
            .inodes
            .iter()
            .filter(|(_, i)| !i.media.is_synced())
            .map(|(ino, _)| *ino)
            .collect();
        if inos.is_empty() {
            return false;
        }
        let ino = inos[rng.index(inos.len())];
        state.media(ino).garble_unsynced(rng)
    }

    /// The durable bytes of the file a crash now would leave at `path`, as
    /// far as `fdatasync` and directory syncs guarantee them (unsynced
    /// writes may add to them in a crash): what a checker reads as "on
    /// disk". `None` if no durable name `path` exists.
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let ino = state.durable_names.get(path)?;
        Some(state.inode(*ino).media.durable_bytes())
    }

    /// As [`SimDisk::durable_bytes`], without the zeros past the last
    /// sector that holds data.
    pub fn durable_data(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let ino = state.durable_names.get(path)?;
        Some(state.inode(*ino).media.durable_data())
    }

    /// The first durable byte of the file at durable name `path` at or
    /// after `pos` that is not zero: `Ok(None)` if all are zeros (a checker
    /// asks this of the space past the last record), ENOENT if there is no
    /// such durable name.
    pub fn first_durable_nonzero(&self, path: &Path, pos: u64) -> io::Result<Option<u64>> {
        let state = self.state.borrow();
        let ino = state
            .durable_names
            .get(path)
            .ok_or_else(|| err(libc::ENOENT))?;
        Ok(state.inode(*ino).media.first_durable_nonzero(pos))
    }

    /// The bytes of the file at `path` as a read sees them now.
    pub fn bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let ino = state.names.get(path)?;
        let media = &state.inode(*ino).media;
        Some(media.read(0, media.size() as usize))
    }

    /// The names in `dir` a crash now would keep, sorted.
    pub fn durable_names_in(&self, dir: &Path) -> Vec<PathBuf> {
        let state = self.state.borrow();
        state
            .durable_names
            .keys()
            .filter(|p| parent(p) == dir)
            .cloned()
            .collect()
    }

    /// Whether every file and name is durable (a crash would change
    /// nothing).
    pub fn is_synced(&self) -> bool {
        let state = self.state.borrow();
        state.names == state.durable_names
            && state.inodes.values().all(|inode| inode.media.is_synced())
    }
}

/// A file of [`SimDisk`].
#[derive(Debug)]
pub struct SimFile {
    state: Rc<RefCell<State>>,
    ino: Ino,
    boot: u64,
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        if state.boot != self.boot {
            return;
        }
        if let Some(inode) = state.inodes.get_mut(&self.ino) {
            assert!(inode.open_handles > 0, "handle count");
            inode.open_handles -= 1;
        }
        state.collect_garbage();
    }
}

/// A write buffer of [`SimDisk`].
#[derive(Debug)]
pub struct SimBuffer(Vec<u8>);

impl Deref for SimBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for SimBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl DiskBuffer for SimBuffer {
    fn trim_to(&mut self, len: usize) {
        assert!(len <= self.0.len(), "trim past the buffer");
        self.0.truncate(len);
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let mut state = self.state.borrow_mut();
        state.begin(mode == OpenMode::CreateEmpty, None)?;
        if state.dirs.contains(path) {
            return Err(err(libc::EISDIR));
        }
        state.dir_must_exist(parent(path))?;
        let ino = match (state.names.get(path).copied(), mode) {
            (Some(ino), OpenMode::Existing) => ino,
            (Some(ino), OpenMode::CreateEmpty) => {
                state.media(ino).set_size(0);
                ino
            }
            (None, OpenMode::Existing) => return Err(err(libc::ENOENT)),
            (None, OpenMode::CreateEmpty) => {
                let ino = state.next_ino;
                state.next_ino += 1;
                state.inodes.insert(
                    ino,
                    Inode {
                        media: Media::default(),
                        open_handles: 0,
                    },
                );
                state.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        let inode = match state.inodes.get_mut(&ino) {
            Some(inode) => inode,
            None => unreachable!("a named inode is kept"),
        };
        inode.open_handles += 1;
        Ok(SimFile {
            state: self.state.clone(),
            ino,
            boot: state.boot,
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.begin(true, None)?;
        state.dir_must_exist(parent(to))?;
        let ino = state.names.remove(from).ok_or_else(|| err(libc::ENOENT))?;
        state.names.insert(to.to_path_buf(), ino);
        state.collect_garbage();
        Ok(())
    }

    async fn unlink(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.begin(true, None)?;
        state.names.remove(path).ok_or_else(|| err(libc::ENOENT))?;
        state.collect_garbage();
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.begin(true, None)?;
        state.dir_must_exist(dir)?;
        state.durable_names.retain(|p, _| parent(p) != dir);
        let entries: Vec<(PathBuf, Ino)> = state
            .names
            .iter()
            .filter(|(p, _)| parent(p) == dir)
            .map(|(p, ino)| (p.clone(), *ino))
            .collect();
        state.durable_names.extend(entries);
        state.collect_garbage();
        Ok(())
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let mut state = self.state.borrow_mut();
        state.begin(false, None)?;
        state.dir_must_exist(dir)?;
        let files = state.names.keys().filter(|p| parent(p) == dir);
        let dirs = state.dirs.iter().filter(|p| parent(p) == dir);
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    async fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.begin(true, None)?;
        if !dir.is_absolute() {
            return Err(err(libc::EINVAL));
        }
        for ancestor in dir.ancestors() {
            if state.names.contains_key(ancestor) {
                return Err(err(libc::ENOTDIR));
            }
        }
        let new: Vec<PathBuf> = dir.ancestors().map(Path::to_path_buf).collect();
        state.dirs.extend(new);
        Ok(())
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut state = self.state.borrow_mut();
        state.begin(false, None)?;
        Ok(state.names.contains_key(path) || state.dirs.contains(path))
    }
}

impl SimFile {
    /// Runs `f` on the file's state after the power and handle checks.
    fn with<T>(&self, changes: bool, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.borrow_mut();
        state.begin(changes, Some(self.boot))?;
        f(&mut state)
    }
}

impl DiskFile for SimFile {
    type Buffer = SimBuffer;
    type ReadBuf = Vec<u8>;

    fn alignment(&self) -> u64 {
        DIRECT_IO_ALIGN_BYTES
    }

    fn alloc_buffer(&self, len: usize) -> SimBuffer {
        SimBuffer(vec![BUFFER_JUNK_BYTE; len])
    }

    async fn write_at(&self, buf: SimBuffer, pos: u64) -> io::Result<usize> {
        let ino = self.ino;
        self.with(true, |state| {
            let len = buf.len() as u64;
            if !aligned(pos) || !aligned(len) {
                return Err(err(libc::EINVAL));
            }
            let size = state.inode(ino).media.size();
            state.check_space(ino, size.max(pos + len))?;
            state.media(ino).write(pos, &buf);
            Ok(buf.len())
        })
    }

    async fn read_at_aligned(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let ino = self.ino;
        self.with(false, |state| {
            if !aligned(pos) || !aligned(len as u64) {
                return Err(err(libc::EINVAL));
            }
            Ok(state.inode(ino).media.read(pos, len))
        })
    }

    async fn fdatasync(&self) -> io::Result<()> {
        let ino = self.ino;
        self.with(true, |state| {
            state.media(ino).sync();
            Ok(())
        })
    }

    async fn pre_allocate(&self, size: u64) -> io::Result<()> {
        let ino = self.ino;
        self.with(true, |state| {
            // fallocate(2) refuses a zero length.
            if size == 0 {
                return Err(err(libc::EINVAL));
            }
            if size > state.inode(ino).media.size() {
                state.check_space(ino, size)?;
                state.media(ino).set_size(size);
            }
            Ok(())
        })
    }

    async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()> {
        let ino = self.ino;
        self.with(true, |state| {
            if len == 0 {
                return Err(err(libc::EINVAL));
            }
            state.media(ino).zero(pos, len);
            Ok(())
        })
    }

    async fn size(&self) -> io::Result<u64> {
        let ino = self.ino;
        self.with(false, |state| Ok(state.inode(ino).media.size()))
    }

    async fn close(self: Rc<Self>) -> io::Result<()> {
        // Dropping the last handle closes it; a dead handle closes fine.
        Ok(())
    }
}

#[cfg(test)]
mod tests;
