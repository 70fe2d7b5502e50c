//! The control file of a segment replica: its fence, its seal and its
//! watermark, durable across crashes.
//!
//! A replica must never answer a fence or a seal it could forget, so these
//! few numbers live in their own small file, written in place with direct
//! I/O and an fdatasync before the write's future resolves. The file has two
//! slots of [`CTL_SLOT_BYTES`]: write number `g` (its *generation*) goes to
//! slot `g % 2`, so a write torn by a crash can only damage the slot being
//! written, and the other slot still holds the previous durable state.
//! Recovery takes the valid slot with the highest generation.
//!
//! Slot layout, integers little-endian:
//!
//! ```text
//! offset size field
//!  0     8    magic        "TRILOGCT"
//!  8     4    version      1
//! 12     4    flags        bit 0: sealed; other bits zero
//! 16     8    generation   >= 1; slot index == generation % 2
//! 24     8    log_id
//! 32     8    segment
//! 40     8    fenced_epoch
//! 48     8    sealed_len   0 unless sealed
//! 56     8    watermark
//! 64     4    crc          crc32c of bytes 0..64
//! 68   4028   zero
//! ```
//!
//! Loading, per slot: all zeros is *empty* (never written); a bad magic or
//! crc is *torn*; a valid crc with contents that do not fit (another
//! segment's key, the wrong slot for its generation, unknown flags or
//! version) is an error, since no crash produces it. Both slots empty, or
//! one empty and one torn (the very first write was torn), give the default
//! state. Both torn is an error rather than the default state: one crash
//! tears at most one slot, so this is damage beyond what the format
//! protects against, and quietly forgetting a fence could let an old
//! producer commit again.
//!
//! **Writes are sequential, by construction.** [`CtlFile::begin_write`]
//! takes `&mut self`, hands out the next generation and panics if another
//! write is pending; the generation only advances in
//! [`CtlFile::complete_write`], which takes `&mut self` too and accepts
//! only a write that succeeded. A [`CtlWrite`] reports its own fate through
//! a cell it shares with the file: a write that fails, or is dropped before
//! it finishes, releases the file by itself, and the next write reuses its
//! generation, so a retry goes to the same slot and the slot holding the
//! last durable state is never the one overwritten. Two concurrent writes
//! could tear both slots; they panic instead.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::direct_file::{open_direct, read_exact_aligned, write_all_at};
use super::disk::{BufferOf, Disk, DiskFile, FileOf, OpenMode};
use super::error::io_error;
use super::header::{u32_at, u64_at};
use super::{SegmentKey, StorageError};

/// One slot of the control file.
pub const CTL_SLOT_BYTES: u64 = 4096;
/// The whole control file: two slots.
pub const CTL_FILE_BYTES: u64 = 2 * CTL_SLOT_BYTES;

const CTL_MAGIC: [u8; 8] = *b"TRILOGCT";
const CTL_VERSION: u32 = 1;
const FLAG_SEALED: u32 = 1;

const VERSION_AT: usize = 8;
const FLAGS_AT: usize = 12;
const GENERATION_AT: usize = 16;
const LOG_ID_AT: usize = 24;
const SEGMENT_AT: usize = 32;
const FENCED_EPOCH_AT: usize = 40;
const SEALED_LEN_AT: usize = 48;
const WATERMARK_AT: usize = 56;
const CRC_AT: usize = 64;
const SLOT_USED_BYTES: usize = CRC_AT + 4;

const _: () = assert!(SLOT_USED_BYTES <= CTL_SLOT_BYTES as usize);
const _: () = assert!(CTL_SLOT_BYTES.is_multiple_of(super::BLOCK_BYTES));

/// The durable control state of a segment replica.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CtlState {
    /// Appends of epochs below this are refused.
    pub fenced_epoch: u64,
    /// Set once the segment is sealed: entries at or past it do not exist.
    pub sealed_len: Option<u64>,
    /// The largest commit watermark this replica was told about.
    pub watermark: u64,
}

/// Why a control file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    #[error("slot {slot}: valid crc but unsupported version {version}")]
    UnsupportedVersion { slot: usize, version: u32 },
    #[error("slot {slot}: valid crc but unknown flags {flags:#x}")]
    UnknownFlags { slot: usize, flags: u32 },
    #[error("slot {slot}: valid crc but generation {generation} belongs in the other slot")]
    WrongSlot { slot: usize, generation: u64 },
    #[error("slot {slot}: valid crc but it names {found}")]
    WrongSegment { slot: usize, found: SegmentKey },
    #[error("slot {slot}: valid crc but not sealed and sealed_len {sealed_len} is not 0")]
    StraySealedLen { slot: usize, sealed_len: u64 },
    #[error("slot {slot}: valid crc but non-zero byte at {at} past the fields")]
    NonZeroPadding { slot: usize, at: usize },
    #[error("both slots are damaged; one crash damages at most one")]
    BothSlotsDamaged,
}

/// What one slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Never written: all zeros.
    Empty,
    /// A write that did not complete: bad magic or crc.
    Torn,
    Valid {
        generation: u64,
        state: CtlState,
    },
}

fn encode_slot(key: SegmentKey, generation: u64, state: &CtlState, out: &mut [u8]) {
    assert_eq!(out.len(), CTL_SLOT_BYTES as usize, "slot size");
    assert!(generation >= 1, "generation 0 is the unwritten state");
    out.fill(0);
    let flags = if state.sealed_len.is_some() {
        FLAG_SEALED
    } else {
        0
    };
    out[..VERSION_AT].copy_from_slice(&CTL_MAGIC);
    out[VERSION_AT..FLAGS_AT].copy_from_slice(&CTL_VERSION.to_le_bytes());
    out[FLAGS_AT..GENERATION_AT].copy_from_slice(&flags.to_le_bytes());
    out[GENERATION_AT..LOG_ID_AT].copy_from_slice(&generation.to_le_bytes());
    out[LOG_ID_AT..SEGMENT_AT].copy_from_slice(&key.log_id.to_le_bytes());
    out[SEGMENT_AT..FENCED_EPOCH_AT].copy_from_slice(&key.segment.to_le_bytes());
    out[FENCED_EPOCH_AT..SEALED_LEN_AT].copy_from_slice(&state.fenced_epoch.to_le_bytes());
    out[SEALED_LEN_AT..WATERMARK_AT].copy_from_slice(&state.sealed_len.unwrap_or(0).to_le_bytes());
    out[WATERMARK_AT..CRC_AT].copy_from_slice(&state.watermark.to_le_bytes());
    let crc = crc32c::crc32c(&out[..CRC_AT]);
    out[CRC_AT..SLOT_USED_BYTES].copy_from_slice(&crc.to_le_bytes());
}

fn decode_slot(key: SegmentKey, slot: usize, bytes: &[u8]) -> Result<Slot, CtlError> {
    assert_eq!(bytes.len(), CTL_SLOT_BYTES as usize, "slot size");
    if bytes.iter().all(|b| *b == 0) {
        return Ok(Slot::Empty);
    }
    if bytes[..VERSION_AT] != CTL_MAGIC || crc32c::crc32c(&bytes[..CRC_AT]) != u32_at(bytes, CRC_AT)
    {
        return Ok(Slot::Torn);
    }
    let version = u32_at(bytes, VERSION_AT);
    if version != CTL_VERSION {
        return Err(CtlError::UnsupportedVersion { slot, version });
    }
    let flags = u32_at(bytes, FLAGS_AT);
    if flags & !FLAG_SEALED != 0 {
        return Err(CtlError::UnknownFlags { slot, flags });
    }
    let generation = u64_at(bytes, GENERATION_AT);
    if generation == 0 || generation % 2 != slot as u64 {
        return Err(CtlError::WrongSlot { slot, generation });
    }
    let found = SegmentKey {
        log_id: u64_at(bytes, LOG_ID_AT),
        segment: u64_at(bytes, SEGMENT_AT),
    };
    if found != key {
        return Err(CtlError::WrongSegment { slot, found });
    }
    let sealed_len = u64_at(bytes, SEALED_LEN_AT);
    if flags & FLAG_SEALED == 0 && sealed_len != 0 {
        return Err(CtlError::StraySealedLen { slot, sealed_len });
    }
    if let Some(i) = bytes[SLOT_USED_BYTES..].iter().position(|b| *b != 0) {
        return Err(CtlError::NonZeroPadding {
            slot,
            at: SLOT_USED_BYTES + i,
        });
    }
    let state = CtlState {
        fenced_epoch: u64_at(bytes, FENCED_EPOCH_AT),
        sealed_len: (flags & FLAG_SEALED != 0).then_some(sealed_len),
        watermark: u64_at(bytes, WATERMARK_AT),
    };
    Ok(Slot::Valid { generation, state })
}

/// The durable state given both slots, and its generation (0: never written).
fn choose(a: Slot, b: Slot) -> Result<(u64, CtlState), CtlError> {
    match (a, b) {
        (
            Slot::Valid {
                generation: ga,
                state: sa,
            },
            Slot::Valid {
                generation: gb,
                state: sb,
            },
        ) => {
            assert_ne!(ga, gb, "slot parity makes generations differ");
            Ok(if ga > gb { (ga, sa) } else { (gb, sb) })
        }
        (Slot::Valid { generation, state }, _) | (_, Slot::Valid { generation, state }) => {
            Ok((generation, state))
        }
        (Slot::Torn, Slot::Torn) => Err(CtlError::BothSlotsDamaged),
        _ => Ok((0, CtlState::default())),
    }
}

/// The open control file of one segment replica.
#[derive(Debug)]
pub(super) struct CtlFile<D: Disk> {
    file: Rc<FileOf<D>>,
    path: PathBuf,
    key: SegmentKey,
    /// The last durable state, and the generation it was written with.
    state: CtlState,
    generation: u64,
    /// The write begun and not yet completed, if any.
    pending: Option<Pending>,
}

/// How far a control write got; shared by the [`CtlWrite`] and its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteStatus {
    Running,
    Succeeded,
    /// Failed, or dropped before it finished: the slot may be torn.
    Failed,
}

#[derive(Debug)]
struct Pending {
    generation: u64,
    state: CtlState,
    status: Rc<Cell<WriteStatus>>,
}

/// Marks its write failed if dropped before it succeeded.
#[derive(Debug)]
struct StatusGuard(Rc<Cell<WriteStatus>>);

impl Drop for StatusGuard {
    fn drop(&mut self) {
        if self.0.get() == WriteStatus::Running {
            self.0.set(WriteStatus::Failed);
        }
    }
}

impl<D: Disk> CtlFile<D> {
    /// Creates (or empties) the control file and makes its size durable.
    pub(super) async fn create(
        disk: &D,
        key: SegmentKey,
        path: &Path,
    ) -> Result<CtlFile<D>, StorageError> {
        let file = open_direct(disk, key, path, OpenMode::CreateEmpty).await?;
        file.pre_allocate(CTL_FILE_BYTES)
            .await
            .map_err(|e| io_error(key, path, "preallocate", e))?;
        file.fdatasync()
            .await
            .map_err(|e| io_error(key, path, "fdatasync", e))?;
        Ok(CtlFile {
            file: Rc::new(file),
            path: path.to_path_buf(),
            key,
            state: CtlState::default(),
            generation: 0,
            pending: None,
        })
    }

    /// Opens an existing control file and loads its durable state.
    pub(super) async fn open(
        disk: &D,
        key: SegmentKey,
        path: &Path,
    ) -> Result<CtlFile<D>, StorageError> {
        let exists = disk
            .exists(path)
            .await
            .map_err(|e| io_error(key, path, "stat", e))?;
        if !exists {
            return Err(StorageError::MissingCtl {
                segment: key,
                file: path.to_path_buf(),
            });
        }
        let file = open_direct(disk, key, path, OpenMode::Existing).await?;
        let bytes = read_exact_aligned(&file, key, path, 0, CTL_FILE_BYTES as usize).await?;
        let bad = |reason| StorageError::BadCtl {
            segment: key,
            file: path.to_path_buf(),
            reason,
        };
        let slot_bytes = CTL_SLOT_BYTES as usize;
        let a = decode_slot(key, 0, &bytes[..slot_bytes]).map_err(bad)?;
        let b = decode_slot(key, 1, &bytes[slot_bytes..2 * slot_bytes]).map_err(bad)?;
        if a == Slot::Torn || b == Slot::Torn {
            tracing::warn!(
                "{key}: control file {}: one slot is torn, using the other",
                path.display()
            );
        }
        let (generation, state) = choose(a, b).map_err(bad)?;
        Ok(CtlFile {
            file: Rc::new(file),
            path: path.to_path_buf(),
            key,
            state,
            generation,
            pending: None,
        })
    }

    /// The last durable state.
    pub(super) fn state(&self) -> CtlState {
        self.state
    }

    /// Whether a write was begun and not completed (and did not fail).
    pub(super) fn write_in_flight(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.status.get() != WriteStatus::Failed)
    }

    /// Prepares the write of `state` to the slot of the next generation.
    /// Panics if another write is pending: writes to one control file are
    /// sequential (see the module doc).
    pub(super) fn begin_write(&mut self, state: CtlState) -> CtlWrite<D> {
        if let Some(pending) = &self.pending {
            match pending.status.get() {
                WriteStatus::Failed => {
                    // Its slot may be torn; this write rewrites that slot.
                    self.pending = None;
                }
                WriteStatus::Running => panic!(
                    "{}: control write begun while another is in flight",
                    self.key
                ),
                WriteStatus::Succeeded => {
                    panic!(
                        "{}: control write begun before the previous one was completed",
                        self.key
                    )
                }
            }
        }
        let generation = self.generation + 1;
        let mut buf = self.file.alloc_buffer(CTL_SLOT_BYTES as usize);
        encode_slot(self.key, generation, &state, &mut buf);
        let status = Rc::new(Cell::new(WriteStatus::Running));
        self.pending = Some(Pending {
            generation,
            state,
            status: status.clone(),
        });
        CtlWrite {
            file: self.file.clone(),
            path: self.path.clone(),
            key: self.key,
            generation,
            buf,
            status: StatusGuard(status),
        }
    }

    /// Makes `state`, whose write succeeded, the durable state. Panics
    /// unless the pending write wrote `state` and succeeded.
    pub(super) fn complete_write(&mut self, state: CtlState) {
        let Some(pending) = self.pending.take() else {
            panic!("{}: control write completed with none begun", self.key);
        };
        assert_eq!(
            pending.status.get(),
            WriteStatus::Succeeded,
            "{}: control write completed before it succeeded",
            self.key
        );
        assert_eq!(
            pending.state, state,
            "{}: completed a state other than the one written",
            self.key
        );
        assert_eq!(pending.generation, self.generation + 1);
        self.generation = pending.generation;
        self.state = state;
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn into_file(self) -> Rc<FileOf<D>> {
        self.file
    }
}

/// A control write, taken out of the segment by
/// [`super::SegmentFile::begin_ctl_write`]; borrows nothing from it.
#[must_use = "a control write does nothing until run and completed"]
#[derive(Debug)]
pub struct CtlWrite<D: Disk> {
    file: Rc<FileOf<D>>,
    path: PathBuf,
    key: SegmentKey,
    generation: u64,
    buf: BufferOf<D>,
    status: StatusGuard,
}

impl<D: Disk> CtlWrite<D> {
    /// Writes the slot and fdatasyncs the file. Once this returns `Ok`, the
    /// state is durable; tell the segment with
    /// [`super::SegmentFile::complete_ctl_write`]. On `Err` (or if this
    /// future is dropped) the segment's durable state stays as it was and
    /// a new write may be begun.
    pub async fn run(self) -> Result<(), StorageError> {
        let CtlWrite {
            file,
            path,
            key,
            generation,
            buf,
            status,
        } = self;
        let pos = (generation % 2) * CTL_SLOT_BYTES;
        write_all_at(&*file, key, &path, "write control slot", buf, pos).await?;
        file.fdatasync()
            .await
            .map_err(|e| io_error(key, &path, "fdatasync", e))?;
        status.0.set(WriteStatus::Succeeded);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{run_local, test_dir};
    use crate::storage::GlommioDisk;
    use std::os::unix::fs::FileExt;

    const KEY: SegmentKey = SegmentKey {
        log_id: 5,
        segment: 6,
    };

    fn slot_bytes(generation: u64, state: CtlState) -> Vec<u8> {
        let mut b = vec![0u8; CTL_SLOT_BYTES as usize];
        encode_slot(KEY, generation, &state, &mut b);
        b
    }

    fn state(n: u64) -> CtlState {
        CtlState {
            fenced_epoch: n,
            sealed_len: n.is_multiple_of(2).then_some(n * 10),
            watermark: n * 3,
        }
    }

    #[test]
    fn slot_roundtrip_and_choice() {
        for g in 1..5 {
            let b = slot_bytes(g, state(g));
            let slot = (g % 2) as usize;
            assert_eq!(
                decode_slot(KEY, slot, &b),
                Ok(Slot::Valid {
                    generation: g,
                    state: state(g)
                })
            );
            assert!(matches!(
                decode_slot(KEY, 1 - slot, &b),
                Err(CtlError::WrongSlot { .. })
            ));
            let other = SegmentKey {
                log_id: 5,
                segment: 7,
            };
            assert!(matches!(
                decode_slot(other, slot, &b),
                Err(CtlError::WrongSegment { .. })
            ));
        }
        let mut torn = slot_bytes(3, state(3));
        torn[50] ^= 1;
        assert_eq!(decode_slot(KEY, 1, &torn), Ok(Slot::Torn));
        assert_eq!(
            decode_slot(KEY, 0, &[0u8; CTL_SLOT_BYTES as usize]),
            Ok(Slot::Empty)
        );

        let v = |g| Slot::Valid {
            generation: g,
            state: state(g),
        };
        assert_eq!(choose(v(4), v(3)), Ok((4, state(4))));
        assert_eq!(choose(v(2), v(3)), Ok((3, state(3))));
        assert_eq!(choose(Slot::Torn, v(3)), Ok((3, state(3))));
        assert_eq!(choose(v(2), Slot::Empty), Ok((2, state(2))));
        assert_eq!(
            choose(Slot::Empty, Slot::Empty),
            Ok((0, CtlState::default()))
        );
        assert_eq!(
            choose(Slot::Empty, Slot::Torn),
            Ok((0, CtlState::default()))
        );
        assert_eq!(
            choose(Slot::Torn, Slot::Torn),
            Err(CtlError::BothSlotsDamaged)
        );
    }

    async fn write(ctl: &mut CtlFile<GlommioDisk>, state: CtlState) {
        let w = ctl.begin_write(state);
        assert!(ctl.write_in_flight());
        w.run().await.expect("control write");
        ctl.complete_write(state);
        assert!(!ctl.write_in_flight());
        assert_eq!(ctl.state(), state);
    }

    #[test]
    fn newest_valid_slot_wins_after_a_torn_write() {
        let dir = test_dir();
        let path = KEY.ctl_path(dir.path());
        let p = path.clone();
        run_local(move || async move {
            let mut ctl = CtlFile::create(&GlommioDisk, KEY, &p)
                .await
                .expect("create");
            assert_eq!(ctl.state(), CtlState::default());
            for n in 1..=5 {
                write(&mut ctl, state(n)).await;
            }
            drop(ctl);
            let ctl = CtlFile::open(&GlommioDisk, KEY, &p).await.expect("open");
            assert_eq!(ctl.state(), state(5));
            assert_eq!(ctl.generation, 5);
        });

        // Tear the newest write (generation 5, slot 1) in the middle.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all_at(&[0xee; 16], CTL_SLOT_BYTES + 40)
            .expect("corrupt");
        drop(f);

        let p = path.clone();
        run_local(move || async move {
            let mut ctl = CtlFile::open(&GlommioDisk, KEY, &p).await.expect("open");
            assert_eq!(ctl.state(), state(4), "the previous durable state");
            // The next write reuses the torn slot, keeping generation 4's.
            write(&mut ctl, state(9)).await;
            drop(ctl);
            let ctl = CtlFile::open(&GlommioDisk, KEY, &p).await.expect("open");
            assert_eq!(ctl.state(), state(9));
            assert_eq!(ctl.generation, 5);
        });

        // Both slots damaged: an error naming the file, not a default state.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all_at(&[0xee; 16], 40).expect("corrupt");
        f.write_all_at(&[0xee; 16], CTL_SLOT_BYTES + 40)
            .expect("corrupt");
        drop(f);
        let p = path.clone();
        let msg = run_local(move || async move {
            match CtlFile::open(&GlommioDisk, KEY, &p).await {
                Ok(_) => panic!("both slots damaged but loaded"),
                Err(e) => {
                    assert!(matches!(
                        e,
                        StorageError::BadCtl {
                            reason: CtlError::BothSlotsDamaged,
                            ..
                        }
                    ));
                    e.to_string()
                }
            }
        });
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn a_failed_write_keeps_state_and_releases_the_file() {
        let dir = test_dir();
        let p = KEY.ctl_path(dir.path());
        run_local(move || async move {
            let mut ctl = CtlFile::create(&GlommioDisk, KEY, &p)
                .await
                .expect("create");
            write(&mut ctl, state(1)).await;

            // A write dropped before it ran counts as failed.
            let abandoned = ctl.begin_write(state(2));
            assert!(ctl.write_in_flight());
            drop(abandoned);
            assert!(!ctl.write_in_flight());
            assert_eq!(ctl.state(), state(1));

            // The retry gets the failed write's generation (and slot).
            let retry = ctl.begin_write(state(2));
            assert_eq!(retry.generation, 2);
            // A second write while one is in flight is a programmer error.
            let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ctl.begin_write(state(3))
            }));
            assert!(second.is_err(), "concurrent control writes allowed");
            retry.run().await.expect("write");
            // Completing another state than the one written is refused.
            let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ctl.complete_write(state(3))
            }));
            assert!(wrong.is_err(), "completed a state that was not written");
        });
    }

    #[test]
    fn completing_before_success_panics() {
        let dir = test_dir();
        let p = KEY.ctl_path(dir.path());
        run_local(move || async move {
            let mut ctl = CtlFile::create(&GlommioDisk, KEY, &p)
                .await
                .expect("create");
            let w = ctl.begin_write(state(1));
            let early = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ctl.complete_write(state(1))
            }));
            assert!(early.is_err(), "completed a write that had not run");
            // The failed completion took the pending write; begin anew.
            drop(w);
            write(&mut ctl, state(1)).await;
        });
    }
}
