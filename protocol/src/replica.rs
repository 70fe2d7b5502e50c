//! The replica: one segment on one log node.
//!
//! A replica accepts an append only if the segment is not sealed, not fenced
//! above the append's epoch, and the append starts at or before its length
//! (what it holds is a prefix of what the producer sends; an exact resend of
//! held entries is acknowledged again, a gap is answered with the length).
//! Everything it answers about is durable first: the driver acks an append
//! only once `durable_len` covers it, and answers a fence or a seal only
//! once the new [`Durable`] state is on disk.

use crate::mutant::{self, Mutant};

/// The part of a replica's state that must survive a crash besides its
/// entries. The driver persists it before answering a fence or a seal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Durable {
    pub fenced_epoch: u64,
    pub sealed_len: Option<u64>,
    pub watermark: u64,
}

/// One segment replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Replica {
    /// Entries accepted in order (staged for the next group commit or
    /// already durable).
    staged_len: u64,
    /// Entries on disk.
    durable_len: u64,
    /// Fence, seal and the highest commit watermark learnt.
    durable: Durable,
    /// The first entry found damaged on disk (a bad record inside what was
    /// durable, found by recovery or by the scrub): nothing from it on is
    /// served, and no append is taken.
    damaged_from: Option<u64>,
}

/// Why an append, a seal or a fence was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The segment is sealed at this length.
    Sealed { len: u64 },
    /// The segment is fenced at this epoch.
    Fenced { epoch: u64 },
    /// The append starts past what the replica holds, which is this length.
    Gap { len: u64 },
    /// A seal asks for more entries than the replica holds, or conflicts
    /// with an earlier seal: the protocol was broken somewhere.
    SealConflict { held: u64, sealed_len: Option<u64> },
    /// A seal below the commit watermark the replica knows: it would drop
    /// entries the replica knows are committed. No legitimate sealer asks
    /// for that (see [`Replica::on_seal`]).
    SealBelowCommit { commit: u64 },
    /// The replica does not hold entries it should from offset `from` on:
    /// damaged on disk, or cut short below its seal. Readers go to another
    /// replica at once; a producer leaves the replica behind.
    Damaged { from: u64 },
}

/// What to do with an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum AppendDecision {
    /// Stage the append's entries from index `skip` on (the ones before are
    /// held already); ack once `durable_len >= end`.
    Accept {
        skip: u64,
        end: u64,
    },
    /// Every entry is held already; ack once `durable_len >= end`.
    Held {
        end: u64,
    },
    Refuse(Refusal),
}

/// What to do with a fence or a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ControlDecision {
    /// Persist this state, then answer.
    Persist(Durable),
    /// Nothing changes; answer at once.
    Unchanged,
    Refuse(Refusal),
}

impl Replica {
    /// A new, empty replica.
    pub fn new() -> Replica {
        Replica {
            staged_len: 0,
            durable_len: 0,
            durable: Durable::default(),
            damaged_from: None,
        }
    }

    /// The replica as recovered from disk: `len` valid entries, the highest
    /// commit watermark found in them, and the persisted control state.
    pub fn recovered(len: u64, max_commit: u64, durable: Durable) -> Replica {
        let len = match durable.sealed_len {
            Some(sealed) => len.min(sealed),
            None => len,
        };
        let mut d = durable;
        d.watermark = d.watermark.max(max_commit).min(len);
        Replica {
            staged_len: len,
            durable_len: len,
            durable: d,
            damaged_from: None,
        }
    }

    /// Entries from `from` on are damaged on disk (recovery or the scrub
    /// found a bad record there): they are never served again, and the
    /// replica takes no more appends. Marking twice keeps the lower offset.
    pub fn mark_damaged(&mut self, from: u64) {
        assert!(
            from <= self.durable_len,
            "damage at {from} past the durable length {}",
            self.durable_len
        );
        self.damaged_from = Some(self.damaged_from.map_or(from, |d| d.min(from)));
    }

    /// The first damaged entry, if any.
    pub fn damaged_from(&self) -> Option<u64> {
        self.damaged_from
    }

    /// Drops the damaged entries of a sealed replica, so that it can be
    /// healed: from now on it holds the entries before the damage, misses
    /// the rest of its sealed length ([`Self::missing_from`]) and takes
    /// them again as heal appends ([`Self::on_append`]). Returns where the
    /// damage started. The driver drops the same entries from its index.
    pub fn rewind_damage(&mut self) -> u64 {
        let Some(from) = self.damaged_from else {
            panic!("rewind of a replica that is not damaged");
        };
        assert!(
            self.durable.sealed_len.is_some(),
            "rewind of an open replica: its producer owns what it holds"
        );
        assert_eq!(
            self.staged_len, self.durable_len,
            "rewind with entries in flight"
        );
        self.staged_len = from;
        self.durable_len = from;
        self.damaged_from = None;
        from
    }

    /// A heal's flush failed: what was staged past the durable length is
    /// unknown on disk, so it counts as damage from there (dropped again
    /// by [`Self::rewind_damage`], then healed again).
    pub fn abort_heal(&mut self) {
        assert!(
            self.durable.sealed_len.is_some(),
            "a heal of an open replica"
        );
        self.staged_len = self.durable_len;
        self.mark_damaged(self.durable_len);
    }

    /// Whether this is a sealed replica missing entries below its seal
    /// (cut short, or rewound past damage) that takes them again: a
    /// repair's heal appends fill it up to the seal.
    pub fn healing(&self) -> bool {
        self.damaged_from.is_none()
            && self
                .durable
                .sealed_len
                .is_some_and(|sealed| self.staged_len < sealed)
    }

    /// An append of `count` entries from `first_offset` to a replica
    /// [`Self::healing`] up to its seal at `sealed`. Every correct writer
    /// of a segment's entries below its seal sends the same entries (a
    /// segment has one writer epoch, and the seal is at a length every
    /// replica held), so no epoch is checked here: a fence guards what
    /// comes after a length, never the entries under a seal. An append
    /// reaching past the seal is refused like any append to a sealed
    /// replica.
    fn on_heal(&mut self, first_offset: u64, count: u64, sealed: u64) -> AppendDecision {
        let end = first_offset.saturating_add(count);
        if end > sealed {
            return AppendDecision::Refuse(Refusal::Sealed { len: sealed });
        }
        if first_offset > self.staged_len {
            return AppendDecision::Refuse(Refusal::Gap {
                len: self.staged_len,
            });
        }
        if end <= self.staged_len {
            return AppendDecision::Held { end };
        }
        let skip = self.staged_len - first_offset;
        self.staged_len = end;
        AppendDecision::Accept { skip, end }
    }

    /// The first entry this replica should hold but cannot serve: damaged,
    /// or missing below its seal (a seal recorded before the entries under
    /// it reached the disk, or a file cut short). `None` when it holds
    /// everything it should.
    pub fn missing_from(&self) -> Option<u64> {
        match (self.damaged_from, self.durable.sealed_len) {
            (Some(d), _) => Some(d),
            (None, Some(sealed)) if self.durable_len < sealed => Some(self.durable_len),
            (None, _) => None,
        }
    }

    pub fn staged_len(&self) -> u64 {
        self.staged_len
    }

    pub fn durable_len(&self) -> u64 {
        self.durable_len
    }

    pub fn durable(&self) -> Durable {
        self.durable
    }

    pub fn sealed_len(&self) -> Option<u64> {
        self.durable.sealed_len
    }

    /// Whether a fence or a seal may be answered now: only once every entry
    /// staged before it is durable. Otherwise an append staged before a
    /// fence could be acknowledged to the old producer after the fence
    /// answer told the new producer a shorter length, and the takeover,
    /// which carries only what the answer reported, would drop an entry the
    /// old producer reported committed.
    pub fn control_answerable(&self) -> bool {
        // MUTANT FenceAnsweredBeforeDrain: answered at once.
        self.durable_len == self.staged_len || mutant::active(Mutant::FenceAnsweredBeforeDrain)
    }

    /// The commit watermark this replica knows, never past what it holds.
    pub fn watermark(&self) -> u64 {
        self.durable.watermark.min(self.durable_len)
    }

    /// Decides on `Append{epoch, first_offset, count entries, commit}`.
    pub fn on_append(
        &mut self,
        epoch: u64,
        first_offset: u64,
        count: u64,
        commit: u64,
    ) -> AppendDecision {
        if let Some(len) = self.durable.sealed_len {
            if self.healing() {
                return self.on_heal(first_offset, count, len);
            }
            return AppendDecision::Refuse(Refusal::Sealed { len });
        }
        if let Some(from) = self.damaged_from {
            return AppendDecision::Refuse(Refusal::Damaged { from });
        }
        if epoch < self.durable.fenced_epoch {
            return AppendDecision::Refuse(Refusal::Fenced {
                epoch: self.durable.fenced_epoch,
            });
        }
        if first_offset > self.staged_len {
            return AppendDecision::Refuse(Refusal::Gap {
                len: self.staged_len,
            });
        }
        let end = first_offset.saturating_add(count);
        self.learn_commit(commit.min(end));
        if end <= self.staged_len && mutant::active(Mutant::ResendStoredTwice) {
            // MUTANT ResendStoredTwice: the resend is stored after what is
            // held, as if it were new.
            self.staged_len += count;
            return AppendDecision::Accept {
                skip: 0,
                end: self.staged_len,
            };
        }
        if end <= self.staged_len {
            return AppendDecision::Held { end };
        }
        let skip = self.staged_len - first_offset;
        self.staged_len = end;
        AppendDecision::Accept { skip, end }
    }

    /// The first `len` entries are on disk.
    pub fn on_durable(&mut self, len: u64) {
        assert!(
            len <= self.staged_len,
            "durable past staged: {len} > {}",
            self.staged_len
        );
        self.durable_len = self.durable_len.max(len);
    }

    /// A commit watermark sent alone. Returns whether it moved (then the
    /// driver may record it and wake long-polling readers).
    pub fn on_watermark(&mut self, epoch: u64, commit: u64) -> bool {
        if epoch < self.durable.fenced_epoch || self.durable.sealed_len.is_some() {
            return false;
        }
        self.learn_commit(commit.min(self.staged_len))
    }

    fn learn_commit(&mut self, commit: u64) -> bool {
        if commit > self.durable.watermark {
            self.durable.watermark = commit;
            true
        } else {
            false
        }
    }

    /// A fence at `epoch`: refuse every older append from now on. The
    /// answer (durable length, watermark) is given once the returned state
    /// is on disk.
    pub fn on_fence(&mut self, epoch: u64) -> ControlDecision {
        if epoch <= self.durable.fenced_epoch {
            return ControlDecision::Unchanged;
        }
        if mutant::active(Mutant::TakeoverWithoutFence) {
            // MUTANT TakeoverWithoutFence: the fence only asks for the
            // lengths; older appends are still accepted.
            return ControlDecision::Unchanged;
        }
        self.durable.fenced_epoch = epoch;
        if mutant::active(Mutant::FenceNotDurable) {
            // MUTANT FenceNotDurable: refused from now on, but nothing is
            // written down, so a restart forgets the fence.
            return ControlDecision::Unchanged;
        }
        ControlDecision::Persist(self.durable)
    }

    /// A seal at `len` of a replica sealed already: nothing to do at the
    /// same length, refused at another (a sealed segment never changes
    /// length). `None` for an open replica.
    fn sealed_already(&self, len: u64) -> Option<ControlDecision> {
        match self.durable.sealed_len {
            Some(s) if s == len => Some(ControlDecision::Unchanged),
            Some(s) => Some(ControlDecision::Refuse(Refusal::SealConflict {
                held: self.staged_len,
                sealed_len: Some(s),
            })),
            None => None,
        }
    }

    /// A seal at `len`: drop entries at or past it and refuse all appends.
    /// A segment sealed already is never sealed again at another length
    /// (so a sealed segment never shrinks), nor sealed past what the
    /// replica holds, nor below the commit watermark it knows.
    pub fn on_seal(&mut self, epoch: u64, len: u64) -> ControlDecision {
        if let Some(decided) = self.sealed_already(len) {
            return decided;
        }
        if len > self.durable_len {
            // The sealer took `len` from entries every replica acked; a
            // replica without them means a broken protocol, not a race.
            return ControlDecision::Refuse(Refusal::SealConflict {
                held: self.durable_len,
                sealed_len: None,
            });
        }
        // A seal below the watermark this replica knows would drop entries
        // it knows are committed (a watermark only ever counts entries
        // every replica acknowledged). No legitimate sealer asks for that:
        // - a switch or a close seals at the producer's frozen commit
        //   watermark, and every watermark a replica of the segment learnt
        //   came from that very producer (a segment has one writer epoch),
        //   which never told more than it had committed;
        // - a takeover seals at the highest watermark its fenced replicas
        //   answered, and carries every entry past it into the next segment
        //   before its CAS. A replica that did not answer may know a higher
        //   watermark than that seal (the producer's watermark messages
        //   reach the replicas at different times): it refuses, stays
        //   unsealed holding entries that live on in the next segment, and
        //   readers, who take the sealed length from the record, never read
        //   past the seal there. That is the one legitimate seal refused.
        // Anything else below the watermark (a stale tool, a bug, a
        // `Seal{len: 0}` sent to the replicas of a closed log) is refused, so
        // committed entries are never truncated by a message alone. A replica
        // only protects what it knows: a seal between its watermark and the
        // true commit point still truncates.
        let commit = self.watermark();
        // MUTANT SealBelowWatermark: the low seal is applied.
        if len < commit && !mutant::active(Mutant::SealBelowWatermark) {
            return ControlDecision::Refuse(Refusal::SealBelowCommit { commit });
        }
        self.durable.sealed_len = Some(len);
        self.durable.fenced_epoch = self.durable.fenced_epoch.max(epoch);
        self.durable.watermark = self.durable.watermark.min(len);
        self.staged_len = len;
        self.durable_len = len;
        ControlDecision::Persist(self.durable)
    }

    /// A seal learnt from the metadata record, not sent by anyone: the
    /// record is the truth about a sealed segment, so an open replica
    /// takes it even where it would refuse the same seal as a message:
    /// - **below the watermark it knows**: the record seals there only
    ///   after a takeover that carried every entry past its seal into the
    ///   next segment (see [`Self::on_seal`]): the entries dropped here
    ///   live on there, at the same seqs;
    /// - **past what it holds** (damaged, cut short, or appends it missed):
    ///   it is sealed short of its seal, misses the entries below it
    ///   ([`Self::missing_from`]) and is healed like any sealed copy that
    ///   lost entries ([`Self::healing`], after its damage is dropped).
    ///
    /// A replica sealed already at another length refuses (the record and
    /// a seal that was answered disagree: a bug, never a race), as does
    /// [`Self::on_seal`]. The rule that no seal *message* truncates below
    /// the watermark (`SealBelowCommit`) is untouched: only the consensus
    /// store, which every reader follows anyway, may do it.
    pub fn learn_seal(&mut self, epoch: u64, len: u64) -> ControlDecision {
        if let Some(decided) = self.sealed_already(len) {
            return decided;
        }
        assert_eq!(
            self.staged_len, self.durable_len,
            "a seal is decided once every staged entry is durable"
        );
        let kept = self.durable_len.min(len);
        self.durable.sealed_len = Some(len);
        self.durable.fenced_epoch = self.durable.fenced_epoch.max(epoch);
        self.durable.watermark = self.durable.watermark.min(len);
        self.staged_len = kept;
        self.durable_len = kept;
        // Damage at or past the seal is no longer in the replica at all.
        self.damaged_from = self.damaged_from.filter(|d| *d < len);
        ControlDecision::Persist(self.durable)
    }

    /// How far a reader may read. `limit` is the segment's sealed length
    /// as the reader learnt it from the metadata, or `u64::MAX` while the
    /// segment is open there. Below a sealed length every entry is
    /// committed (the seal is at a commit watermark), so a replica that
    /// missed the seal message serves up to it; an open segment is served
    /// up to the known commit watermark. Never past what is durable, nor
    /// past damage.
    pub fn readable_end(&self, limit: u64) -> u64 {
        let end = match self.durable.sealed_len {
            Some(sealed) => sealed.min(limit),
            None if limit != u64::MAX => limit,
            // MUTANT ReadPastWatermark: the uncommitted tail is served.
            None if mutant::active(Mutant::ReadPastWatermark) => self.durable_len,
            None => self.watermark(),
        };
        end.min(self.durable_len)
            .min(self.damaged_from.unwrap_or(u64::MAX))
    }
}

impl Default for Replica {
    fn default() -> Self {
        Replica::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_in_order_and_acks_resends() {
        let mut r = Replica::new();
        assert_eq!(
            r.on_append(1, 0, 3, 0),
            AppendDecision::Accept { skip: 0, end: 3 }
        );
        assert_eq!(
            r.on_append(1, 3, 2, 0),
            AppendDecision::Accept { skip: 0, end: 5 }
        );
        assert_eq!(r.on_append(1, 0, 3, 0), AppendDecision::Held { end: 3 });
        assert_eq!(
            r.on_append(1, 4, 3, 0),
            AppendDecision::Accept { skip: 1, end: 7 }
        );
        assert_eq!(
            r.on_append(1, 9, 1, 0),
            AppendDecision::Refuse(Refusal::Gap { len: 7 })
        );
        assert_eq!(r.staged_len(), 7);
        assert_eq!(r.durable_len(), 0);
    }

    #[test]
    fn watermark_never_passes_durable() {
        let mut r = Replica::new();
        let _ = r.on_append(1, 0, 4, 0);
        let _ = r.on_append(1, 4, 1, 4);
        assert_eq!(r.watermark(), 0, "nothing durable yet");
        r.on_durable(2);
        assert_eq!(r.watermark(), 2);
        assert_eq!(r.readable_end(u64::MAX), 2);
        r.on_durable(5);
        assert_eq!(r.readable_end(u64::MAX), 4);
        assert_eq!(r.readable_end(3), 3);
        // A reader that knows the segment sealed at 5 may read all of it
        // even if this replica never heard of the seal.
        assert_eq!(r.readable_end(5), 5);
        assert!(r.on_watermark(1, 5));
        assert_eq!(r.readable_end(u64::MAX), 5);
    }

    #[test]
    fn fence_refuses_older_epochs_only() {
        let mut r = Replica::new();
        let _ = r.on_append(1, 0, 2, 0);
        r.on_durable(2);
        assert!(matches!(r.on_fence(2), ControlDecision::Persist(d) if d.fenced_epoch == 2));
        assert_eq!(r.on_fence(2), ControlDecision::Unchanged);
        assert_eq!(
            r.on_append(1, 2, 1, 0),
            AppendDecision::Refuse(Refusal::Fenced { epoch: 2 })
        );
        assert!(!r.on_watermark(1, 2));
        assert_eq!(
            r.on_append(2, 2, 1, 0),
            AppendDecision::Accept { skip: 0, end: 3 }
        );
    }

    #[test]
    fn seal_truncates_and_refuses() {
        let mut r = Replica::new();
        let _ = r.on_append(1, 0, 5, 3);
        r.on_durable(5);
        assert_eq!(
            r.on_seal(1, 6),
            ControlDecision::Refuse(Refusal::SealConflict {
                held: 5,
                sealed_len: None
            })
        );
        assert!(matches!(r.on_seal(1, 3), ControlDecision::Persist(d) if d.sealed_len == Some(3)));
        assert_eq!(r.durable_len(), 3);
        assert_eq!(r.on_seal(1, 3), ControlDecision::Unchanged);
        assert!(matches!(
            r.on_seal(1, 2),
            ControlDecision::Refuse(Refusal::SealConflict { .. })
        ));
        assert_eq!(
            r.on_append(1, 3, 1, 0),
            AppendDecision::Refuse(Refusal::Sealed { len: 3 })
        );
        assert_eq!(r.readable_end(u64::MAX), 3);
    }

    #[test]
    fn seal_below_the_known_watermark_is_refused() {
        let mut r = Replica::new();
        let _ = r.on_append(1, 0, 5, 0);
        r.on_durable(5);
        assert!(r.on_watermark(1, 4));
        assert_eq!(
            r.on_seal(1, 0),
            ControlDecision::Refuse(Refusal::SealBelowCommit { commit: 4 })
        );
        assert_eq!(
            r.on_seal(9, 3),
            ControlDecision::Refuse(Refusal::SealBelowCommit { commit: 4 })
        );
        assert_eq!((r.durable_len(), r.sealed_len()), (5, None));
        assert!(matches!(r.on_seal(1, 4), ControlDecision::Persist(d) if d.sealed_len == Some(4)));
        // Sealed: a lower seal is a conflict, never a shrink.
        assert!(matches!(
            r.on_seal(1, 0),
            ControlDecision::Refuse(Refusal::SealConflict { .. })
        ));
        assert_eq!(r.durable_len(), 4);
    }

    #[test]
    fn recovery_applies_seal_and_bounds_watermark() {
        let d = Durable {
            fenced_epoch: 3,
            sealed_len: Some(4),
            watermark: 2,
        };
        let r = Replica::recovered(6, 5, d);
        assert_eq!(r.durable_len(), 4);
        assert_eq!(r.watermark(), 4);
        let r = Replica::recovered(6, 5, Durable::default());
        assert_eq!((r.durable_len(), r.watermark()), (6, 5));
    }

    #[test]
    fn damage_stops_reads_and_appends_at_the_damaged_entry() {
        let mut r = Replica::recovered(6, 6, Durable::default());
        assert_eq!(r.missing_from(), None);
        r.mark_damaged(4);
        r.mark_damaged(5);
        assert_eq!(r.damaged_from(), Some(4), "the lower offset stays");
        assert_eq!(r.missing_from(), Some(4));
        assert_eq!(r.readable_end(u64::MAX), 4);
        assert_eq!(r.readable_end(6), 4);
        assert_eq!(
            r.on_append(1, 6, 1, 0),
            AppendDecision::Refuse(Refusal::Damaged { from: 4 })
        );
        // A sealed replica holding less than its seal misses the rest.
        let sealed = Durable {
            sealed_len: Some(8),
            ..Durable::default()
        };
        let r = Replica::recovered(6, 6, sealed);
        assert_eq!(r.damaged_from(), None);
        assert_eq!(r.missing_from(), Some(6));
        assert_eq!(r.readable_end(8), 6);
    }

    #[test]
    fn a_sealed_replica_short_of_its_seal_is_healed_by_appends_up_to_the_seal() {
        let sealed = Durable {
            fenced_epoch: 3,
            sealed_len: Some(8),
            watermark: 8,
        };
        let mut r = Replica::recovered(8, 8, sealed);
        assert!(!r.healing(), "a whole sealed replica takes nothing");
        assert_eq!(
            r.on_append(1, 0, 8, 0),
            AppendDecision::Refuse(Refusal::Sealed { len: 8 })
        );
        r.mark_damaged(5);
        assert!(!r.healing(), "damage is dropped before healing starts");
        assert_eq!(r.rewind_damage(), 5);
        assert_eq!((r.durable_len(), r.missing_from()), (5, Some(5)));
        assert_eq!(r.readable_end(8), 5);
        assert!(r.healing());
        // Older epochs than the fence are taken: the entries under a seal
        // are the same from every correct writer.
        assert_eq!(
            r.on_append(1, 7, 1, 0),
            AppendDecision::Refuse(Refusal::Gap { len: 5 })
        );
        assert_eq!(
            r.on_append(1, 6, 3, 0),
            AppendDecision::Refuse(Refusal::Sealed { len: 8 }),
            "nothing past the seal"
        );
        assert_eq!(
            r.on_append(1, 3, 4, 0),
            AppendDecision::Accept { skip: 2, end: 7 }
        );
        assert_eq!(r.on_append(1, 4, 2, 0), AppendDecision::Held { end: 6 });
        r.on_durable(7);
        assert_eq!(r.missing_from(), Some(7));
        assert_eq!(
            r.on_append(1, 7, 1, 0),
            AppendDecision::Accept { skip: 0, end: 8 }
        );
        assert!(!r.healing());
        assert!(
            !r.control_answerable(),
            "the seal answer waits for the drain"
        );
        r.on_durable(8);
        assert_eq!((r.missing_from(), r.readable_end(8)), (None, 8));
        assert_eq!(r.on_seal(1, 8), ControlDecision::Unchanged);
        assert_eq!(r.sealed_len(), Some(8), "a heal never moves the seal");
    }
}
