//! The state of a [`super::SimDisk`] shared by the disk and its files: the
//! names (current and durable), the inodes, the power, the capacity.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::media::Media;
use super::DIRECT_IO_ALIGN_BYTES;

pub(super) type Ino = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Power {
    On,
    /// Off after this many more state-changing calls.
    OffAfter(u64),
    Off,
}

#[derive(Debug)]
pub(super) struct Inode {
    pub(super) media: Media,
    /// Handles open on it (it keeps its space while open).
    pub(super) open_handles: u64,
}

#[derive(Debug)]
pub(super) struct State {
    /// Incremented by every crash: handles of an earlier boot are dead.
    pub(super) boot: u64,
    pub(super) capacity_bytes: Option<u64>,
    pub(super) power: Power,
    pub(super) dirs: BTreeSet<PathBuf>,
    pub(super) names: BTreeMap<PathBuf, Ino>,
    pub(super) durable_names: BTreeMap<PathBuf, Ino>,
    pub(super) inodes: BTreeMap<Ino, Inode>,
    pub(super) next_ino: Ino,
    /// State-changing calls that succeeded.
    pub(super) changes: u64,
}

pub(super) fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

pub(super) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

pub(super) fn aligned(v: u64) -> bool {
    v.is_multiple_of(DIRECT_IO_ALIGN_BYTES)
}

pub(super) fn allocated(size: u64) -> u64 {
    size.div_ceil(DIRECT_IO_ALIGN_BYTES) * DIRECT_IO_ALIGN_BYTES
}

impl State {
    /// Fails with EIO if the power is off; counts down to power off.
    fn check_power(&mut self, changes: bool) -> io::Result<()> {
        match self.power {
            Power::Off => Err(err(libc::EIO)),
            Power::OffAfter(0) => {
                self.power = Power::Off;
                Err(err(libc::EIO))
            }
            Power::OffAfter(n) if changes => {
                self.power = Power::OffAfter(n - 1);
                Ok(())
            }
            Power::OffAfter(_) | Power::On => Ok(()),
        }
    }

    /// Begins a call: the power is on and, for a call on a file, its handle
    /// is of this boot.
    pub(super) fn begin(&mut self, changes: bool, boot: Option<u64>) -> io::Result<()> {
        if boot.is_some_and(|b| b != self.boot) {
            return Err(err(libc::EBADF));
        }
        self.check_power(changes)?;
        if changes {
            self.changes += 1;
        }
        Ok(())
    }

    pub(super) fn dir_must_exist(&self, dir: &Path) -> io::Result<()> {
        if self.dirs.contains(dir) {
            Ok(())
        } else {
            Err(err(libc::ENOENT))
        }
    }

    pub(super) fn used_bytes(&self) -> u64 {
        let named: BTreeSet<Ino> = self.names.values().copied().collect();
        self.inodes
            .iter()
            .filter(|(ino, inode)| named.contains(ino) || inode.open_handles > 0)
            .map(|(_, inode)| allocated(inode.media.size()))
            .sum()
    }

    /// ENOSPC unless `ino` may grow to `new_size`.
    pub(super) fn check_space(&self, ino: Ino, new_size: u64) -> io::Result<()> {
        let Some(capacity) = self.capacity_bytes else {
            return Ok(());
        };
        let old = allocated(self.inode(ino).media.size());
        let new = allocated(new_size);
        if new > old && self.used_bytes() + (new - old) > capacity {
            return Err(err(libc::ENOSPC));
        }
        Ok(())
    }

    pub(super) fn inode(&self, ino: Ino) -> &Inode {
        match self.inodes.get(&ino) {
            Some(inode) => inode,
            None => unreachable!("inode {ino} of a live handle is kept"),
        }
    }

    pub(super) fn media(&mut self, ino: Ino) -> &mut Media {
        match self.inodes.get_mut(&ino) {
            Some(inode) => &mut inode.media,
            None => unreachable!("inode {ino} of a live handle is kept"),
        }
    }

    /// Drops inodes nothing refers to any more.
    pub(super) fn collect_garbage(&mut self) {
        let referenced: BTreeSet<Ino> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes
            .retain(|ino, inode| referenced.contains(ino) || inode.open_handles > 0);
    }
}
