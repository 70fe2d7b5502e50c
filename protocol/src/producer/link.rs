//! The producer's connections to the replicas of its open segment.
//!
//! A lost connection (a reset, a node that restarted) is not a failed
//! replica yet: the producer connects again, pausing between attempts, and
//! resends from what the replica acknowledged (a replica holds at least
//! that; what it holds past it is acknowledged again, a gap is answered
//! with its length). Only a replica that stays unreachable for an ack
//! timeout, or loses its connection again within one, is failed, and the
//! segment switched away from it. So a node restart or a network blip
//! costs each log a resend, not a new segment.
//!
//! Resending to a restarted replica is safe only because everything a
//! replica answered is durable first, its fence included: a replica that
//! forgot a fence would take the old producer's appends again after a
//! takeover (the mutant FenceNotDurable, which the simulator catches this
//! way).

use super::{Action, Producer};
use crate::actions::Actions;

/// Pause between two attempts to reach a replica again.
pub const RECONNECT_PAUSE_MS: u64 = 100;

/// One replica's connection, as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    Up {
        /// When the connection was last made again, if it was.
        reconnected_at_ms: Option<u64>,
    },
    /// Lost at `since_ms`; an attempt is under way, or the next one is due
    /// at `retry_at_ms`.
    Reconnecting {
        since_ms: u64,
        retry_at_ms: Option<u64>,
    },
}

impl Link {
    pub const NEW: Link = Link::Up {
        reconnected_at_ms: None,
    };

    pub fn is_up(&self) -> bool {
        matches!(self, Link::Up { .. })
    }
}

impl Producer {
    /// The connection to replica `replica` of `segment` was lost (or a send
    /// on it failed). Connects again, or fails the replica if it lost a
    /// connection made again within an ack timeout.
    pub fn handle_connection_lost(
        &mut self,
        replica: usize,
        segment: u64,
        now_ms: u64,
    ) -> Actions<Action> {
        if segment != self.segment.id || !self.sending() {
            return Actions::new();
        }
        let flapping = match self.links[replica] {
            Link::Reconnecting { .. } => return Actions::new(),
            Link::Up { reconnected_at_ms } => reconnected_at_ms
                .is_some_and(|at| now_ms.saturating_sub(at) < self.cfg.ack_timeout_ms),
        };
        if flapping {
            return self.fail_replica(replica, now_ms);
        }
        // What was in flight on the lost connection is gone: resend from
        // what the replica acknowledged, once connected again.
        self.acks.rewind(replica, 0);
        self.commit_told[replica] = 0;
        self.links[replica] = Link::Reconnecting {
            since_ms: now_ms,
            retry_at_ms: None,
        };
        vec![self.reconnect_action(replica)].into()
    }

    fn reconnect_action(&self, replica: usize) -> Action {
        Action::Reconnect {
            replica,
            node: self.segment.replicas[replica],
            segment: self.segment.id,
        }
    }

    /// The driver connected to replica `replica` of `segment` again:
    /// resends from what it acknowledged.
    pub fn handle_reconnected(
        &mut self,
        replica: usize,
        segment: u64,
        now_ms: u64,
    ) -> Actions<Action> {
        if segment != self.segment.id || self.links[replica].is_up() {
            return Actions::new();
        }
        self.links[replica] = Link::Up {
            reconnected_at_ms: Some(now_ms),
        };
        self.told_at_ms[replica] = now_ms;
        let mut out = Actions::new();
        if self.sending() {
            self.fill_windows(now_ms, &mut out);
        }
        out
    }

    /// An attempt to reach replica `replica` of `segment` again failed:
    /// another after a pause, or the replica fails once an ack timeout
    /// has passed since the connection was lost.
    pub fn handle_reconnect_failed(
        &mut self,
        replica: usize,
        segment: u64,
        now_ms: u64,
    ) -> Actions<Action> {
        if segment != self.segment.id || !self.sending() {
            return Actions::new();
        }
        let Link::Reconnecting { since_ms, .. } = self.links[replica] else {
            return Actions::new();
        };
        if now_ms.saturating_sub(since_ms) >= self.cfg.ack_timeout_ms {
            return self.fail_replica(replica, now_ms);
        }
        self.links[replica] = Link::Reconnecting {
            since_ms,
            retry_at_ms: Some(now_ms.saturating_add(RECONNECT_PAUSE_MS)),
        };
        Actions::new()
    }

    /// The next moment a lost connection needs the machine: a retry due,
    /// or the deadline of one lost for an ack timeout.
    pub(super) fn link_timeout(&self) -> Option<u64> {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Reconnecting {
                    retry_at_ms: Some(at),
                    ..
                } => Some(*at),
                Link::Reconnecting { since_ms, .. } => {
                    Some(since_ms.saturating_add(self.cfg.ack_timeout_ms))
                }
                Link::Up { .. } => None,
            })
            .min()
    }

    /// Retries that are due, and replicas unreachable for an ack timeout.
    pub(super) fn link_timers(&mut self, now_ms: u64) -> Option<Actions<Action>> {
        for replica in 0..self.links.len() {
            let Link::Reconnecting {
                since_ms,
                retry_at_ms,
            } = self.links[replica]
            else {
                continue;
            };
            if now_ms.saturating_sub(since_ms) >= self.cfg.ack_timeout_ms {
                return Some(self.fail_replica(replica, now_ms));
            }
            if retry_at_ms.is_some_and(|at| at <= now_ms) {
                self.links[replica] = Link::Reconnecting {
                    since_ms,
                    retry_at_ms: None,
                };
                return Some(vec![self.reconnect_action(replica)].into());
            }
        }
        None
    }
}
