//! A slow replica: noticed from the acks, left within milliseconds.
//!
//! The producer commits an entry once every replica of the segment holds
//! it, so one slow replica (a stalling disk, a congested link, a busy
//! host) would make every append as slow as it. Quorum systems hide such
//! a replica; trilog leaves it: the producer switches the segment to
//! other nodes, as for a failure, but decided from timing instead of an
//! error.
//!
//! **Noticing.** A replica is a *laggard* when it alone holds the commit
//! back: it has appends in flight, and every other replica acknowledged
//! past what it did ([`AckTracker::laggard`]). It is *slow* once it has
//! been the laggard for longer than the lag limit:
//!
//! ```text
//! limit = max(slow_lag_floor_ms, SLOW_LAG_FACTOR x typical ack latency)
//! ```
//!
//! where the typical latency is the larger of the median of the replicas'
//! smoothed ack latencies (a single slow replica does not move the
//! median) and what the other replicas took for the append the laggard
//! holds up (the smoothed latencies trail a sudden overload). Being past
//! the limit once is a *strike*; the replica is left at its
//! `slow_strikes`-th strike (2 by default) in a row, each within
//! [`SLOW_STRIKE_WINDOW_MS`] of the last: one stall of a healthy disk is
//! one strike, a slow replica strikes again at its next append. A replica
//! is judged only once it answered an append of the segment: the first
//! one creates the segment on its node, which is slower on one node than
//! another for reasons that say nothing of the appends after it. So on a
//! quiet cluster with 1.5 ms appends a replica 10 ms behind is left after
//! about 6 ms, while under a load that makes every ack take 30 ms a
//! replica must trail by 120 ms first: what is normal for the load is
//! never taken for slowness. The ack timeout stays the last resort for a
//! replica that answers nothing at all.
//!
//! **Leaving.** The switch is the failure switch ([`super::change`]):
//! the commit watermark is frozen, the segment sealed at it, the next one
//! published by one CAS, every entry past the seal resent there. Only the
//! placement differs: the slow node is *avoided*, not excluded, and it is
//! *benched*: left out of this producer's placements for
//! `slow_bench_ms` while enough other nodes are alive.
//!
//! **Ready in advance.** The producer keeps a [`View`]: its record with
//! the version, and the alive nodes, first from its open (the record the
//! open's CAS stored), refreshed every `view_refresh_ms` by a read of its
//! own and after each of its changes. A slow replica is
//! only left when the view has a placement without it (and without the
//! benched nodes): a slow replica with nowhere else to go is kept (it is
//! slow, not failed), and the number of slow switches in a bench period is
//! bounded by the number of spare nodes. With a fresh view the switch goes
//! straight to the CAS, one metadata round trip; if the record moved
//! meanwhile (a trim, a repair) the CAS conflicts, and the switch reads
//! the record again at once, as a failure switch would.
//!
//! Leaving a slow replica is as safe as leaving a failed one: the seal is
//! at the commit watermark, which every replica (the slow one too) holds.
//! What the others acknowledged past it is committed only once the next
//! segment holds it.

use trilog_wire::meta::LogMeta;

use super::{Action, Change, Phase, Producer, SLOW_STRIKE_WINDOW_MS};
use crate::actions::Actions;
use crate::meta_call::{MetaCall, MetaRetry};
use crate::metadata::switch_segment;
use crate::mutant::{self, Mutant};
use crate::placement::{choose_replicas, Candidate};
use crate::NodeId;

/// The lag limit in typical ack latencies.
pub const SLOW_LAG_FACTOR: u64 = 4;

/// What the producer last knew of its log's record and of the nodes: what
/// a switch places from without reading first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct View {
    /// The record's version, as of the producer's last read or CAS.
    pub version: u64,
    pub record: LogMeta,
    /// The nodes a new segment may go to, as of `alive_at_ms`.
    pub alive: Vec<Candidate>,
    pub alive_at_ms: u64,
}

impl Producer {
    /// Sets the view a slow switch places from (a driver that has just read
    /// the record hands it over, so no refresh read is needed at once).
    pub fn set_view(&mut self, version: u64, record: LogMeta, alive: Vec<Candidate>, now_ms: u64) {
        self.view = Some(View {
            version,
            record,
            alive,
            alive_at_ms: now_ms,
        });
        self.view_read_at_ms = Some(now_ms);
    }

    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// Nodes benched for slowness at `now_ms`.
    pub fn benched(&self, now_ms: u64) -> Vec<NodeId> {
        self.benched
            .iter()
            .filter(|(_, until)| *until > now_ms)
            .map(|(node, _)| *node)
            .collect()
    }

    /// Where a switch away from a slow replica would go, as the view
    /// stands at `now_ms`: the id of the segment it would open (a switch
    /// follows the producer's own segment, so the next id), and the nodes
    /// of the placement for each replica that could be left, together. A
    /// driver connects to them before it is needed: a connection is a
    /// millisecond or two of a switch that happens while an append waits.
    /// `None` without a view, while a switch is under way, or with slow
    /// switching off. A hint only: the switch places as it finds things.
    pub fn standby(&self, now_ms: u64) -> Option<(u64, Vec<NodeId>)> {
        if !self.slow_switching() || self.view.is_none() || self.phase != Phase::Writing {
            return None;
        }
        let mut nodes: Vec<NodeId> = (0..self.segment.replicas.len())
            .filter_map(|i| self.slow_placement(i, now_ms))
            .flatten()
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        Some((self.segment.id + 1, nodes))
    }

    fn slow_switching(&self) -> bool {
        self.cfg.slow_lag_floor_ms != u64::MAX
    }

    /// How long a replica may hold the commit back alone now.
    pub fn lag_limit_ms(&self) -> u64 {
        let typical_x16 = self.acks.typical_latency_x16().unwrap_or(0);
        let adaptive = (SLOW_LAG_FACTOR.saturating_mul(typical_x16)).div_ceil(16);
        self.cfg.slow_lag_floor_ms.max(adaptive)
    }

    /// When the laggard, if any, passes its lag limit: only while writing,
    /// with its connection up, once per lag episode. Cheap, since every
    /// poll of the timers asks: whether there is somewhere else to go is
    /// judged when it fires ([`leave_slow_replica`](Self::leave_slow_replica)).
    pub(super) fn slow_at_ms(&self) -> Option<u64> {
        if !self.slow_switching() || !self.sending() || self.change.is_some() {
            return None;
        }
        let (i, since) = self.acks.laggard()?;
        if self.struck == Some((i, self.acks.replica(i).acked)) {
            return None;
        }
        // A replica that has not answered in this segment yet is not
        // judged: the first append of a segment creates it on the node
        // (a file, its control record, their syncs), which takes longer
        // on one node than another without saying anything of later ones.
        let r = self.acks.replica(i);
        if r.latency_x16.is_none() || !self.links[i].is_up() {
            return None;
        }
        // What the others took for the append it holds up (sent to all at
        // once): the limit follows the load as it is now, not only as the
        // smoothed latencies saw it. They trail a sudden overload, when
        // every replica slows at once and one of them is always last; a
        // thousand producers leaving replicas at that moment would add
        // their switches to the overload.
        let sent_at = r.in_flight.front().map_or(since, |&(_, at)| at);
        let others_ms = since.saturating_sub(sent_at);
        let limit = self
            .lag_limit_ms()
            .max(SLOW_LAG_FACTOR.saturating_mul(others_ms));
        Some(since.saturating_add(limit))
    }

    /// A placement of the next segment without replica `i`'s node and the
    /// benched ones, from the view.
    fn slow_placement(&self, i: usize, now_ms: u64) -> Option<Vec<NodeId>> {
        let view = self.view.as_ref()?;
        let mut avoid = self.benched(now_ms);
        avoid.push(self.segment.replicas[i]);
        let seed = self.cfg.seed.wrapping_add(self.placements);
        choose_replicas(&view.alive, &avoid, self.cfg.replicas, seed).ok()
    }

    /// Whether the view is recent enough to place from without a read.
    fn view_fresh(&self, now_ms: u64) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| now_ms.saturating_sub(v.alive_at_ms) < self.cfg.view_refresh_ms)
    }

    /// When the view is to be read again: only while writing with slow
    /// switching on, no metadata call out, and a refresh period set.
    pub(super) fn view_refresh_at_ms(&self) -> Option<u64> {
        let due = self.slow_switching()
            && self.cfg.view_refresh_ms != u64::MAX
            && self.sending()
            && self.change.is_none()
            && !self.view_reading;
        if !due {
            return None;
        }
        Some(match self.view_read_at_ms {
            None => 0,
            Some(at) => at.saturating_add(self.cfg.view_refresh_ms),
        })
    }

    /// Reads the record and the alive nodes for the view, if due.
    pub(super) fn refresh_view(&mut self, now_ms: u64, out: &mut Actions<Action>) {
        if self.view_refresh_at_ms().is_some_and(|at| at <= now_ms) {
            self.view_reading = true;
            self.view_read_at_ms = Some(now_ms);
            out.push(Action::Meta(MetaCall::ReadRecord));
        }
    }

    /// The view after a read answered with `record` at `version`.
    pub(super) fn viewed(
        &mut self,
        version: u64,
        record: Option<&LogMeta>,
        alive: &[Candidate],
        now_ms: u64,
    ) {
        self.view = record.map(|record| View {
            version,
            record: record.clone(),
            alive: alive.to_vec(),
            alive_at_ms: now_ms,
        });
    }

    /// The view after this producer's CAS stored `record` at `version`, or
    /// a conflict showed it: the nodes stay as they were read.
    pub(super) fn record_seen(&mut self, version: u64, record: Option<&LogMeta>) {
        match (record, &mut self.view) {
            (Some(record), Some(view)) => {
                view.version = version;
                view.record = record.clone();
            }
            (None, _) => self.view = None,
            (Some(_), None) => {}
        }
    }

    /// Time passed: the laggard, if past its limit now, strikes; on its
    /// last strike it is left (the actions of the switch). `None` if it is
    /// not left.
    pub(super) fn leave_slow_replica(&mut self, now_ms: u64) -> Option<Actions<Action>> {
        if self.slow_at_ms().is_none_or(|at| at > now_ms) {
            return None;
        }
        let (i, _) = self.acks.laggard()?;
        let node = self.segment.replicas[i];
        let episode = Some((i, self.acks.replica(i).acked));
        if self.slow_placement(i, now_ms).is_none() {
            // Nowhere else to go: slow, not failed, so it is kept; this
            // episode is passed over (no strike, no timer again).
            self.struck = episode;
            return None;
        }
        let count = match self.strike {
            Some((n, at, count))
                if n == node && now_ms.saturating_sub(at) <= SLOW_STRIKE_WINDOW_MS =>
            {
                count.saturating_add(1)
            }
            _ => 1,
        };
        if count < self.cfg.slow_strikes {
            self.strike = Some((node, now_ms, count));
            self.struck = episode;
            return None;
        }
        self.strike = None;
        if mutant::active(Mutant::SlowReplicaCountedAsAcked) {
            // MUTANT SlowReplicaCountedAsAcked: the replica being left is
            // taken to hold what the others acknowledged, so that much is
            // committed and sealed.
            let peers = (0..self.segment.replicas.len())
                .filter(|j| *j != i)
                .map(|j| self.acks.replica(j).acked)
                .min()
                .unwrap_or(0);
            let mut out = Actions::new();
            if let Some(commit) = self.acks.on_ack(i, peers, now_ms) {
                self.advance_commit(commit, &mut out);
            }
            out.extend(self.switch_away(node, now_ms));
            return Some(out);
        }
        Some(self.switch_away(node, now_ms))
    }

    /// Freezes the commit, benches `node` and switches: straight to the
    /// CAS with a fresh view, else by a read first.
    fn switch_away(&mut self, node: NodeId, now_ms: u64) -> Actions<Action> {
        let seal_len = self.acks.commit();
        assert_eq!(
            self.segment.first_seq + seal_len,
            self.committed,
            "seal exactly at the commit"
        );
        self.benched
            .retain(|(n, until)| *n != node && *until > now_ms);
        self.benched
            .push((node, now_ms.saturating_add(self.cfg.slow_bench_ms)));
        self.benched.sort_unstable();
        self.phase = Phase::Switching {
            segment: self.segment.id,
            seal_len,
        };
        let avoid = self.benched(now_ms);
        if !self.view_fresh(now_ms) || self.view_reading {
            return self.start_change(Vec::new(), avoid, now_ms);
        }
        let Some(view) = self.view.clone() else {
            unreachable!("a fresh view is there");
        };
        let proposed = self
            .slow_placement_from(&view, node, now_ms)
            .and_then(|replicas| {
                switch_segment(
                    &view.record,
                    self.epoch,
                    self.segment.id,
                    seal_len,
                    &replicas,
                )
                .ok()
            });
        let Some(proposed) = proposed else {
            // The view does not show the segment open at this epoch: the
            // read decides (and stops the producer if it was taken over).
            return self.start_change(Vec::new(), avoid, now_ms);
        };
        self.placements += 1;
        let (mut retry, _read) =
            MetaRetry::start(now_ms, self.cfg.meta_pause_ms, self.cfg.meta_patience_ms);
        let call = retry.propose(view.version, proposed);
        self.change = Some(Change {
            retry,
            exclude: Vec::new(),
            avoid,
            from_view: true,
        });
        vec![Action::Meta(call)].into()
    }

    fn slow_placement_from(&self, view: &View, node: NodeId, now_ms: u64) -> Option<Vec<NodeId>> {
        let avoid = self.benched(now_ms);
        debug_assert!(avoid.contains(&node), "the slow node is benched first");
        let seed = self.cfg.seed.wrapping_add(self.placements);
        choose_replicas(&view.alive, &avoid, self.cfg.replicas, seed).ok()
    }
}
