//! Whether a node's disk may take new data: the read-only mode of a full
//! disk, as a pure state machine.
//!
//! A node measures the free space of its data directory's file system
//! (every [`SPACE_CHECK_INTERVAL_MS`], the driver's statvfs) and hands it
//! to [`SpaceGauge::observe`]; an allocation that failed for space (ENOSPC,
//! EDQUOT) goes to [`SpaceGauge::on_no_space`]. The gauge answers the mode:
//!
//! - **Writable → read-only** when the free bytes fall below the reserve,
//!   or at once on a failed allocation. The reserve is not for new data:
//!   it is what a read-only node still needs to do its duties (control
//!   writes of seals and fences, the embedded metadata store's file
//!   replace, the start-up probe file, a repair's copy), so the mode turns
//!   before the disk is really empty. The failed allocation is the
//!   backstop for what the reserve cannot cover: data written between two
//!   measurements, another process filling the disk, a quota.
//! - **Read-only → writable** only once the free bytes reach the reserve
//!   plus [`DISK_RESUME_MARGIN_BYTES`] (hysteresis: a node at the edge of
//!   its reserve would otherwise flip with every segment it takes). After a
//!   failed allocation the bar is higher still: the free bytes measured
//!   next, plus the margin. A disk that refused an allocation while
//!   statvfs saw room (a quota, reserved blocks) must see that much freed
//!   before the node tries again, instead of flipping every measurement.
//!
//! What read-only means for requests is the shard machine's
//! ([`crate::shard::ShardMachine::set_read_only`]): no new segment, no
//! append; reads, seals, fences of existing segments and deletes go on.

/// Default reserve: free bytes below which a node turns read-only. 64 MiB
/// holds the control writes of thousands of seals, the embedded metadata
/// store's file (a few MiB for a large cluster) replaced a few times over,
/// and a segment's largest preallocation step several times; small enough
/// to be a rounding error on any production disk.
pub const DISK_RESERVE_BYTES_DEFAULT: u64 = 64 << 20;

/// How far above the reserve the free bytes must climb before a read-only
/// node takes new data again.
pub const DISK_RESUME_MARGIN_BYTES: u64 = 16 << 20;

/// How often a node measures its free space.
pub const SPACE_CHECK_INTERVAL_MS: u64 = 1_000;

/// What a node's disk may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaceMode {
    Writable,
    /// No new data: see the module doc.
    ReadOnly,
}

/// The mode of one node's disk: see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceGauge {
    reserve_bytes: u64,
    mode: SpaceMode,
    /// While read-only: the free bytes at which the node turns writable.
    /// `None` right after a failed allocation, until the next measurement
    /// sets it.
    resume_at_bytes: Option<u64>,
}

impl SpaceGauge {
    /// A gauge with `reserve_bytes` kept free; writable until told
    /// otherwise (the driver measures before it serves anything).
    pub fn new(reserve_bytes: u64) -> SpaceGauge {
        SpaceGauge {
            reserve_bytes,
            mode: SpaceMode::Writable,
            resume_at_bytes: None,
        }
    }

    pub fn mode(&self) -> SpaceMode {
        self.mode
    }

    pub fn reserve_bytes(&self) -> u64 {
        self.reserve_bytes
    }

    /// A measurement: `free_bytes` free for the node now.
    pub fn observe(&mut self, free_bytes: u64) -> SpaceMode {
        match self.mode {
            SpaceMode::Writable => {
                if free_bytes < self.reserve_bytes {
                    self.turn_read_only(Some(self.normal_resume_bytes()));
                }
            }
            SpaceMode::ReadOnly => {
                let resume_at = *self.resume_at_bytes.get_or_insert_with(|| {
                    free_bytes
                        .max(self.reserve_bytes)
                        .saturating_add(DISK_RESUME_MARGIN_BYTES)
                });
                if free_bytes >= resume_at {
                    self.mode = SpaceMode::Writable;
                    self.resume_at_bytes = None;
                }
            }
        }
        self.check();
        self.mode
    }

    /// An allocation failed for space: read-only at once, until the next
    /// measurement says how much must be freed.
    pub fn on_no_space(&mut self) -> SpaceMode {
        self.turn_read_only(None);
        self.check();
        self.mode
    }

    fn normal_resume_bytes(&self) -> u64 {
        self.reserve_bytes.saturating_add(DISK_RESUME_MARGIN_BYTES)
    }

    fn turn_read_only(&mut self, resume_at: Option<u64>) {
        self.mode = SpaceMode::ReadOnly;
        self.resume_at_bytes = resume_at;
    }

    fn check(&self) {
        match self.mode {
            SpaceMode::Writable => assert!(self.resume_at_bytes.is_none()),
            SpaceMode::ReadOnly => assert!(self
                .resume_at_bytes
                .is_none_or(|r| r > self.reserve_bytes || r == u64::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn read_only_below_the_reserve_writable_past_the_margin() {
        let mut g = SpaceGauge::new(64 * MIB);
        assert_eq!(g.observe(100 * MIB), SpaceMode::Writable);
        assert_eq!(g.observe(64 * MIB), SpaceMode::Writable, "at the reserve");
        assert_eq!(g.observe(64 * MIB - 1), SpaceMode::ReadOnly);
        // Hysteresis: back above the reserve is not enough.
        assert_eq!(g.observe(70 * MIB), SpaceMode::ReadOnly);
        assert_eq!(
            g.observe(64 * MIB + DISK_RESUME_MARGIN_BYTES - 1),
            SpaceMode::ReadOnly
        );
        assert_eq!(
            g.observe(64 * MIB + DISK_RESUME_MARGIN_BYTES),
            SpaceMode::Writable
        );
        assert_eq!(g.observe(64 * MIB), SpaceMode::Writable);
    }

    #[test]
    fn a_failed_allocation_turns_read_only_until_the_margin_is_freed() {
        let mut g = SpaceGauge::new(8 * MIB);
        assert_eq!(g.observe(500 * MIB), SpaceMode::Writable);
        // statvfs saw room, the file system refused (a quota, say).
        assert_eq!(g.on_no_space(), SpaceMode::ReadOnly);
        // The next measurement sets the bar: what it sees plus the margin,
        // so the node does not flip back at once.
        assert_eq!(g.observe(500 * MIB), SpaceMode::ReadOnly);
        assert_eq!(g.observe(510 * MIB), SpaceMode::ReadOnly);
        assert_eq!(
            g.observe(500 * MIB + DISK_RESUME_MARGIN_BYTES),
            SpaceMode::Writable
        );
    }

    #[test]
    fn a_failed_allocation_below_the_reserve_resumes_at_the_usual_bar() {
        let mut g = SpaceGauge::new(8 * MIB);
        assert_eq!(g.on_no_space(), SpaceMode::ReadOnly);
        assert_eq!(g.observe(0), SpaceMode::ReadOnly);
        assert_eq!(
            g.observe(8 * MIB + DISK_RESUME_MARGIN_BYTES - 1),
            SpaceMode::ReadOnly
        );
        assert_eq!(
            g.observe(8 * MIB + DISK_RESUME_MARGIN_BYTES),
            SpaceMode::Writable
        );
    }

    #[test]
    fn a_zero_reserve_turns_only_on_failed_allocations() {
        let mut g = SpaceGauge::new(0);
        assert_eq!(g.observe(0), SpaceMode::Writable);
        assert_eq!(g.on_no_space(), SpaceMode::ReadOnly);
        assert_eq!(g.observe(0), SpaceMode::ReadOnly);
        assert_eq!(g.observe(DISK_RESUME_MARGIN_BYTES), SpaceMode::Writable);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let mut g = SpaceGauge::new(u64::MAX);
        assert_eq!(g.observe(u64::MAX - 1), SpaceMode::ReadOnly);
        assert_eq!(g.on_no_space(), SpaceMode::ReadOnly);
        assert_eq!(g.observe(u64::MAX - 1), SpaceMode::ReadOnly);
    }
}
