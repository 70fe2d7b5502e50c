//! The configurations the model check runs: the scenarios whose
//! invariants are checked, the two liveness configurations, and for each
//! mutant the property and the smallest configuration that refute it.

use stateright::Property;
use trilog_protocol::mutant::Mutant;

use crate::model::props;
use crate::model::{Config, Trilog};

/// Release builds check the full bounds; the test profile (opt-level 1,
/// debug assertions on) checks smaller ones.
pub fn full() -> bool {
    !cfg!(debug_assertions)
}

/// 4 nodes, 3 replicas, a window of 2, producer 1 with `p1_entries`
/// entries, no takeover and no fault: each scenario adds its own.
fn base(p1_entries: u8) -> Config {
    Config {
        nodes: 4,
        replicas: 3,
        window: 2,
        p1_entries,
        takeover: false,
        p2_entries: 1,
        losses: 0,
        dups: 0,
        reorders: 0,
        delayed_flushes: 0,
        node_crashes: 0,
        torn: false,
        producer_crash: false,
        taker_crash: false,
        replica_failures: 0,
        connection_losses: 0,
        tail_read_failures: true,
        tail_write_failures: 0,
        consumer_failovers: 0,
        unknown_cas: 0,
        rogue_seals: 0,
        seed: 0,
        max_segments: 2,
        consumer: true,
        async_segments: 1,
        prune_noops: false,
        node_losses: 0,
        repair: false,
        decommissions: 0,
        trims: 0,
        damages: 0,
        sweeps: 0,
        learnt_seals: 0,
        slow: false,
        slow_strikes: 1,
    }
}

/// Producer 2 takes over while producer 1 (with `p1_entries` entries)
/// still writes, then appends one entry of its own.
fn racing_p1(p1_entries: u8) -> Config {
    Config {
        takeover: true,
        ..base(p1_entries)
    }
}

/// A configuration whose invariants are checked, with the discoveries it
/// must reach.
pub struct Scenario {
    pub name: &'static str,
    pub cfg: Config,
    pub discoveries: &'static [&'static str],
}

/// Entries of producer 1 without and with a takeover.
fn entries() -> (u8, u8) {
    if full() {
        (3, 2)
    } else {
        (2, 1)
    }
}

/// The pipeline under network faults: a lost append or ack, a
/// duplicate, a reordered pair (gaps, resends, stale acks).
pub fn network() -> Scenario {
    let full = full();
    let (alone, _) = entries();
    Scenario {
        name: "network",
        cfg: Config {
            losses: 1,
            dups: 1,
            reorders: u8::from(full),
            ..base(alone)
        },
        discoveries: &[],
    }
}

/// A node crash and restart with appends staged but not flushed
/// (lost, or on disk unacknowledged), and a consumer failover.
pub fn crash() -> Scenario {
    let (alone, _) = entries();
    Scenario {
        name: "crash",
        cfg: Config {
            node_crashes: 1,
            torn: true,
            delayed_flushes: 1,
            consumer_failovers: 1,
            ..base(alone)
        },
        discoveries: &[props::READ_AFTER_CRASH],
    }
}

/// A segment switch (a replica failure declared at any moment), with a
/// lost message (a seal a replica never hears of) and a consumer
/// failover.
pub fn switch() -> Scenario {
    let full = full();
    let (alone, _) = entries();
    Scenario {
        name: "switch",
        cfg: Config {
            replica_failures: 1,
            losses: u8::from(full),
            consumer_failovers: 1,
            ..base(alone)
        },
        discoveries: &[props::SEGMENT_SEALED],
    }
}

/// Connections lost and made again, around a node crash that loses
/// staged appends: the producer resends from what each replica
/// acknowledged; a second loss within an ack timeout (or a connection
/// never made again) fails the replica and switches the segment.
///
/// 2 entries in both profiles, and the test profile loses one connection
/// only: the reconnections under way interleave with every other step.
pub fn reconnect() -> Scenario {
    Scenario {
        name: "reconnect",
        cfg: Config {
            connection_losses: if full() { 2 } else { 1 },
            node_crashes: 1,
            delayed_flushes: 1,
            ..base(2)
        },
        discoveries: &[props::RESENT_AFTER_RECONNECT],
    }
}

/// A segment switch whose CAS has an unknown outcome (applied, lost, or
/// landing later), and a consumer failover: the producer reads the
/// record back and carries on, and is never fenced by a made-up epoch.
pub fn switch_unknown() -> Scenario {
    let (alone, _) = entries();
    Scenario {
        name: "switch-unknown",
        cfg: Config {
            replica_failures: 1,
            unknown_cas: 1,
            consumer_failovers: 1,
            ..base(alone)
        },
        discoveries: &[props::SEGMENT_SEALED, props::UNKNOWN_RESOLVED],
    }
}

/// The takeover racing producer 1 while its window is full.
pub fn race() -> Scenario {
    let full = full();
    Scenario {
        name: "race",
        cfg: racing_p1(if full { 3 } else { 2 }),
        discoveries: &[
            props::SEGMENT_SEALED,
            props::TAKEOVER_DONE,
            props::TAIL_CARRIED_OVER,
            props::PRODUCER_FENCED,
        ],
    }
}

/// The takeover racing producer 1, which may crash instead, with an
/// append left unflushed when a fence arrives, and a consumer
/// failover.
pub fn race_flush() -> Scenario {
    let (_, racing) = entries();
    Scenario {
        name: "race-flush",
        cfg: Config {
            producer_crash: true,
            delayed_flushes: 1,
            consumer_failovers: 1,
            ..racing_p1(racing)
        },
        discoveries: &[props::TAKEOVER_DONE, props::TAIL_CARRIED_OVER],
    }
}

/// The takeover racing producer 1 with a node crash and restart;
/// producer 2 may crash too, at any point.
pub fn race_crash() -> Scenario {
    let (_, racing) = entries();
    Scenario {
        name: "race-crash",
        cfg: Config {
            node_crashes: 1,
            taker_crash: true,
            ..racing_p1(racing)
        },
        discoveries: &[props::TAKEOVER_DONE, props::READ_AFTER_CRASH],
    }
}

/// The takeover racing producer 1 with a lost message (a fence, an
/// answer, a seal, an append, an ack); producer 2 may crash too, at
/// any point (after writing the tail and before its CAS, say).
pub fn race_loss() -> Scenario {
    let (_, racing) = entries();
    Scenario {
        name: "race-loss",
        cfg: Config {
            losses: 1,
            taker_crash: true,
            ..racing_p1(racing)
        },
        discoveries: &[props::TAKEOVER_DONE, props::TAIL_CARRIED_OVER],
    }
}

/// The takeover racing producer 1 with a metadata CAS whose outcome
/// is unknown (applied, lost, or landing later): the bump, bumped
/// again, or the seal, read back; producer 2 may crash too.
pub fn race_unknown() -> Scenario {
    let (_, racing) = entries();
    Scenario {
        name: "race-unknown",
        cfg: Config {
            unknown_cas: 1,
            taker_crash: true,
            // A bump bumped again skips an id.
            max_segments: 3,
            ..racing_p1(racing)
        },
        discoveries: &[
            props::TAKEOVER_DONE,
            props::TAIL_CARRIED_OVER,
            props::UNKNOWN_RESOLVED,
        ],
    }
}

/// The tail written to the next segment before it is published,
/// on an asynchronous network: a replica's write fails (the
/// segment is placed again without it), producer 2 crashes, at any
/// point. The test profile leaves out producer 2's
/// crash and the tail read timing out (every other race scenario has
/// it).
pub fn race_tail() -> Scenario {
    let full = full();
    Scenario {
        name: "race-tail",
        cfg: Config {
            tail_write_failures: 1,
            taker_crash: full,
            tail_read_failures: full,
            async_segments: 2,
            p2_entries: 0,
            ..racing_p1(1)
        },
        discoveries: &[
            props::TAKEOVER_DONE,
            props::TAIL_CARRIED_OVER,
            props::TAIL_REPLACED,
        ],
    }
}

/// The takeover racing producer 1 with a lost message, and a replica of
/// a segment the record seals learning that seal at any step (as a shard
/// does for an idle segment): a replica that knew a higher watermark than
/// the takeover's seal takes it from the record, dropping entries the
/// takeover carried into the next segment.
pub fn learn_seal() -> Scenario {
    let (_, racing) = entries();
    Scenario {
        name: "learn-seal",
        cfg: Config {
            losses: 1,
            learnt_seals: 1,
            ..racing_p1(racing)
        },
        discoveries: &[props::TAKEOVER_DONE, props::LEARNT_BELOW_WATERMARK],
    }
}

/// A rogue `Seal{len: 0}` reaching one replica that knows a commit
/// watermark, at any moment (before or after its segment is sealed by a
/// switch, whose seal to one replica may be lost): refused, so nothing
/// committed is lost and no sealed segment shrinks.
pub fn rogue_seal() -> Scenario {
    Scenario {
        name: "rogue-seal",
        cfg: Config {
            rogue_seals: 1,
            replica_failures: 1,
            losses: u8::from(full()),
            ..base(2)
        },
        discoveries: &[props::SEGMENT_SEALED, props::ROGUE_SEAL_REFUSED],
    }
}

/// A node lost for good after a switch sealed segment 0, and the repair
/// of its replica of segment 0 onto the one node that holds none, racing
/// producer 1's appends to segment 1 and a crash of any node (the copy's
/// target too, losing what it staged).
pub fn repair() -> Scenario {
    let full = full();
    Scenario {
        name: "repair",
        cfg: Config {
            replica_failures: 1,
            node_losses: 1,
            repair: true,
            node_crashes: 1,
            delayed_flushes: u8::from(full),
            ..base(if full { 2 } else { 1 })
        },
        discoveries: &[props::SEGMENT_SEALED, props::REPAIR_PUBLISHED],
    }
}

/// A node decommissioned after a switch sealed segment 0: it stays up
/// with its disk whole, and repair moves its replica of segment 0 onto the
/// one node that holds none, reading from whichever replica comes first,
/// the leaving node included, racing producer 1's appends to segment 1
/// and a crash of any node (the leaving one, and the copy's target, too).
pub fn decommission() -> Scenario {
    let full = full();
    Scenario {
        name: "decommission",
        cfg: Config {
            replica_failures: 1,
            decommissions: 1,
            repair: true,
            node_crashes: 1,
            delayed_flushes: u8::from(full),
            ..base(if full { 2 } else { 1 })
        },
        discoveries: &[props::SEGMENT_SEALED, props::REPAIR_PUBLISHED],
    }
}

/// A damaged copy healed: after a switch sealed segment 0, any of its
/// replicas loses any suffix of its entries to damage (found and dropped
/// at once), and its node heals it from another replica with the
/// production refill job, racing producer 1's appends to segment 1 (and
/// its stale appends to segment 0, which the healing copy may take), the
/// consumer, and a crash of any node (the healing one too).
pub fn heal() -> Scenario {
    let full = full();
    Scenario {
        name: "heal",
        cfg: Config {
            replica_failures: 1,
            damages: 1,
            node_crashes: 1,
            delayed_flushes: u8::from(full),
            ..base(if full { 2 } else { 1 })
        },
        discoveries: &[props::SEGMENT_SEALED, props::COPY_HEALED],
    }
}

/// The orphan sweep racing a takeover whose tail write to one node fails
/// (that node's copy of the next segment is left out of the record: an
/// orphan for good) and producer 1's appends: a node may sweep any copy
/// the record shows unlisted for good, at any step. Nothing committed is
/// lost; a takeover's tail written before its CAS is never swept.
pub fn sweep() -> Scenario {
    let full = full();
    Scenario {
        name: "sweep",
        cfg: Config {
            tail_write_failures: 1,
            async_segments: 2,
            p2_entries: 0,
            sweeps: if full { 2 } else { 1 },
            ..racing_p1(1)
        },
        discoveries: &[
            props::TAKEOVER_DONE,
            props::TAIL_REPLACED,
            props::COPY_SWEPT,
        ],
    }
}

/// Trims racing producer 1's segment switches: two replica failures
/// declared at any moment, two trims at any point the record allows
/// (inside a sealed segment or at its end), each replica of a deleting
/// segment unlinked at any later step, the drop at any step after the
/// unlinks, stale appends to an unlinked replica answered `Deleted`.
///
/// The test profile has 1 entry (no trim point inside a segment) and 1
/// trim: 2 entries made it 1.2 M states, a minute.
///
/// No consumer (`trim-read` has one): with it this is 339 K states and
/// 18 s in the test profile alone; `ReadCommitted` and `LogOrder` hold
/// trivially here.
pub fn trim() -> Scenario {
    let full = full();
    Scenario {
        name: "trim",
        cfg: Config {
            replica_failures: 2,
            trims: if full { 2 } else { 1 },
            consumer: false,
            max_segments: 3,
            ..base(if full { 2 } else { 1 })
        },
        discoveries: &[props::TRIM_DROPPED, props::TRIM_RACED_SWITCH],
    }
}

/// A consumer reading while trims move the trim point (inside segment 0
/// or at its end) after a switch: with a stale record it reads a replica
/// that may be unlinked (answered `Deleted`: it reads the record again),
/// and meets the trim point when a trim passed its position (the client
/// then returns `ClientError::Trimmed`: the consumer stops).
pub fn trim_read() -> Scenario {
    let full = full();
    Scenario {
        name: "trim-read",
        cfg: Config {
            replica_failures: 1,
            trims: if full { 2 } else { 1 },
            ..base(if full { 2 } else { 1 })
        },
        discoveries: &[props::TRIM_DROPPED, props::CONSUMER_MET_TRIM],
    }
}

/// A replica left for being slow: producer 1's lag timer fires whenever
/// one replica alone holds its commit back (a strike; the second one
/// leaves it), and it switches straight by a CAS from its view; a trim moves the record under that view (the CAS
/// conflicts, the record is read). A consumer failover, and in the full
/// profile a lost message.
pub fn slow() -> Scenario {
    let full = full();
    Scenario {
        name: "slow",
        cfg: Config {
            slow: true,
            // Two strikes, as shipped: a replica lags past its limit at
            // two appends before it is left, hence 3 entries.
            slow_strikes: 2,
            trims: 1,
            losses: u8::from(full),
            consumer_failovers: 1,
            ..base(3)
        },
        discoveries: &[props::SLOW_REPLICA_LEFT, props::SEGMENT_SEALED],
    }
}

/// Progress when a slow replica is left: every entry is committed and
/// read. FIFO, no loss; acyclic (time only moves forward).
pub fn liveness_slow_config() -> Config {
    Config {
        slow: true,
        consumer_failovers: 1,
        prune_noops: true,
        ..base(2)
    }
}

/// Progress with a segment switch: no loss, duplicate or crash, one
/// replica failure declared at any moment, a consumer failover. Acyclic
/// (checked), so stateright judges `eventually` at real terminal states.
pub fn liveness_switch_config() -> Config {
    Config {
        replica_failures: 1,
        consumer_failovers: 1,
        prune_noops: true,
        ..base(if full() { 3 } else { 2 })
    }
}

/// Progress with a segment switch whose CAS has an unknown outcome
/// (applied, lost, or landing later): the producer that still owns its
/// log commits every entry it took. 2 entries in both profiles: the
/// unknown outcome multiplies the states by five.
pub fn liveness_unknown_config() -> Config {
    Config {
        replica_failures: 1,
        unknown_cas: 1,
        consumer_failovers: 1,
        prune_noops: true,
        ..base(2)
    }
}

/// Progress through a takeover racing producer 1: every entry producer 2
/// takes is committed and every committed entry is read (producer 1's
/// entries that it had not seen committed are undetermined: it is
/// fenced, so they do not count). No fault, no tail read timeout.
pub fn liveness_race_config() -> Config {
    Config {
        tail_read_failures: false,
        prune_noops: true,
        ..racing_p1(if full() { 2 } else { 1 })
    }
}

/// The property that refutes mutant `m`, and the configuration it is
/// checked in.
pub fn mutant_case(m: Mutant) -> (Property<Trilog>, Config) {
    let quiet = base(2);
    let race = racing_p1(2);
    let invariant = props::invariant;
    match m {
        Mutant::CommitOnTwoAcks => (invariant(props::COMMIT_DURABILITY), quiet),
        Mutant::ReadPastWatermark => (invariant(props::READ_COMMITTED), quiet),
        Mutant::ResendStoredTwice => (invariant(props::LOG_ORDER), Config { dups: 1, ..base(3) }),
        Mutant::NoTailCopy => (invariant(props::COMMIT_DURABILITY), race),
        Mutant::FenceAnsweredBeforeDrain => (
            invariant(props::COMMIT_DURABILITY),
            Config {
                delayed_flushes: 1,
                ..race
            },
        ),
        Mutant::TakeoverWithoutFence => (invariant(props::SINGLE_WRITER), race),
        Mutant::FenceNotDurable => (
            invariant(props::SINGLE_WRITER),
            Config {
                node_crashes: 1,
                ..race
            },
        ),
        Mutant::SealAtLongest => (invariant(props::SEALED_COMPLETE), race),
        Mutant::WatermarkNotSent => (props::progress(), liveness_switch_config()),
        // Sealing before the carried tail is durable on every replica of
        // the next segment (the first design sealed before any had it; the
        // checker refuted it while it was built, docs/verification.md).
        // The tail writes must be asynchronous for one to land before
        // another.
        Mutant::SealBeforeTailDurable => (
            invariant(props::COMMIT_DURABILITY),
            Config {
                async_segments: 2,
                p2_entries: 0,
                p1_entries: 1,
                ..race
            },
        ),
        // The old driver's made-up fence after a switch CAS whose outcome
        // was unknown: no takeover at all, yet the producer says fenced.
        Mutant::UnknownCasIsFence => (
            invariant(props::REAL_FENCE),
            Config {
                replica_failures: 1,
                unknown_cas: 1,
                ..base(1)
            },
        ),
        // A rogue `Seal{len: 0}` truncates a replica that knows entries
        // committed; its segment open or sealed in the record.
        Mutant::SealBelowWatermark => (
            invariant(props::SEALED_NEVER_SHRINKS),
            Config {
                rogue_seals: 1,
                ..quiet
            },
        ),
        // A repair that publishes its copy once the entries were sent to
        // it: the record names a replica that holds them only in memory.
        Mutant::RepairPublishedBeforeDurable => (
            invariant(props::REPAIRED_DURABLE),
            Config {
                replica_failures: 1,
                node_losses: 1,
                repair: true,
                ..base(1)
            },
        ),
        // A heal that takes the damaged copy, sealed at the right length,
        // for whole: it ends with the copy short of its seal.
        Mutant::HealTakesShortCopyAsWhole => (
            invariant(props::REPAIRED_DURABLE),
            Config {
                replica_failures: 1,
                damages: 1,
                ..base(1)
            },
        ),
        // A sweep that takes a copy past the record's last segment for an
        // orphan: a takeover's tail, swept before its CAS publishes it.
        Mutant::SweepPastLast => (
            invariant(props::COMMIT_DURABILITY),
            Config {
                async_segments: 2,
                p2_entries: 0,
                sweeps: 1,
                ..racing_p1(1)
            },
        ),
        // A trim inside segment 0, sealed by a switch with both entries:
        // the mutant deletes all of it, and the committed entry at the
        // trim point with it.
        // Leaving a slow replica while counting it as holding what the
        // others acknowledged: committed entries it never got.
        Mutant::SlowReplicaCountedAsAcked => (
            invariant(props::COMMIT_DURABILITY),
            Config {
                slow: true,
                ..quiet
            },
        ),
        Mutant::TrimPastPoint => (
            invariant(props::COMMIT_DURABILITY),
            Config {
                replica_failures: 1,
                trims: 1,
                consumer: false,
                ..quiet
            },
        ),
    }
}
