//! What the host must give a node before it starts: a file system that
//! makes data durable, and enough locked memory for io_uring. Both are
//! refused at start with what to change, rather than found later as a
//! lost write or a shard that dies.

use std::path::{Path, PathBuf};

/// The locked memory (RLIMIT_MEMLOCK) each shard needs: glommio
/// registers its rings and buffers as locked memory. Measured on Linux
/// 6.x with glommio 0.9: one shard starts with 512 KiB and dies with
/// 256 KiB; twice the measured need leaves room for a kernel that
/// accounts more.
pub const LOCKED_BYTES_PER_SHARD_MIN: u64 = 1 << 20;

/// File systems whose files live in memory only: an fsync there makes
/// nothing survive a power cut or a reboot (values of statfs(2)'s
/// `f_type`).
const MEMORY_FILE_SYSTEMS: [(i64, &str); 2] = [(0x0102_1994, "tmpfs"), (0x8584_58f6, "ramfs")];

/// Why the host cannot run the node.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "data directory {path} is on {fs}, which keeps files in memory only: \
         acknowledged entries would not survive a reboot; put --data-dir on a disk"
    )]
    NotDurable { path: PathBuf, fs: &'static str },
    #[error(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {limit_kib} KiB; {shards} shard(s) need \
         at least {need_kib} KiB for their io_uring rings: raise it (`ulimit -l unlimited` in \
         the shell that starts the node, LimitMEMLOCK=infinity in its systemd unit, or memlock \
         in /etc/security/limits.conf)"
    )]
    LockedMemory {
        limit_kib: u64,
        need_kib: u64,
        shards: usize,
    },
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Refuses a data directory on a file system that lives in memory. The
/// directory is created if missing (as the node would).
pub fn check_durable(dir: &Path) -> Result<(), PreflightError> {
    let io = |source| PreflightError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let kind = fs_type(dir).map_err(io)?;
    match MEMORY_FILE_SYSTEMS.iter().find(|(magic, _)| *magic == kind) {
        Some((_, fs)) => Err(PreflightError::NotDurable {
            path: dir.to_path_buf(),
            fs,
        }),
        None => Ok(()),
    }
}

/// Refuses to start `shards` shards under a locked-memory limit they
/// cannot start with.
pub fn check_locked_memory(shards: usize) -> Result<(), PreflightError> {
    assert!(shards > 0, "a node has at least one shard");
    let need = LOCKED_BYTES_PER_SHARD_MIN.saturating_mul(shards as u64);
    match locked_memory_limit() {
        Some(limit) if limit < need => Err(PreflightError::LockedMemory {
            limit_kib: limit / 1024,
            need_kib: need / 1024,
            shards,
        }),
        _ => Ok(()),
    }
}

/// The soft RLIMIT_MEMLOCK in bytes; `None` when unlimited or unknown.
pub fn locked_memory_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

fn fs_type(dir: &Path) -> std::io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: statfs is plain old data; zeroed is a valid value of it.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call; `stat` is
    // written by the call only.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by target.
    Ok(stat.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_is_refused_and_a_disk_is_not() {
        let disk = tempfile::tempdir().expect("tempdir");
        check_durable(&disk.path().join("data")).expect("a disk-backed temp dir");
        // /dev/shm is tmpfs on every Linux with glibc's shm support; a
        // machine without it proves nothing here.
        let shm = Path::new("/dev/shm");
        if fs_type(shm).ok() == Some(0x0102_1994) {
            let dir = tempfile::tempdir_in(shm).expect("tempdir in /dev/shm");
            let refused = check_durable(dir.path()).expect_err("tmpfs refused");
            assert!(refused.to_string().contains("tmpfs"), "{refused}");
        }
    }

    #[test]
    fn the_locked_memory_need_grows_with_shards() {
        // Only the shape of the refusal: the process's own limit is the
        // test runner's.
        let e = PreflightError::LockedMemory {
            limit_kib: 64,
            need_kib: 2048,
            shards: 2,
        };
        assert!(e.to_string().contains("LimitMEMLOCK"), "{e}");
        if let Some(limit) = locked_memory_limit() {
            let too_many = (limit / LOCKED_BYTES_PER_SHARD_MIN + 1) as usize;
            assert!(check_locked_memory(too_many).is_err());
        }
    }
}
