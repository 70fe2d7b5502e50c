//! Dropping the damaged entries of a sealed replica from its index, so a
//! repair can write them again (the heal; see `trilog_protocol::shard`'s
//! `heal` module for when).
//!
//! The bytes on disk stay as they are until the heal's flushes overwrite
//! them: a record is rewritten at the position it had (every correct copy
//! of an entry has the same size), and recovery never reads a sealed file
//! past its sealed length, so nothing stale is ever taken for an entry.
//! Like every step here it is begun, run and completed apart: the block
//! before the damage is read with no borrow held ([`RewindPlan::run`]),
//! then [`SegmentFile::rewind`] applies it without yielding.

use std::path::PathBuf;
use std::rc::Rc;

use super::disk::{Disk, FileOf};
use super::recover::read_tail;
use super::segment::SegmentFile;
use super::{SegmentKey, StorageError};

/// The read a rewind to entry `to` needs: the partial block before it.
#[derive(Debug)]
pub struct RewindPlan<D: Disk> {
    file: Rc<FileOf<D>>,
    path: PathBuf,
    key: SegmentKey,
    to: u64,
    pos: u64,
}

/// A rewind ready to apply: the index ends at entry `to`, at file
/// position `pos`, and `tail` holds the bytes of its partial block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewind {
    pub to: u64,
    pos: u64,
    tail: Vec<u8>,
}

impl<D: Disk> RewindPlan<D> {
    pub async fn run(self) -> Result<Rewind, StorageError> {
        let (tail, _) = read_tail(&*self.file, self.key, &self.path, self.pos).await?;
        Ok(Rewind {
            to: self.to,
            pos: self.pos,
            tail,
        })
    }
}

impl<D: Disk> SegmentFile<D> {
    /// The read a rewind to entry `to` needs. Requires a sealed segment
    /// with nothing staged or in flight (after a failed flush, what was
    /// staged is forgotten first), and `to` below its durable length.
    pub fn rewind_plan(&mut self, to: u64) -> RewindPlan<D> {
        self.absorb_failure();
        self.assert_rewindable(to);
        RewindPlan {
            file: self.data.clone(),
            path: self.data_path.clone(),
            key: self.key(),
            to,
            pos: self.positions[to as usize],
        }
    }

    /// Forgets entries `rewind.to` on (a sealed segment's damaged ones, or
    /// what a failed heal flush left): the next entry staged is
    /// `rewind.to` again, written where it was. The seal stays: entries
    /// staged below it are a heal (see [`SegmentFile::stage`]). A failed
    /// flush's mark is cleared: the durable entries are what they were
    /// (a failed flush never moves the durable length), the block before
    /// the rewound end was read back from the disk, and nothing is in
    /// flight.
    pub fn rewind(&mut self, rewind: Rewind) {
        self.absorb_failure();
        *self.failed.borrow_mut() = None;
        let key = self.key();
        self.assert_rewindable(rewind.to);
        assert_eq!(
            self.positions[rewind.to as usize], rewind.pos,
            "{key}: the index moved since the rewind was planned"
        );
        self.positions.truncate(rewind.to as usize + 1);
        self.durable_len = rewind.to;
        self.tail = rewind.tail;
        self.check_invariants();
    }

    fn assert_rewindable(&self, to: u64) {
        let key = self.key();
        assert!(
            self.ctl.state().sealed_len.is_some(),
            "{key}: rewind of an open segment"
        );
        assert!(
            self.staging.is_none() && self.in_flight.is_none(),
            "{key}: rewind with a flush to come"
        );
        assert!(
            to <= self.durable_len,
            "{key}: rewind to {to} past the durable length {}",
            self.durable_len
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::test_support::{
        flush, header, path_of, payload, read_range, run_local, stage, test_dir, write_ctl, Rng,
    };
    use crate::storage::{recover_dir, CtlState, GlommioDisk, SegmentFile};

    const ENTRIES: u64 = 40;

    #[test]
    fn a_rewound_sealed_segment_is_healed_in_place_and_recovers_whole() {
        let dir = test_dir();
        let path = path_of(&dir);
        let mut rng = Rng::new(11);
        // Odd sizes: records straddle blocks, so the rewind lands inside one.
        let sizes: Vec<usize> = (0..ENTRIES).map(|_| 1 + rng.below(3000) as usize).collect();
        let sealed = CtlState {
            fenced_epoch: 5,
            sealed_len: Some(ENTRIES),
            watermark: ENTRIES,
        };
        let p = path.clone();
        let s = sizes.clone();
        run_local(move || async move {
            let mut seg = SegmentFile::create(&GlommioDisk, &p, header(3))
                .await
                .expect("create");
            for o in 0..ENTRIES {
                stage(&mut seg, o, &payload(o, s[o as usize], 0));
            }
            flush(&mut seg).await;
            write_ctl(&mut seg, sealed).await;
            let rewind = seg.rewind_plan(17).run().await.expect("tail block");
            seg.rewind(rewind);
            assert_eq!((seg.durable_len(), seg.staged_len()), (17, 17));
            // The heal, in two flushes, with other commit fields than the
            // first time: the records keep their sizes and places.
            for o in 17..30 {
                stage(&mut seg, o, &payload(o, s[o as usize], 0));
            }
            assert_eq!(flush(&mut seg).await, 30);
            for o in 30..ENTRIES {
                stage(&mut seg, o, &payload(o, s[o as usize], 0));
            }
            assert_eq!(flush(&mut seg).await, ENTRIES);
            let got = read_range(&seg, 0, ENTRIES, 1 << 20).await;
            for (o, bytes) in got {
                assert_eq!(bytes, payload(o, s[o as usize], 0), "entry {o}");
            }
            seg.close().await.expect("close");
        });
        run_local(move || async move {
            let mut all = recover_dir(&GlommioDisk, &path).await.expect("recover");
            let r = all.pop().expect("the segment");
            assert_eq!((r.len, r.damage, r.ctl), (ENTRIES, None, sealed));
            let got = read_range(&r.file, 0, ENTRIES, 1 << 20).await;
            for (o, bytes) in got {
                assert_eq!(bytes, payload(o, sizes[o as usize], 0), "entry {o}");
            }
        });
    }
}
