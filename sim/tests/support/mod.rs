//! What the storage tests on the simulated disk share: a segment's header,
//! the begin/run/complete steps chained, reads checked record by record,
//! and the file positions records land at.

#![allow(dead_code)] // each test file uses its own part of this

use std::path::{Path, PathBuf};

use trilog_node::storage::{
    recover_dir, CtlState, Disk, Recovered, SegmentFile, SegmentHeader, StorageError,
    SEGMENT_HEADER_BYTES,
};
use trilog_sim::SimDisk;
use trilog_wire::record::{parse_records, RECORD_HEADER_BYTES};

pub fn dir() -> PathBuf {
    PathBuf::from("/data/shard-0")
}

/// A disk with the shard directory on it.
pub async fn new_disk() -> SimDisk {
    let disk = SimDisk::new();
    disk.create_dir(&dir()).await.expect("mkdir");
    disk
}

pub fn header(segment: u64) -> SegmentHeader {
    SegmentHeader {
        log_id: 0x1f,
        segment,
        first_seq: segment * 1000,
        epoch: 3,
    }
}

/// The commit field the tests give entry `offset`.
pub fn commit_of(offset: u64) -> u64 {
    offset / 2
}

/// A payload for entry `offset` of `len` bytes; `salt` tells apart two
/// payloads for the same offset.
pub fn payload(offset: u64, len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (offset.wrapping_mul(31).wrapping_add(i as u64 * 7) as u8) ^ salt)
        .collect()
}

pub fn stage<D: Disk>(seg: &mut SegmentFile<D>, offset: u64, payload: &[u8]) {
    seg.stage(offset, commit_of(offset), crc32c::crc32c(payload), payload);
}

/// begin, run, complete; returns the durable length.
pub async fn flush<D: Disk>(seg: &mut SegmentFile<D>) -> Result<u64, StorageError> {
    let job = seg.begin_flush().expect("something staged");
    let done = job.run().await?;
    Ok(seg.complete_flush(done))
}

/// begin, run, complete.
pub async fn write_ctl<D: Disk>(
    seg: &mut SegmentFile<D>,
    state: CtlState,
) -> Result<(), StorageError> {
    let write = seg.begin_ctl_write(state);
    write.run().await?;
    seg.complete_ctl_write(state);
    Ok(())
}

/// Reads `[from, to)` in reads of at most `max_bytes`; returns `(offset,
/// payload)` pairs, every record checked.
pub async fn read_range<D: Disk>(
    seg: &SegmentFile<D>,
    from: u64,
    to: u64,
    max_bytes: u32,
) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(plan) = seg.read_plan(at, to, max_bytes) {
        assert_eq!(plan.first_offset(), at);
        let (count, bytes) = plan.run().await?;
        assert!(count >= 1);
        let records = parse_records(&bytes, at, count).expect("records as sent");
        out.extend(records.into_iter().map(|(o, p)| (o, p.to_vec())));
        at += u64::from(count);
    }
    assert_eq!(at, to);
    Ok(out)
}

/// The file position just past the records with these payload lengths.
pub fn end_of(lens: impl IntoIterator<Item = usize>) -> u64 {
    SEGMENT_HEADER_BYTES
        + lens
            .into_iter()
            .map(|l| (RECORD_HEADER_BYTES + l) as u64)
            .sum::<u64>()
}

/// Recovers `dir` and expects at most one segment.
pub async fn recover_one<D: Disk>(
    disk: &D,
    dir: &Path,
) -> Result<Option<Recovered<D>>, StorageError> {
    let mut all = recover_dir(disk, dir).await?;
    assert!(all.len() <= 1, "one segment expected, found {}", all.len());
    Ok(all.pop())
}
