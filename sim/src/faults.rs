//! The faults of one run, drawn from its seed before it starts, so a seed
//! names one schedule: what strikes, when, for how long.

use std::time::Duration;

use crate::rng::Rng;

/// One fault. Each that lasts is undone at its end (a heal, a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reset one open connection (whichever the run's rng picks then).
    ResetConnection,
    /// Cut node `node` off from every other host for `lasting`.
    Partition { node: u64, lasting: Duration },
    /// Kill node `node` (its disk crashes: unsynced writes are lost or torn)
    /// and restart it after `down`.
    CrashNode { node: u64, down: Duration },
    /// Make node `node` slower by `extra` each way for `lasting`.
    SlowNode {
        node: u64,
        extra: Duration,
        lasting: Duration,
    },
    /// Fill node `node`'s disk (no more room than it uses) for `lasting`.
    FullDisk { node: u64, lasting: Duration },
    /// The metadata store loses calls, before or after applying them, for
    /// `lasting`: unknown outcomes.
    MetaLossy { lasting: Duration },
    /// The metadata store answers nothing for `lasting`.
    MetaDown { lasting: Duration },
    /// Kill the newest producer (its process dies) and take the log over
    /// with a new one.
    KillProducerAndTakeOver,
    /// Take the log over with a new producer while the newest still writes.
    RacingTakeover,
    /// Cut node `node` off from the newest producer's host only (an
    /// asymmetric partition: other clients still reach it) for `lasting`.
    CutLink { node: u64, lasting: Duration },
    /// A racing takeover that reaches only one replica of the open segment
    /// (the new producer's host is cut from the two others for `lasting`),
    /// and that one replica crashes `crash_after` later, down for `down`:
    /// the fence it answered must survive the crash.
    IsolatedTakeover {
        lasting: Duration,
        crash_after: Duration,
        down: Duration,
    },
    /// A client that is no producer sends replica `node` of a segment of
    /// the record (sealed or open) a `Seal{len: 0}` below the watermark it
    /// knows (`crate::rogue`).
    RogueSeal { node: u64 },
}

/// A fault and when it strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// The bounds of a run's schedule.
#[derive(Debug, Clone, Copy)]
pub struct FaultBounds {
    pub nodes: u64,
    /// Faults drawn, at most.
    pub faults_max: u32,
    /// Faults strike within this window from the start.
    pub window: Duration,
    /// Takeovers allowed (each kills or races the newest producer).
    pub takeovers_max: u32,
}

fn ms(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.between(lo, hi))
}

/// Draws a schedule: sorted by time.
pub fn plan(rng: &mut Rng, bounds: &FaultBounds) -> Vec<Planned> {
    assert!(bounds.nodes > 0, "a cluster has nodes");
    let count = rng.between(0, u64::from(bounds.faults_max));
    let window_ms = u64::try_from(bounds.window.as_millis()).unwrap_or(u64::MAX);
    let mut takeovers = 0;
    let mut out = Vec::new();
    for _ in 0..count {
        let at = Duration::from_millis(rng.between(0, window_ms));
        let node = rng.between(1, bounds.nodes);
        let fault = match rng.below(13) {
            0 | 1 => Fault::ResetConnection,
            2 => Fault::Partition {
                node,
                lasting: ms(rng, 50, 2_500),
            },
            3 => Fault::CrashNode {
                node,
                down: ms(rng, 10, 2_000),
            },
            4 => Fault::SlowNode {
                node,
                extra: ms(rng, 1, 40),
                lasting: ms(rng, 100, 3_000),
            },
            5 => Fault::FullDisk {
                node,
                lasting: ms(rng, 100, 2_000),
            },
            6 => Fault::MetaLossy {
                lasting: ms(rng, 100, 3_000),
            },
            7 => Fault::MetaDown {
                lasting: ms(rng, 100, 3_000),
            },
            8 if takeovers < bounds.takeovers_max => {
                takeovers += 1;
                Fault::KillProducerAndTakeOver
            }
            9 if takeovers < bounds.takeovers_max => {
                takeovers += 1;
                Fault::RacingTakeover
            }
            10 => Fault::CutLink {
                node,
                lasting: ms(rng, 50, 2_500),
            },
            11 if takeovers < bounds.takeovers_max => {
                takeovers += 1;
                Fault::IsolatedTakeover {
                    lasting: ms(rng, 200, 2_500),
                    crash_after: ms(rng, 1, 400),
                    down: ms(rng, 10, 1_000),
                }
            }
            12 => Fault::RogueSeal { node },
            _ => Fault::ResetConnection,
        };
        out.push(Planned { at, fault });
    }
    out.sort_by_key(|p| p.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_schedule_within_its_bounds() {
        let bounds = FaultBounds {
            nodes: 5,
            faults_max: 8,
            window: Duration::from_secs(3),
            takeovers_max: 1,
        };
        let a = plan(&mut Rng::new(11), &bounds);
        assert_eq!(a, plan(&mut Rng::new(11), &bounds));
        let mut kinds = std::collections::HashSet::new();
        for seed in 0..200 {
            let p = plan(&mut Rng::new(seed), &bounds);
            assert!(p.len() <= 8);
            assert!(p.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(p.iter().all(|f| f.at <= bounds.window));
            let takeovers = p
                .iter()
                .filter(|f| {
                    matches!(
                        f.fault,
                        Fault::KillProducerAndTakeOver
                            | Fault::RacingTakeover
                            | Fault::IsolatedTakeover { .. }
                    )
                })
                .count();
            assert!(takeovers <= 1);
            for f in p {
                kinds.insert(std::mem::discriminant(&f.fault));
            }
        }
        assert_eq!(kinds.len(), 12, "every kind of fault is drawn");
    }
}
