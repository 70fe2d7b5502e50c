//! The node's free space and its read-only mode on a full disk.
//!
//! One thread per node measures the file system of the data directory
//! (statvfs) every [`SPACE_CHECK_INTERVAL_MS`] and feeds
//! `trilog_protocol::space::SpaceGauge`, which decides the mode; the shards
//! report every allocation that failed for space ([`NodeSpace::no_space`]),
//! which turns the node read-only at once. The outcome sits in a few
//! atomics ([`NodeSpace`]) that the shards read before each request that
//! could write (`ShardMachine::set_read_only`) and the registration reads
//! for the store (`bytes_used`, `bytes_free`, `full`). Atomics rather than
//! messages: the value is one flag and two counters, read far more often
//! than it changes, and a stale read only refuses or takes one more
//! request, which the failed-allocation path covers.
//!
//! The first measurement is made before the shards start, so a node
//! started on a full disk is read-only from its first request.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use trilog_protocol::space::DISK_RESERVE_BYTES_DEFAULT;
use trilog_protocol::space::{SpaceGauge, SpaceMode, SPACE_CHECK_INTERVAL_MS};
use trilog_wire::meta::NodeInfo;

/// A file system's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub bytes_total: u64,
    pub bytes_used: u64,
    /// What an unprivileged writer may still allocate (`f_bavail`): root's
    /// reserved blocks are not counted, so the node never relies on them.
    pub bytes_free: u64,
}

/// statvfs of the file system holding `path`.
// The casts: the field types (`c_ulong`, `fsblkcnt_t`) are u64 here but
// u32 on some targets.
#[allow(clippy::unnecessary_cast)]
pub fn disk_usage(path: &Path) -> io::Result<DiskUsage> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call;
    // `st` is written by statvfs when it returns 0 and read only then.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let unit = st.f_frsize as u64;
    let blocks = st.f_blocks as u64;
    let free_all = (st.f_bfree as u64).min(blocks);
    let avail = (st.f_bavail as u64).min(free_all);
    Ok(DiskUsage {
        bytes_total: blocks.saturating_mul(unit),
        bytes_used: (blocks - free_all).saturating_mul(unit),
        bytes_free: avail.saturating_mul(unit),
    })
}

/// The node's space state, shared by its shards, its monitor thread and
/// its registration: see the module doc.
#[derive(Debug, Default)]
pub struct NodeSpace {
    full: AtomicBool,
    /// The store says an operator decommissions this node: read-only like
    /// a full disk (but not reported as full: the disk is fine).
    leaving: AtomicBool,
    bytes_used: AtomicU64,
    bytes_free: AtomicU64,
    /// A shard's allocation failed for space since the monitor last looked.
    no_space_seen: AtomicBool,
}

impl NodeSpace {
    /// Whether the node is read-only.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Whether the node is leaving the cluster (see the field).
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// The registration learnt the node's mode: leaving or not.
    pub fn set_leaving(&self, leaving: bool) {
        self.leaving.store(leaving, Ordering::Release);
    }

    /// An allocation failed for space: read-only now, until the monitor's
    /// gauge says enough was freed.
    pub fn no_space(&self) {
        self.no_space_seen.store(true, Ordering::Release);
        self.full.store(true, Ordering::Release);
    }

    /// Bytes used and free on the data directory's file system, as last
    /// measured.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.bytes_used.load(Ordering::Acquire),
            self.bytes_free.load(Ordering::Acquire),
        )
    }

    /// Sets the registration's space fields to what was last measured.
    pub fn refresh(&self, info: &mut NodeInfo) {
        info.bytes_used = self.bytes_used.load(Ordering::Acquire);
        info.bytes_free = self.bytes_free.load(Ordering::Acquire);
        info.full = self.is_full();
    }

    fn publish(&self, usage: DiskUsage, mode: SpaceMode) {
        self.bytes_used.store(usage.bytes_used, Ordering::Release);
        self.bytes_free.store(usage.bytes_free, Ordering::Release);
        // A failure reported after the gauge looked keeps the node
        // read-only until the next measurement takes it in.
        let full = mode == SpaceMode::ReadOnly || self.no_space_seen.load(Ordering::Acquire);
        self.full.store(full, Ordering::Release);
    }
}

/// The thread measuring the node's disk. Dropping it stops the thread
/// (within one interval; it is not joined).
#[derive(Debug)]
pub struct SpaceMonitor {
    pub space: Arc<NodeSpace>,
    stop: Arc<AtomicBool>,
    _thread: Option<JoinHandle<()>>,
}

impl Drop for SpaceMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Measures `dir` once (the node starts read-only if its disk is full:
/// logged at `warn`), then every [`SPACE_CHECK_INTERVAL_MS`] on a thread.
pub fn start_monitor(node_id: u64, dir: PathBuf, reserve_bytes: u64) -> io::Result<SpaceMonitor> {
    let space = Arc::new(NodeSpace::default());
    let mut gauge = SpaceGauge::new(reserve_bytes);
    let usage = disk_usage(&dir)?;
    let mode = gauge.observe(usage.bytes_free);
    space.publish(usage, mode);
    if mode == SpaceMode::ReadOnly {
        tracing::warn!(
            "node {node_id}: {} has {} bytes free, below the reserve of {reserve_bytes}: \
             starting read-only (reads, seals and deletes only)",
            dir.display(),
            usage.bytes_free
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread_space = space.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("trilog-space-{node_id}"))
        .spawn(move || run(node_id, &dir, gauge, &thread_space, &thread_stop))?;
    Ok(SpaceMonitor {
        space,
        stop,
        _thread: Some(thread),
    })
}

fn run(node_id: u64, dir: &Path, mut gauge: SpaceGauge, space: &NodeSpace, stop: &AtomicBool) {
    let mut mode = gauge.mode();
    let mut failing = false;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(SPACE_CHECK_INTERVAL_MS));
        if space.no_space_seen.swap(false, Ordering::AcqRel) {
            let _ = gauge.on_no_space();
        }
        let usage = match disk_usage(dir) {
            Ok(u) => u,
            Err(e) => {
                if !failing {
                    tracing::error!("node {node_id}: statvfs {}: {e}", dir.display());
                }
                failing = true;
                continue;
            }
        };
        failing = false;
        let now = gauge.observe(usage.bytes_free);
        space.publish(usage, now);
        if now != mode {
            match now {
                SpaceMode::ReadOnly => tracing::warn!(
                    "node {node_id}: disk full ({} bytes free, reserve {}): read-only; \
                     reads, seals and deletes go on",
                    usage.bytes_free,
                    gauge.reserve_bytes()
                ),
                SpaceMode::Writable => tracing::info!(
                    "node {node_id}: {} bytes free again: writable",
                    usage.bytes_free
                ),
            }
            mode = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_of_a_temp_dir_is_sane() {
        let dir = tempfile::tempdir().expect("tempdir");
        let u = disk_usage(dir.path()).expect("statvfs");
        assert!(u.bytes_total > 0);
        assert!(u.bytes_used <= u.bytes_total);
        assert!(u.bytes_free <= u.bytes_total - u.bytes_used);
        assert!(disk_usage(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_failed_allocation_is_full_at_once_and_registered() {
        let space = NodeSpace::default();
        let usage = DiskUsage {
            bytes_total: 100,
            bytes_used: 10,
            bytes_free: 90,
        };
        space.publish(usage, SpaceMode::Writable);
        assert!(!space.is_full());
        space.no_space();
        assert!(space.is_full());
        // A measurement made before the monitor took the failure in keeps
        // the node read-only.
        space.publish(usage, SpaceMode::Writable);
        assert!(space.is_full());
        let mut info = NodeInfo {
            node_id: 1,
            host: String::new(),
            shard_ports: vec![],
            zone: String::new(),
            capacity_bytes: 0,
            incarnation: 1,
            bytes_used: 0,
            bytes_free: 0,
            full: false,
        };
        space.refresh(&mut info);
        assert_eq!(
            (info.bytes_used, info.bytes_free, info.full),
            (10, 90, true)
        );
    }

    #[test]
    fn a_monitor_on_a_roomy_disk_starts_writable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let monitor = start_monitor(1, dir.path().to_path_buf(), 0).expect("starts");
        assert!(!monitor.space.is_full());
        let always = start_monitor(2, dir.path().to_path_buf(), u64::MAX).expect("starts");
        assert!(always.space.is_full(), "no disk has u64::MAX bytes free");
    }
}
