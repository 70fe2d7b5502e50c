//! Deleting a segment replica's files by name: what a trim or a log's
//! deletion does on each replica node.
//!
//! By name, not through an open [`super::SegmentFile`]: jobs of the segment
//! may still hold its files (they finish on their handles, and the space
//! comes back when the last one closes), and a delete must also clean up
//! after a crash that left only some of the files (a `.ctl` without its
//! `.seg`, which recovery skips, or a `.seg.creating`).

use std::io;
use std::path::Path;

use super::direct_file::sync_dir;
use super::error::io_error;
use super::{Disk, SegmentKey, StorageError};

/// Unlinks whichever of the segment's files exist (data first: without it
/// recovery ignores the segment), then syncs the directory so the
/// deletion is durable. Files already gone are fine: deleting is
/// idempotent. Returns how many files it unlinked.
pub async fn remove_segment_files<D: Disk>(
    disk: &D,
    dir: &Path,
    key: SegmentKey,
) -> Result<usize, StorageError> {
    let mut removed = 0;
    for path in [
        key.data_path(dir),
        key.creating_path(dir),
        key.ctl_path(dir),
    ] {
        match disk.unlink(&path).await {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(key, &path, "unlink", e)),
        }
    }
    // Synced even when nothing was unlinked here: an earlier attempt may
    // have unlinked the files and crashed (or failed) before its sync.
    sync_dir(disk, dir).await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{header, path_of, run_local, test_dir};
    use crate::storage::{GlommioDisk, SegmentFile};

    #[test]
    fn removes_every_file_and_is_idempotent() {
        let tmp = test_dir();
        let dir = path_of(&tmp);
        run_local(move || async move {
            let h = header(5);
            let key = h.key();
            let seg = SegmentFile::create(&GlommioDisk, &dir, h)
                .await
                .expect("create");
            assert!(key.data_path(&dir).exists() && key.ctl_path(&dir).exists());
            let removed = remove_segment_files(&GlommioDisk, &dir, key)
                .await
                .expect("remove");
            assert_eq!(removed, 2);
            assert!(!key.data_path(&dir).exists() && !key.ctl_path(&dir).exists());
            // The open handles still work until closed.
            seg.close().await.expect("close");
            let again = remove_segment_files(&GlommioDisk, &dir, key)
                .await
                .expect("remove again");
            assert_eq!(again, 0);
            // A crash that left only the control file.
            std::fs::write(key.ctl_path(&dir), b"x").expect("write");
            let orphan = remove_segment_files(&GlommioDisk, &dir, key)
                .await
                .expect("remove the orphan");
            assert_eq!(orphan, 1);
            assert!(std::fs::read_dir(&dir).expect("list").all(|e| {
                let name = e.expect("entry").file_name();
                !name.to_string_lossy().ends_with(".ctl")
            }));
        });
    }
}
