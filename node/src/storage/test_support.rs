//! What the storage tests share: an executor per test, a directory on a
//! real disk, deterministic payloads, and the begin/run/complete steps
//! chained for tests that hold the segment alone.

use std::future::Future;
use std::path::{Path, PathBuf};

use glommio::{BuilderErrorKind, GlommioError, LocalExecutorBuilder};
use trilog_wire::record::parse_records;

use super::{CtlState, Disk, SegmentFile, SegmentHeader};

/// Runs `f` on a fresh glommio executor thread (fresh per-thread probe
/// state, like a node's shard) and returns its result; a panic inside is
/// re-raised here.
pub(crate) fn run_local<G, F, T>(f: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handle = LocalExecutorBuilder::default()
        .spawn(f)
        .expect("spawn executor");
    match handle.join() {
        Ok(v) => v,
        Err(GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(panic))) => {
            std::panic::resume_unwind(panic)
        }
        Err(e) => panic!("executor failed: {e}"),
    }
}

/// A fresh directory on the disk that holds the target directory: direct
/// I/O needs a real filesystem (tmpfs such as /dev/shm has no O_DIRECT,
/// and /tmp is tmpfs on some machines).
pub(crate) fn test_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/storage-test-dirs");
    std::fs::create_dir_all(&base).expect("create test base dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

/// xorshift64*: deterministic, good enough to pick sizes.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The payload of entry `offset` in a test, of `len` bytes; `salt` tells
/// apart two payloads for the same offset.
pub(crate) fn payload(offset: u64, len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (offset.wrapping_mul(31).wrapping_add(i as u64 * 7) as u8) ^ salt)
        .collect()
}

/// The commit field tests give entry `offset`.
pub(crate) fn commit_of(offset: u64) -> u64 {
    offset / 2
}

pub(crate) fn header(segment: u64) -> SegmentHeader {
    SegmentHeader {
        log_id: 0x1f,
        segment,
        first_seq: segment * 1000,
        epoch: 3,
    }
}

pub(crate) fn stage<D: Disk>(seg: &mut SegmentFile<D>, offset: u64, payload: &[u8]) {
    seg.stage(offset, commit_of(offset), crc32c::crc32c(payload), payload);
}

/// begin, run, complete; returns the durable length.
pub(crate) async fn flush<D: Disk>(seg: &mut SegmentFile<D>) -> u64 {
    let job = seg.begin_flush().expect("something staged");
    let done = job.run().await.expect("flush");
    seg.complete_flush(done)
}

pub(crate) async fn write_ctl<D: Disk>(seg: &mut SegmentFile<D>, state: CtlState) {
    let write = seg.begin_ctl_write(state);
    write.run().await.expect("ctl write");
    seg.complete_ctl_write(state);
}

/// Reads `[from, to)` in reads of at most `max_bytes`, checking that each
/// read starts where the last ended; returns `(offset, payload)` pairs.
pub(crate) async fn read_range<D: Disk>(
    seg: &SegmentFile<D>,
    from: u64,
    to: u64,
    max_bytes: u32,
) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(plan) = seg.read_plan(at, to, max_bytes) {
        assert_eq!(plan.first_offset(), at);
        let (count, bytes) = plan.run().await.expect("read");
        assert!(count >= 1);
        assert!(
            count == 1 || bytes.len() <= max_bytes as usize,
            "read over max_bytes"
        );
        let records = parse_records(&bytes, at, count).expect("records as sent");
        out.extend(records.into_iter().map(|(o, p)| (o, p.to_vec())));
        at += u64::from(count);
    }
    assert_eq!(at, to);
    out
}

pub(crate) fn path_of(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}
