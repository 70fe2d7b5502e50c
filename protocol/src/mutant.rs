//! Deliberately broken variants of the protocol, for the model checker.
//!
//! Each [`Mutant`] names one bug a careful implementer could plausibly
//! write. A hook in the protocol code asks [`active`] whether its mutant is
//! selected and, if so, behaves wrongly in exactly that way. The model
//! check (`protocol/tests/model_check.rs`) selects each mutant in turn and
//! requires the checker to refute it with a counterexample: a property
//! that no mutant can break would be a property without teeth.
//!
//! Without the `mutants` cargo feature (every build that ships) [`active`]
//! is a constant `false`, so the hooks compile away. With it (the test
//! build), no mutant is selected until [`set`] selects one.

/// A deliberately broken variant of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Mutant {
    /// `acks.rs`: the commit watermark is the second smallest acked length,
    /// so an entry counts as committed on 2 of 3 replicas.
    CommitOnTwoAcks = 1,
    /// `takeover.rs`: the takeover seals at the longest answering replica's
    /// length instead of the known commit watermark.
    SealAtLongest = 2,
    /// `replica.rs`: the fence epoch is not written down, so a restart
    /// forgets it.
    FenceNotDurable = 3,
    /// `replica.rs`: an open segment is readable up to the durable length,
    /// past the commit watermark.
    ReadPastWatermark = 4,
    /// `replica.rs`: a fence only asks for the replica's lengths and does
    /// not stop older appends (a takeover without a fence).
    TakeoverWithoutFence = 5,
    /// `replica.rs`: a fence is answered at once with the durable length,
    /// without waiting for appends staged before it.
    FenceAnsweredBeforeDrain = 6,
    /// `takeover.rs`: the takeover drops the tail past the seal instead of
    /// carrying it into the next segment.
    NoTailCopy = 7,
    /// `replica.rs`: an exact resend of held entries is stored again
    /// instead of being acknowledged again.
    ResendStoredTwice = 8,
    /// `producer.rs`: an idle producer never sends the commit watermark
    /// alone, so replicas do not learn that the last entries committed.
    WatermarkNotSent = 9,
    /// `takeover.rs`: the takeover seals and publishes the next segment
    /// once one of its replicas holds the tail, not all of them (like the
    /// first design, which published it before any did: the new segment
    /// then places committed entries where not every replica has them).
    SealBeforeTailDurable = 10,
    /// `producer/change.rs`: a switch or seal CAS whose outcome is unknown
    /// (the metadata store timed out) is taken for a fence by the next
    /// epoch, as the client's driver once did: a producer that still owns
    /// its log reports itself taken over and stops.
    UnknownCasIsFence = 11,
    /// `replica.rs`: a replica applies a seal below the commit watermark it
    /// knows (a `Seal{len: 0}` from any sender truncates committed entries).
    SealBelowWatermark = 12,
    /// `trim.rs`: a trim deletes every sealed segment that *starts* before
    /// the trim point, not only those that end at or before it: a segment
    /// reaching past the point goes with the committed entries it holds
    /// there.
    TrimPastPoint = 13,
    /// `repair.rs`: a repair publishes its copy once every entry was sent
    /// to it, before the copy is durable (and sealed).
    RepairPublishedBeforeDurable = 14,
    /// `repair.rs`: a heal (or a refill) takes a copy that is sealed at
    /// the segment's length for a whole one, without asking whether it
    /// holds every entry under that seal (what the job did before copies
    /// could be short of their seal).
    HealTakesShortCopyAsWhole = 15,
    /// `shard/orphans.rs` (`sweepable`): a copy of a segment past the
    /// record's last one is taken for an orphan, though a takeover writes
    /// the next segment's tail before the CAS that publishes it.
    SweepPastLast = 16,
    /// `producer/slow.rs`: a replica left for being slow is taken to hold
    /// what the other replicas acknowledged ("it is being left anyway"),
    /// so that much is reported committed and sealed, though it is on the
    /// other replicas only.
    SlowReplicaCountedAsAcked = 17,
}

impl Mutant {
    /// Every mutant, for checkers that must refute each one.
    pub const ALL: &'static [Mutant] = &[
        Mutant::CommitOnTwoAcks,
        Mutant::SealAtLongest,
        Mutant::FenceNotDurable,
        Mutant::ReadPastWatermark,
        Mutant::TakeoverWithoutFence,
        Mutant::FenceAnsweredBeforeDrain,
        Mutant::NoTailCopy,
        Mutant::ResendStoredTwice,
        Mutant::WatermarkNotSent,
        Mutant::SealBeforeTailDurable,
        Mutant::UnknownCasIsFence,
        Mutant::SealBelowWatermark,
        Mutant::TrimPastPoint,
        Mutant::RepairPublishedBeforeDurable,
        Mutant::HealTakesShortCopyAsWhole,
        Mutant::SweepPastLast,
        Mutant::SlowReplicaCountedAsAcked,
    ];
}

#[cfg(feature = "mutants")]
static ACTIVE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Selects `mutant` (or none) for the whole process.
///
/// Panics if a mutant is asked for in a build without the `mutants`
/// feature: a test that meant to break the protocol must not silently run
/// the correct one.
pub fn set(mutant: Option<Mutant>) {
    #[cfg(feature = "mutants")]
    ACTIVE.store(
        mutant.map_or(0, |m| m as u8),
        std::sync::atomic::Ordering::SeqCst,
    );
    #[cfg(not(feature = "mutants"))]
    assert!(
        mutant.is_none(),
        "mutant {mutant:?} asked for in a build without the `mutants` feature"
    );
}

/// Whether `mutant` is selected. A constant `false` without the `mutants`
/// feature.
#[inline(always)]
pub fn active(mutant: Mutant) -> bool {
    #[cfg(feature = "mutants")]
    {
        ACTIVE.load(std::sync::atomic::Ordering::Relaxed) == mutant as u8
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = mutant;
        false
    }
}
