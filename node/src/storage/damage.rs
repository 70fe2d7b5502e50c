//! What recovery (and the scrub) concludes from where a scan stopped: a
//! clean end, a torn tail, or damage.
//!
//! - A **torn tail** is the end of what was being written at the crash:
//!   bad or partial records of an open segment past its last durable
//!   point. Only the last group commit can be torn (one flush per segment
//!   is in flight, and the next begins after its fdatasync), and nothing of
//!   it was acknowledged, so recovery drops it and appends continue there.
//!   A disk tears a write sector by sector in any order, so valid records
//!   may follow the bad one inside that last group commit: "nothing valid
//!   after it" is not the test.
//! - **Damage** is a record that was durable and is bad now. It is known
//!   durable when it lies below the sealed length the control file records
//!   (the node persists a seal only once every entry under it is durable:
//!   a bad record, zeros or the end of the file there are all damage), or,
//!   in an open segment, below the segment's known durable point: the
//!   persisted watermark, or the commit field of any valid record found
//!   past the bad one. A commit field `c` says that every replica,
//!   this one included, acknowledged the entries below `c` (so they were
//!   fdatasynced here) before that record was sent; a record of a torn
//!   group commit can never carry a commit past its own group's start.
//!   Recovery keeps what is good before damage, records where it starts,
//!   and changes nothing on disk: a repair needs the evidence and the good
//!   parts.
//!
//! What this cannot see: damage to acknowledged entries of an open segment
//! that nothing later proves durable (the last entries before a crash, no
//! later record or watermark naming them). They are dropped like a torn
//! tail; the replica then reports the shorter length, which is honest, and
//! a takeover copies the longest tail of the replicas. Sealed segments, the
//! ones the scrub re-reads, have no such blind spot.

use super::scan::ScanStop;

/// Damage in a segment replica: its entries from `from` on are not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// The first entry not held.
    pub from: u64,
    /// The sealed length: how many entries the replica should hold.
    pub should_hold: Option<u64>,
    pub why: &'static str,
}

/// What a scan's stop means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Every record the file should hold is there and valid.
    Clean,
    /// An open segment's last group commit was torn by a crash.
    TornTail,
    Damaged(Damage),
}

/// Classifies a scan that found `len` valid records and stopped at `stop`,
/// in a segment sealed at `sealed_len` (from its control file), whose
/// entries below `durable_point` are known to have been durable (for an
/// open segment: its persisted watermark and the largest commit field of
/// the valid records past the bad one).
pub fn classify(len: u64, stop: &ScanStop, sealed_len: Option<u64>, durable_point: u64) -> Finding {
    if let Some(sealed) = sealed_len {
        if len >= sealed {
            return Finding::Clean;
        }
        let why = match stop {
            ScanStop::Corrupt { .. } => "a bad record below the sealed length",
            ScanStop::Truncated { .. } => "the file ends below the sealed length",
            ScanStop::CleanEnd => "records missing below the sealed length",
        };
        return Finding::Damaged(Damage {
            from: len,
            should_hold: Some(sealed),
            why,
        });
    }
    match stop {
        ScanStop::CleanEnd => Finding::Clean,
        ScanStop::Corrupt { .. } | ScanStop::Truncated { .. } if durable_point > len => {
            Finding::Damaged(Damage {
                from: len,
                should_hold: None,
                why: "a bad record below the known durable point",
            })
        }
        ScanStop::Corrupt { .. } | ScanStop::Truncated { .. } => Finding::TornTail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(offset: u64) -> ScanStop {
        ScanStop::Corrupt {
            offset,
            reason: "record payload crc mismatch",
        }
    }

    #[test]
    fn an_open_segment_is_torn_unless_the_bad_record_was_known_durable() {
        assert_eq!(classify(5, &ScanStop::CleanEnd, None, 9), Finding::Clean);
        assert_eq!(classify(5, &corrupt(5), None, 5), Finding::TornTail);
        assert_eq!(
            classify(5, &ScanStop::Truncated { offset: 5 }, None, 0),
            Finding::TornTail
        );
        assert!(matches!(
            classify(5, &corrupt(5), None, 6),
            Finding::Damaged(Damage {
                from: 5,
                should_hold: None,
                ..
            })
        ));
    }

    #[test]
    fn anything_short_of_the_seal_is_damage() {
        assert_eq!(classify(6, &ScanStop::CleanEnd, Some(6), 0), Finding::Clean);
        for stop in [
            corrupt(3),
            ScanStop::Truncated { offset: 3 },
            ScanStop::CleanEnd,
        ] {
            assert!(
                matches!(
                    classify(3, &stop, Some(6), 0),
                    Finding::Damaged(Damage {
                        from: 3,
                        should_hold: Some(6),
                        ..
                    })
                ),
                "{stop:?}"
            );
        }
    }
}
