//! A small file system of its own for a node: an ext4 image mounted on a
//! loop device over the node's data directory, and a filler that takes
//! nearly all its room (a full disk, for real). Needs root (mount); the
//! caller decides what to do without it ([`LoopDisk::mount`] says why it
//! could not).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An ext4 image mounted on a loop device; unmounted (lazily: a node may
/// still hold files there) when dropped, even if the caller panics.
#[derive(Debug)]
pub struct LoopDisk {
    pub point: PathBuf,
}

/// Bytes a filler allocates per call: large, so a disk fills in a few
/// calls, and small enough that the last one fails near the end.
const FILL_CHUNK_BYTES: u64 = 4 << 20;

impl LoopDisk {
    /// Makes an ext4 file system of `mib` MiB in the sparse file `image`
    /// and mounts it at `point` (created if needed; whatever it held is
    /// hidden while mounted).
    pub fn mount(image: &Path, point: &Path, mib: u64) -> Result<LoopDisk, String> {
        run(Command::new("truncate")
            .arg("-s")
            .arg(format!("{mib}M"))
            .arg(image))?;
        // -m 0: no blocks reserved for root, so a node (root here) sees the
        // same free space statvfs reports as available.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(image))?;
        std::fs::create_dir_all(point).map_err(|e| format!("{}: {e}", point.display()))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(point))?;
        Ok(LoopDisk {
            point: point.to_path_buf(),
        })
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Allocates a file `filler` in `dir` until its file system is out of
/// space, then gives `leave_free_bytes` back; durable. Returns its path
/// (delete it to free the room again).
pub fn fill(dir: &Path, leave_free_bytes: u64) -> std::io::Result<PathBuf> {
    let path = dir.join("filler");
    let f = File::create(&path)?;
    let mut allocated: u64 = 0;
    let mut chunk = FILL_CHUNK_BYTES;
    // Halve the chunk at each ENOSPC down to one block: the disk is full
    // to the block.
    while chunk >= 4096 {
        // SAFETY: a plain fallocate on a file this function owns.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, allocated as i64, chunk as i64) };
        if rc == 0 {
            allocated += chunk;
            continue;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOSPC) {
            return Err(err);
        }
        chunk /= 2;
    }
    f.set_len(allocated.saturating_sub(leave_free_bytes))?;
    f.sync_all()?;
    Ok(path)
}
