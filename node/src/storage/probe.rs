//! The glommio polled-I/O probe trap, and the way around it.
//!
//! glommio 0.9 decides whether a device supports polled I/O the first time
//! an executor thread opens a file on it with direct I/O: it reads the first
//! block of that file on the poll ring. If the file is empty the read
//! returns end-of-file without reaching the device, the probe takes that as
//! "supported", caches the answer for the thread and the device, and from
//! then on every direct read on that device fails with EOPNOTSUPP (os error
//! 95) while writes keep working. There is no builder option to turn the
//! poll ring off.
//!
//! The way around it: before any other direct open on the device, open a
//! file that has a non-empty first block, so the probe's read reaches the
//! device and gets the honest answer. [`avoid_poll_probe_trap`] does that
//! and then proves direct reads work by reading the block back. It must
//! run on every executor thread (the answer is cached per thread);
//! [`ensure_probed`] runs it once per thread and device and is called by
//! every open of [`super::GlommioDisk`], so storage cannot forget it.
//!
//! On a full disk the probe file cannot be written. Any other file whose
//! first block is non-empty serves as well: the probe then opens the
//! first segment or control file of the directory that is at least a
//! block long (read only; its first block was synced when it was made) and
//! checks a direct read of it against a buffered one. A node restarted on
//! a full disk so still recovers its segments and serves them. With no
//! such file the probe fails with the ENOSPC of its write, and is tried
//! again at the next open: nothing may open a direct file there before.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use glommio::io::DmaFile;

use super::error::is_no_space;
use super::glommio_disk::os_error;
use super::{StorageError, BLOCK_BYTES, CTL_SUFFIX, DATA_SUFFIX};

/// Byte the probe file is filled with: anything but zero.
const PROBE_FILL_BYTE: u8 = 0xa5;

/// Distinguishes the probe files of executors probing the same directory.
static PROBE_COUNTER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Devices (`st_dev`) this thread has probed.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Settles glommio's polled-I/O probe for the device of `dir` on the
/// calling executor thread, and checks that direct reads work there.
///
/// Call it in each executor before any other direct open on that device.
/// Writes a 4 KiB non-empty file with std::fs, opens it with
/// `DmaFile::open`, reads it back, closes it and deletes it. Fails with
/// [`StorageError::Probe`] if the direct read back does not return the bytes
/// written (for example because a direct open on that device already
/// happened on this thread and sprang the trap).
pub async fn avoid_poll_probe_trap(dir: &Path) -> Result<(), StorageError> {
    let n = PROBE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".trilog-probe-{}-{n}", std::process::id()));
    let dir_err = |op, source| StorageError::Dir {
        dir: dir.to_path_buf(),
        op,
        source,
    };
    let block = vec![PROBE_FILL_BYTE; BLOCK_BYTES as usize];
    match std::fs::write(&path, &block) {
        Ok(()) => {
            let checked = read_back(dir, &path, &block).await;
            let removed = std::fs::remove_file(&path).map_err(|e| dir_err("remove probe file", e));
            checked.and(removed)?;
        }
        Err(e) if is_no_space(&e) => {
            // A partial probe file must not stay behind.
            let _ = std::fs::remove_file(&path);
            probe_with_existing_file(dir, e).await?;
        }
        Err(e) => return Err(dir_err("write probe file", e)),
    }
    let dev = std::fs::metadata(dir)
        .map_err(|e| dir_err("stat", e))?
        .dev();
    PROBED_DEVICES.with(|set| set.borrow_mut().insert(dev));
    Ok(())
}

/// The probe on a full disk: see the module doc. `no_space` is the write
/// error returned when no file will do.
async fn probe_with_existing_file(
    dir: &Path,
    no_space: std::io::Error,
) -> Result<(), StorageError> {
    let candidate = std::fs::read_dir(dir)
        .map_err(|source| StorageError::Dir {
            dir: dir.to_path_buf(),
            op: "list (probe)",
            source,
        })?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.ends_with(DATA_SUFFIX) || n.ends_with(CTL_SUFFIX))
        })
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() >= BLOCK_BYTES));
    let Some(path) = candidate else {
        return Err(StorageError::Dir {
            dir: dir.to_path_buf(),
            op: "write probe file",
            source: no_space,
        });
    };
    let mut block = vec![0u8; BLOCK_BYTES as usize];
    let read = std::fs::File::open(&path).and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut block)
    });
    read.map_err(|source| StorageError::Dir {
        dir: dir.to_path_buf(),
        op: "read a file to probe with",
        source,
    })?;
    tracing::info!(
        "{}: no room for a probe file; probed with {}",
        dir.display(),
        path.display()
    );
    read_back(dir, &path, &block).await
}

/// Opens the probe file with direct I/O (this is what settles the probe)
/// and checks that a direct read returns its bytes.
async fn read_back(dir: &Path, path: &Path, expected: &[u8]) -> Result<(), StorageError> {
    let file = DmaFile::open(path).await.map_err(|e| StorageError::Dir {
        dir: dir.to_path_buf(),
        op: "open probe file",
        source: os_error(e),
    })?;
    let read = file.read_at_aligned(0, expected.len()).await;
    // The verdict is the read's; a failed close of a read-only file changes
    // nothing on disk.
    let _ = file.close().await;
    match read {
        Ok(bytes) if &bytes[..] == expected => Ok(()),
        Ok(bytes) => Err(StorageError::Probe {
            dir: dir.to_path_buf(),
            reason: format!(
                "direct read returned {} bytes that differ from the file",
                bytes.len()
            ),
        }),
        Err(e) => Err(StorageError::Probe {
            dir: dir.to_path_buf(),
            reason: os_error(e).to_string(),
        }),
    }
}

/// Runs [`avoid_poll_probe_trap`] for `dir` unless this thread already did
/// for `dir`'s device.
pub(super) async fn ensure_probed(dir: &Path) -> Result<(), StorageError> {
    let dev = std::fs::metadata(dir)
        .map_err(|source| StorageError::Dir {
            dir: dir.to_path_buf(),
            op: "stat",
            source,
        })?
        .dev();
    if PROBED_DEVICES.with(|set| set.borrow().contains(&dev)) {
        return Ok(());
    }
    avoid_poll_probe_trap(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{run_local, test_dir};
    use glommio::io::OpenOptions;

    #[test]
    fn direct_reads_work_after_the_probe() {
        let dir = test_dir();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            avoid_poll_probe_trap(&path).await.expect("probe");
            // The probe file is gone.
            let left: Vec<_> = std::fs::read_dir(&path).expect("read_dir").collect();
            assert!(left.is_empty(), "probe left {left:?}");

            // A new, empty file: exactly what would spring the trap had it
            // been the first direct open on this device.
            let file_path = path.join("data");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .dma_open(&file_path)
                .await
                .expect("open");
            let mut buf = file.alloc_dma_buffer(2 * BLOCK_BYTES as usize);
            for (i, b) in buf.as_bytes_mut().iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            let expected = buf.as_bytes().to_vec();
            let written = file.write_at(buf, 0).await.expect("write");
            assert_eq!(written, expected.len());
            let read = file
                .read_at_aligned(0, expected.len())
                .await
                .expect("direct read after the probe");
            assert_eq!(&read[..], &expected[..]);
            let tail = file
                .read_at_aligned(BLOCK_BYTES, BLOCK_BYTES as usize)
                .await
                .expect("read");
            assert_eq!(&tail[..], &expected[BLOCK_BYTES as usize..]);
            file.close().await.expect("close");

            // A second call on the same thread is harmless.
            ensure_probed(&path).await.expect("probe again");
        });
    }
}
