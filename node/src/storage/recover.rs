//! Recovery of a shard's segment replicas after a restart or a crash.
//!
//! For each data file of the directory: check its header (a bad header is
//! an error naming the file, never a segment silently dropped), load its
//! control file, scan its records up to the first bad one or the seal
//! ([`super::scan`]), rebuild the index and the partial tail block, so the
//! next flush continues right after the last good record.
//!
//! Where the scan stopped is then judged ([`super::damage`]): a clean end,
//! a torn tail, or damage. Damage is reported in [`Recovered::damage`],
//! logged as an error, and nothing of the file is changed.
//!
//! Then, for a segment that is not sealed and not damaged (and so may take
//! appends), make
//! everything past the recovered end read as zeros again, durably: the rest
//! of the partial block the end lies in is rewritten with zeros if a torn
//! write left bytes there, and the blocks after it are punched and
//! preallocated anew. Without that, bytes of a write torn by the crash
//! could lie beyond the records appended after recovery, and a later
//! recovery could take them for records. The partial block matters as much
//! as the blocks after it: a disk tears writes at sector (512-byte)
//! boundaries, so the next flush's rewrite of that block can itself be torn
//! and leave a stale record of the first crash right behind a new one, in
//! sequence and with valid crcs (the simulator found this:
//! `stale_records_in_the_tail_block_never_come_back` in `trilog-sim`).
//!
//! Files that are not ours are ignored; a `.seg.creating` file, left by a
//! crash during [`SegmentFile::create`], never held acknowledged data and
//! is deleted.

use std::path::Path;
use std::rc::Rc;

use super::ctl::{CtlFile, CtlState};
use super::damage::{classify, Damage, Finding};
use super::direct_file::{open_direct, sync_dir, write_all_at};
use super::disk::{Disk, DiskFile, OpenMode};
use super::error::io_error;
use super::header::HeaderError;
use super::scan::{records_after, scan_records, After, ScanStop};
use super::{
    align_down, align_up, SegmentFile, SegmentHeader, SegmentKey, StorageError, BLOCK_BYTES,
    CREATING_SUFFIX, DATA_SUFFIX, SEGMENT_HEADER_BYTES,
};

/// A segment replica as recovery found it.
#[derive(Debug)]
pub struct Recovered<D: Disk> {
    /// Ready for reads and, unless sealed, appends at offset `len`.
    pub file: SegmentFile<D>,
    /// Entries recovered: `file.durable_len()`, at most the sealed length.
    pub len: u64,
    /// The largest commit field among the recovered records (0 if none).
    pub max_commit: u64,
    /// The durable control state.
    pub ctl: CtlState,
    /// Why the scan stopped where it did.
    pub stop: ScanStop,
    /// Damage found (entries from `damage.from` on are not held); `None`
    /// for a clean end or a torn tail.
    pub damage: Option<Damage>,
}

/// Recovers every segment replica in `dir` on `disk`, in key order.
pub async fn recover_dir<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<Recovered<D>>, StorageError> {
    let dir_err = |op, source| StorageError::Dir {
        dir: dir.to_path_buf(),
        op,
        source,
    };
    let mut keys = Vec::new();
    let mut removed_leftovers = false;
    for name in disk.list_dir(dir).await.map_err(|e| dir_err("read", e))? {
        let Some(name) = name.to_str() else { continue };
        if let Some(key) = SegmentKey::parse_file_name(name, DATA_SUFFIX) {
            keys.push(key);
        } else if SegmentKey::parse_file_name(name, CREATING_SUFFIX).is_some() {
            let path = dir.join(name);
            tracing::info!(
                "{}: removing a segment file whose creation did not finish",
                path.display()
            );
            disk.unlink(&path)
                .await
                .map_err(|e| dir_err("remove unfinished segment file", e))?;
            removed_leftovers = true;
        }
    }
    if removed_leftovers {
        sync_dir(disk, dir).await?;
    }
    keys.sort_unstable();
    let mut recovered = Vec::with_capacity(keys.len());
    for key in keys {
        let segment = recover_segment(disk, dir, key).await?;
        tracing::info!(
            "{key}: recovered {} entries, max commit {}, {:?}, stop {:?}",
            segment.len,
            segment.max_commit,
            segment.ctl,
            segment.stop
        );
        recovered.push(segment);
    }
    Ok(recovered)
}

async fn recover_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    key: SegmentKey,
) -> Result<Recovered<D>, StorageError> {
    let data_path = key.data_path(dir);
    let data = open_direct(disk, key, &data_path, OpenMode::Existing).await?;
    let header = read_header(&data, key, &data_path).await?;
    let ctl = CtlFile::open(disk, key, &key.ctl_path(dir)).await?;
    let state = ctl.state();
    let file_size = data
        .size()
        .await
        .map_err(|e| io_error(key, &data_path, "stat", e))?;
    let scanned = scan_records(&data, key, &data_path, file_size, state.sealed_len).await?;
    let len = scanned.positions.len() as u64 - 1;
    let end_pos = scanned.positions[len as usize];

    let after = if state.sealed_len.is_none() && scanned.stop.is_bad() {
        records_after(&data, key, &data_path, file_size, end_pos, len).await?
    } else {
        After::default()
    };
    let durable_point = after.max_commit.max(state.watermark);
    let finding = classify(len, &scanned.stop, state.sealed_len, durable_point);
    let damage = match finding {
        Finding::Damaged(damage) => {
            tracing::error!(
                "{key}: {}: DAMAGE: {} (scan stopped with {:?}; {} valid records after it, known durable up to {durable_point}): entries from offset {} on are not served (the segment should hold {:?}); the file is left as it is",
                data_path.display(),
                damage.why,
                scanned.stop,
                after.records,
                damage.from,
                damage.should_hold,
            );
            Some(damage)
        }
        Finding::Clean | Finding::TornTail => None,
    };

    let (tail, stale_in_tail_block) = read_tail(&data, key, &data_path, end_pos).await?;
    // Only a torn tail of an open segment is cleared for appends to come;
    // damage is evidence, and a damaged segment takes no more appends.
    if state.sealed_len.is_none() && damage.is_none() {
        let stale_tail = stale_in_tail_block.then_some(&tail[..]);
        clear_past_end(&data, key, &data_path, end_pos, stale_tail, file_size).await?;
    }

    let file = SegmentFile {
        disk: disk.clone(),
        header,
        dir: dir.to_path_buf(),
        data_path,
        data: Rc::new(data),
        ctl,
        positions: scanned.positions,
        durable_len: len,
        tail,
        staging: None,
        in_flight: None,
        allocated_bytes: align_down(file_size),
        failed: Rc::default(),
    };
    file.check_invariants();
    Ok(Recovered {
        file,
        len,
        max_commit: scanned.max_commit,
        ctl: state,
        stop: scanned.stop,
        damage,
    })
}

async fn read_header<F: DiskFile>(
    data: &F,
    key: SegmentKey,
    path: &Path,
) -> Result<SegmentHeader, StorageError> {
    let bad = |reason| StorageError::BadHeader {
        file: path.to_path_buf(),
        reason,
    };
    let block = data
        .read_at_aligned(0, SEGMENT_HEADER_BYTES as usize)
        .await
        .map_err(|e| io_error(key, path, "read header", e))?;
    let header = SegmentHeader::decode(&block).map_err(bad)?;
    if header.key() != key {
        return Err(bad(HeaderError::KeyMismatch {
            expected: key,
            found: header.key(),
        }));
    }
    Ok(header)
}

/// The bytes of the partial block before the recovered end `end_pos`
/// (empty when the end is block-aligned), and whether a torn write left
/// bytes other than zeros after them in that block.
pub(super) async fn read_tail<F: DiskFile>(
    data: &F,
    key: SegmentKey,
    path: &Path,
    end_pos: u64,
) -> Result<(Vec<u8>, bool), StorageError> {
    let tail_len = (end_pos - align_down(end_pos)) as usize;
    let mut tail = Vec::with_capacity(BLOCK_BYTES as usize);
    if tail_len == 0 {
        return Ok((tail, false));
    }
    // The file may end inside this block (a file cut short): only the
    // bytes up to the recovered end are needed.
    let block_pos = align_down(end_pos);
    let block = data
        .read_at_aligned(block_pos, BLOCK_BYTES as usize)
        .await
        .map_err(|e| io_error(key, path, "read tail block", e))?;
    if block.len() < tail_len {
        return Err(StorageError::ShortRead {
            segment: key,
            file: path.to_path_buf(),
            pos: block_pos,
            read: block.len(),
            expected: tail_len,
        });
    }
    tail.extend_from_slice(&block[..tail_len]);
    let stale = block[tail_len..].iter().any(|b| *b != 0);
    Ok((tail, stale))
}

/// Makes everything past the recovered end `end_pos` read as zeros,
/// durably, keeping the file allocated up to `file_size`. `stale_tail` is
/// the partial block's bytes before `end_pos` if bytes after them need
/// clearing: the block is then rewritten as those bytes and zeros. (A crash
/// during the rewrite leaves each sector old or new: the bytes before
/// `end_pos` are the same in both, those after are the old garbage or
/// zeros, so a later recovery stops at `end_pos` again.)
async fn clear_past_end<F: DiskFile>(
    data: &F,
    key: SegmentKey,
    path: &Path,
    end_pos: u64,
    stale_tail: Option<&[u8]>,
    file_size: u64,
) -> Result<(), StorageError> {
    let mut changed = false;
    if let Some(tail) = stale_tail {
        assert_eq!(
            tail.len() as u64,
            end_pos - align_down(end_pos),
            "{key}: tail and recovered end disagree"
        );
        let mut block = data.alloc_buffer(BLOCK_BYTES as usize);
        block[..tail.len()].copy_from_slice(tail);
        block[tail.len()..].fill(0);
        let pos = align_down(end_pos);
        write_all_at(data, key, path, "clear the tail block", block, pos).await?;
        changed = true;
    }
    let from = align_up(end_pos);
    if from < file_size {
        data.punch_hole(from, file_size - from)
            .await
            .map_err(|e| io_error(key, path, "punch hole past the recovered end", e))?;
        data.pre_allocate(file_size)
            .await
            .map_err(|e| io_error(key, path, "preallocate", e))?;
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    data.fdatasync()
        .await
        .map_err(|e| io_error(key, path, "fdatasync", e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use std::path::PathBuf;

    use trilog_wire::limits::ENTRY_BYTES_MAX;

    use super::*;
    use crate::storage::test_support::{
        commit_of, flush, header, path_of, payload, read_range, run_local, stage, test_dir,
        write_ctl, Rng,
    };
    use crate::storage::{GlommioDisk, SCAN_CHUNK_BYTES, STAGE_BYTES_INITIAL};

    async fn recover_one(dir: &Path) -> Recovered<GlommioDisk> {
        let mut all = recover_dir(&GlommioDisk, dir).await.expect("recover");
        assert_eq!(all.len(), 1, "one segment expected");
        all.pop().expect("one")
    }

    /// Reads `[from, to)` and checks each payload against `expect(offset)`.
    async fn check_range(
        seg: &SegmentFile<GlommioDisk>,
        from: u64,
        to: u64,
        expect: impl Fn(u64) -> Vec<u8>,
    ) {
        let got = read_range(seg, from, to, 256 * 1024).await;
        assert_eq!(got.len() as u64, to - from);
        for (offset, bytes) in got {
            assert!(bytes == expect(offset), "payload of {offset}");
        }
    }

    #[test]
    fn recovery_gives_back_what_was_flushed_and_appends_continue() {
        let dir = test_dir();
        let path = path_of(&dir);
        // Sizes by offset; every 40th entry is as large as an entry may be,
        // so records straddle the scan's chunks.
        fn size_of(o: u64) -> usize {
            if o % 40 == 39 {
                ENTRY_BYTES_MAX as usize
            } else {
                Rng::new(o + 1).below(9000) as usize
            }
        }
        let ctl = CtlState {
            fenced_epoch: 2,
            sealed_len: None,
            watermark: 77,
        };

        let p = path.clone();
        let (len, end) = run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(1))
                .await
                .expect("create");
            for o in 0..300 {
                stage(&mut seg, o, &payload(o, size_of(o), 0));
                if o % 7 == 6 {
                    flush(&mut seg).await;
                }
            }
            flush(&mut seg).await;
            write_ctl(&mut seg, ctl).await;
            // Staged but never flushed: lost in the "crash" below.
            for o in 300..303 {
                stage(&mut seg, o, &payload(o, size_of(o), 0));
            }
            let state = (seg.durable_len(), seg.positions[seg.durable_len() as usize]);
            drop(seg);
            state
        });
        assert_eq!(len, 300);
        assert!(end > 3 * SCAN_CHUNK_BYTES, "the scan must cross chunks");
        assert_ne!(
            end % BLOCK_BYTES,
            0,
            "the recovered end should be mid-block"
        );

        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(r.len, 300);
            assert_eq!(r.max_commit, commit_of(299));
            assert_eq!(r.ctl, ctl);
            assert_eq!(r.stop, ScanStop::CleanEnd);
            let mut seg = r.file;
            assert_eq!(seg.durable_len(), 300);
            assert_eq!(seg.staged_len(), 300);
            assert_eq!(seg.positions[300], end);
            assert!(!seg.has_staged());
            assert_eq!(seg.ctl(), ctl);
            check_range(&seg, 0, 300, |o| payload(o, size_of(o), 0)).await;
            // Appends continue right after the last record, mid-block.
            for o in 300..500 {
                stage(&mut seg, o, &payload(o, size_of(o), 0));
                if o % 5 == 4 {
                    flush(&mut seg).await;
                }
            }
            assert_eq!(seg.durable_len(), 500);
            seg.close().await.expect("close");
        });

        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(
                (r.len, r.max_commit, r.stop.clone()),
                (500, commit_of(499), ScanStop::CleanEnd)
            );
            check_range(&r.file, 0, 500, |o| payload(o, size_of(o), 0)).await;
        });
    }

    #[test]
    fn a_torn_tail_stops_recovery_at_the_first_bad_record() {
        let dir = test_dir();
        let path = path_of(&dir);
        let old_size = |o: u64| 1000 + (o as usize * 37) % 2000;
        let new_size = |o: u64| 10 + (o as usize * 53) % 3000;

        let p = path.clone();
        let (data_path, positions) = run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(2))
                .await
                .expect("create");
            for o in 0..40 {
                stage(&mut seg, o, &payload(o, old_size(o), 0));
                if o % 3 == 2 {
                    flush(&mut seg).await;
                }
            }
            flush(&mut seg).await;
            let out = (seg.data_path().to_path_buf(), seg.positions.clone());
            seg.close().await.expect("close");
            out
        });

        // Tear the last record in the middle of its payload.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .expect("open");
        f.write_all_at(&[0x5a; 8], positions[39] + 32 + 400)
            .expect("corrupt");
        f.sync_all().expect("sync");
        drop(f);

        let p = path.clone();
        let dp = data_path.clone();
        let old_end = positions[40];
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(r.len, 39);
            assert_eq!(r.damage, None, "a torn tail is not damage");
            assert_eq!(
                r.stop,
                ScanStop::Corrupt {
                    offset: 39,
                    reason: "record payload crc mismatch"
                }
            );
            assert_eq!(r.max_commit, commit_of(38));
            // Everything past the recovered end reads as zeros, the torn
            // record's bytes in the block of that end included.
            let bytes = std::fs::read(&dp).expect("read");
            let zero_from = positions[39] as usize;
            assert_ne!(
                zero_from % BLOCK_BYTES as usize,
                0,
                "the end should be mid-block"
            );
            assert!(
                bytes[zero_from..old_end as usize].iter().all(|b| *b == 0),
                "stale bytes left"
            );

            let mut seg = r.file;
            check_range(&seg, 0, 39, |o| payload(o, old_size(o), 0)).await;
            for o in 39..60 {
                stage(&mut seg, o, &payload(o, new_size(o), 1));
                if o % 4 == 1 {
                    flush(&mut seg).await;
                }
            }
            flush(&mut seg).await;
            seg.close().await.expect("close");
        });

        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!((r.len, r.stop.clone()), (60, ScanStop::CleanEnd));
            assert_eq!(r.max_commit, commit_of(59));
            check_range(&r.file, 0, 39, |o| payload(o, old_size(o), 0)).await;
            check_range(&r.file, 39, 60, |o| payload(o, new_size(o), 1)).await;
        });
    }

    /// Writes `n` records of `size` bytes to segment `segment`, then the
    /// control state `ctl` if given (and its seal); returns the data file
    /// and the record positions.
    fn write_segment(
        dir: &Path,
        segment: u64,
        n: u64,
        size: usize,
        ctl: Option<CtlState>,
    ) -> (PathBuf, Vec<u64>) {
        let p = dir.to_path_buf();
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(segment))
                .await
                .expect("create");
            for o in 0..n {
                stage(&mut seg, o, &payload(o, size, 0));
                if o % 4 == 3 {
                    flush(&mut seg).await;
                }
            }
            if seg.has_staged() {
                flush(&mut seg).await;
            }
            if let Some(state) = ctl {
                write_ctl(&mut seg, state).await;
                if let Some(len) = state.sealed_len {
                    seg.seal_truncate(len);
                }
            }
            let out = (seg.data_path().to_path_buf(), seg.positions.clone());
            seg.close().await.expect("close");
            out
        })
    }

    fn flip_byte(path: &Path, pos: u64) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, pos).expect("read");
        f.write_all_at(&[b[0] ^ 0x10], pos).expect("flip");
        f.sync_all().expect("sync");
    }

    fn sealed_at(len: u64) -> Option<CtlState> {
        Some(CtlState {
            fenced_epoch: 1,
            sealed_len: Some(len),
            watermark: len,
        })
    }

    #[test]
    fn a_bad_record_below_the_known_watermark_is_damage_and_the_file_is_kept() {
        let dir = test_dir();
        let path = path_of(&dir);
        // A fence persisted watermark 35: entries below it were durable.
        let fenced = CtlState {
            fenced_epoch: 2,
            sealed_len: None,
            watermark: 35,
        };
        let (data_path, positions) = write_segment(&path, 1, 40, 1500, Some(fenced));
        flip_byte(&data_path, positions[20] + 32 + 100);
        let before = std::fs::read(&data_path).expect("read");
        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(r.len, 20);
            let damage = r.damage.expect("damage found");
            assert_eq!((damage.from, damage.should_hold), (20, None));
            check_range(&r.file, 0, 20, |o| payload(o, 1500, 0)).await;
        });
        let after = std::fs::read(&data_path).expect("read");
        assert!(before == after, "recovery changed a damaged file");
    }

    #[test]
    fn a_bad_record_below_the_seal_is_damage_even_at_the_end() {
        let dir = test_dir();
        let path = path_of(&dir);
        // The last record below the seal: nothing valid follows it, but the
        // seal says it was durable.
        let (data_path, positions) = write_segment(&path, 2, 12, 900, sealed_at(12));
        flip_byte(&data_path, positions[11] + 40);
        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(r.len, 11);
            let damage = r.damage.expect("damage found");
            assert_eq!((damage.from, damage.should_hold), (11, Some(12)));
            check_range(&r.file, 0, 11, |o| payload(o, 900, 0)).await;
        });
    }

    #[test]
    fn a_group_commit_torn_out_of_order_is_a_torn_tail() {
        let dir = test_dir();
        let path = path_of(&dir);
        // Valid records follow the bad one, but nothing says it was
        // durable (their commit fields stay below it): the last group
        // commit, torn with a later sector on disk and an earlier not.
        let (data_path, positions) = write_segment(&path, 4, 40, 1500, None);
        flip_byte(&data_path, positions[30] + 32 + 100);
        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!((r.len, r.damage), (30, None));
        });
        let bytes = std::fs::read(&data_path).expect("read");
        assert!(
            bytes[positions[30] as usize..positions[40] as usize]
                .iter()
                .all(|b| *b == 0),
            "a torn tail is cleared"
        );
    }

    #[test]
    fn a_sealed_file_cut_short_is_damage() {
        let dir = test_dir();
        let path = path_of(&dir);
        let (data_path, positions) = write_segment(&path, 3, 30, 2000, sealed_at(30));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .expect("open");
        f.set_len(positions[17] + 100).expect("truncate");
        drop(f);
        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(
                (r.len, r.stop.clone()),
                (17, ScanStop::Truncated { offset: 17 })
            );
            let damage = r.damage.expect("damage found");
            assert_eq!((damage.from, damage.should_hold), (17, Some(30)));
            check_range(&r.file, 0, 17, |o| payload(o, 2000, 0)).await;
        });
        assert_eq!(
            std::fs::metadata(&data_path).expect("stat").len(),
            positions[17] + 100,
            "the file was changed"
        );
    }

    #[test]
    fn a_record_cut_by_the_end_of_the_file_is_truncated() {
        let dir = test_dir();
        let path = path_of(&dir);
        let p = path.clone();
        let (data_path, cut) = run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(3))
                .await
                .expect("create");
            for o in 0..5 {
                stage(&mut seg, o, &payload(o, 3000, 0));
            }
            flush(&mut seg).await;
            let out = (seg.data_path().to_path_buf(), seg.positions[4] + 40);
            seg.close().await.expect("close");
            out
        });
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .expect("open");
        f.set_len(cut).expect("truncate");
        drop(f);

        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(
                (r.len, r.stop.clone()),
                (4, ScanStop::Truncated { offset: 4 })
            );
            let mut seg = r.file;
            // The file ends inside the block of the last record.
            check_range(&seg, 0, 4, |o| payload(o, 3000, 0)).await;
            // The file is now shorter than a preallocation chunk: the next
            // flush must extend it.
            for o in 4..40 {
                stage(&mut seg, o, &payload(o, 3000, 2));
            }
            assert!(seg.staged_bytes() > STAGE_BYTES_INITIAL);
            flush(&mut seg).await;
            seg.close().await.expect("close");
        });

        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!((r.len, r.stop.clone()), (40, ScanStop::CleanEnd));
            check_range(&r.file, 0, 4, |o| payload(o, 3000, 0)).await;
            check_range(&r.file, 4, 40, |o| payload(o, 3000, 2)).await;
        });
    }

    #[test]
    fn recovery_honours_the_sealed_length() {
        let dir = test_dir();
        let path = path_of(&dir);
        let sealed = CtlState {
            fenced_epoch: 3,
            sealed_len: Some(6),
            watermark: 5,
        };
        let p = path.clone();
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(4))
                .await
                .expect("create");
            for o in 0..10 {
                stage(&mut seg, o, &payload(o, 500, 0));
            }
            flush(&mut seg).await;
            write_ctl(&mut seg, sealed).await;
            seg.seal_truncate(6);
            assert_eq!((seg.durable_len(), seg.staged_len()), (6, 6));
            check_range(&seg, 0, 6, |o| payload(o, 500, 0)).await;
            seg.close().await.expect("close");
        });

        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!(r.len, 6);
            assert_eq!(r.ctl, sealed);
            assert_eq!(r.stop, ScanStop::CleanEnd);
            assert_eq!(
                r.max_commit,
                commit_of(5),
                "commit of an entry past the seal counted"
            );
            assert_eq!(r.file.staged_len(), 6);
            check_range(&r.file, 0, 6, |o| payload(o, 500, 0)).await;
        });
    }

    #[test]
    fn a_seal_above_the_flushed_length_keeps_the_staged_entries_below_it() {
        let dir = test_dir();
        let path = path_of(&dir);
        let p = path.clone();
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(5))
                .await
                .expect("create");
            for o in 0..6 {
                stage(&mut seg, o, &payload(o, 700, 0));
            }
            flush(&mut seg).await;
            for o in 6..10 {
                stage(&mut seg, o, &payload(o, 700, 0));
            }
            let sealed = CtlState {
                sealed_len: Some(8),
                ..CtlState::default()
            };
            write_ctl(&mut seg, sealed).await;
            seg.seal_truncate(8);
            assert_eq!((seg.durable_len(), seg.staged_len()), (6, 8));
            assert!(seg.has_staged());
            assert_eq!(flush(&mut seg).await, 8);
            seg.close().await.expect("close");
        });
        let p = path.clone();
        run_local(move || async move {
            let r = recover_one(&p).await;
            assert_eq!((r.len, r.stop.clone()), (8, ScanStop::CleanEnd));
            check_range(&r.file, 0, 8, |o| payload(o, 700, 0)).await;
        });
    }

    #[test]
    fn a_bad_header_is_an_error_naming_the_file() {
        let dir = test_dir();
        let path = path_of(&dir);
        let p = path.clone();
        let data_paths: Vec<PathBuf> = run_local(move || async move {
            let mut out = Vec::new();
            for segment in [1, 2] {
                let mut seg = SegmentFile::create(&GlommioDisk, &p, header(segment))
                    .await
                    .expect("create");
                stage(&mut seg, 0, b"one");
                flush(&mut seg).await;
                out.push(seg.data_path().to_path_buf());
                seg.close().await.expect("close");
            }
            out
        });
        // Files that are not segments are left alone; an unfinished create
        // is cleaned up.
        for name in ["notes.txt", "abc.seg", "000000000000001f-zz.seg"] {
            std::fs::write(path.join(name), b"not a segment").expect("write");
        }
        let creating = header(3).key().creating_path(&path);
        std::fs::write(&creating, b"half made").expect("write");
        let p = path.clone();
        let found = run_local(move || async move {
            let all = recover_dir(&GlommioDisk, &p).await.expect("recover");
            all.iter()
                .map(|r| (r.file.key().segment, r.len))
                .collect::<Vec<_>>()
        });
        assert_eq!(found, vec![(1, 1), (2, 1)]);
        assert!(!creating.exists(), "unfinished create left behind");
        assert!(path.join("notes.txt").exists() && path.join("abc.seg").exists());

        // A damaged header: an error that names the file.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&data_paths[1])
            .expect("open");
        f.write_all_at(&[0x77], 21).expect("corrupt");
        f.sync_all().expect("sync");
        drop(f);
        let p = path.clone();
        let err = run_local(move || async move {
            recover_dir(&GlommioDisk, &p)
                .await
                .map(|v| v.len())
                .expect_err("bad header accepted")
        });
        assert!(
            matches!(&err, StorageError::BadHeader { file, reason: HeaderError::CrcMismatch { .. } } if file == &data_paths[1]),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&data_paths[1].display().to_string()),
            "{err}"
        );

        // A valid header under another segment's name.
        std::fs::remove_file(&data_paths[1]).expect("remove");
        let key9 = header(9).key();
        std::fs::copy(&data_paths[0], key9.data_path(&path)).expect("copy");
        std::fs::copy(header(1).key().ctl_path(&path), key9.ctl_path(&path)).expect("copy");
        let p = path.clone();
        let err = run_local(move || async move {
            recover_dir(&GlommioDisk, &p)
                .await
                .map(|v| v.len())
                .expect_err("misnamed file accepted")
        });
        assert!(
            matches!(&err, StorageError::BadHeader { file, reason: HeaderError::KeyMismatch { .. } } if file == &key9.data_path(&path)),
            "{err:?}"
        );
    }

    #[test]
    fn create_refuses_an_existing_segment_and_remove_deletes_both_files() {
        let dir = test_dir();
        let path = path_of(&dir);
        let p = path.clone();
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(1))
                .await
                .expect("create");
            stage(&mut seg, 0, b"x");
            flush(&mut seg).await;
            let again = SegmentFile::create(&GlommioDisk, &p, header(1))
                .await
                .map(|s| s.key());
            assert!(
                matches!(again, Err(StorageError::AlreadyExists { .. })),
                "{again:?}"
            );
            let files = [seg.data_path().to_path_buf(), header(1).key().ctl_path(&p)];
            assert!(files.iter().all(|f| f.exists()));
            seg.remove().await.expect("remove");
            assert!(files.iter().all(|f| !f.exists()), "files left after remove");
            assert!(recover_dir(&GlommioDisk, &p)
                .await
                .expect("recover")
                .is_empty());
        });
    }
}
