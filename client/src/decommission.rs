//! `trilog node decommission`, driven: marks a node leaving, waits while
//! repair moves its sealed copies and producers switch their open
//! segments away, finishes the deletions that still name it, then removes
//! it. Every decision is `trilog_protocol::decommission`'s and repair's;
//! this only carries the steps out and reports progress.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use trilog_protocol::decommission::{holding, Holding};
use trilog_wire::meta::NodeMode;

use crate::error::ClientError;
use crate::pool::ConnPool;

/// How often the records are read again while the node drains.
pub const DECOMMISSION_POLL_MS: u64 = 1_000;

/// What still keeps the node, over every log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drain {
    /// Per log, what its record keeps on the node (logs keeping nothing
    /// are left out).
    pub logs: BTreeMap<u64, Holding>,
}

impl Drain {
    pub fn sealed(&self) -> usize {
        self.logs.values().map(|h| h.sealed.len()).sum()
    }

    pub fn open(&self) -> usize {
        self.logs.values().map(|h| h.open.len()).sum()
    }

    pub fn deleting(&self) -> usize {
        self.logs.values().map(|h| h.deleting.len()).sum()
    }

    /// Whether the node may be removed now.
    pub fn done(&self) -> bool {
        self.logs.values().all(|h| !h.blocks_removal())
    }
}

/// How a decommission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decommissioned {
    /// Removed now (or before).
    Removed,
    /// Still leaving when the wait ended: what holds it.
    StillLeaving(Drain),
}

/// Everything every record keeps on `node`.
pub async fn drain_state(pool: &ConnPool, node: u64) -> Result<Drain, ClientError> {
    let meta = pool.meta();
    let mut drain = Drain::default();
    for log_id in meta.list_logs().await? {
        let Some(record) = meta.get_log(log_id).await?.record else {
            continue;
        };
        let h = holding(&record, node);
        if h != Holding::default() {
            drain.logs.insert(log_id, h);
        }
    }
    Ok(drain)
}

/// Decommissions `node` (see the module doc), waiting at most `wait`
/// for it to drain; `progress` is told what is left whenever that changes.
/// A node already removed is `Removed` at once. A node the store has
/// never heard of (no registration, no record listing it) is an error:
/// a typo must not remove an id a new machine would get later.
pub async fn decommission(
    pool: &ConnPool,
    node: u64,
    wait: Duration,
    mut progress: impl FnMut(&Drain),
) -> Result<Decommissioned, ClientError> {
    pool.require(trilog_wire::Kind::MetaSetNodeMode, "decommission a node")?;
    let meta = pool.meta();
    let mode = meta
        .node_modes()
        .await?
        .into_iter()
        .find(|m| m.node_id == node)
        .map_or(NodeMode::Active, |m| m.mode);
    if mode == NodeMode::Removed {
        return Ok(Decommissioned::Removed);
    }
    let known = meta
        .list_nodes(true)
        .await?
        .iter()
        .any(|n| n.info.node_id == node);
    let drain = drain_state(pool, node).await?;
    if !known && drain.logs.is_empty() && mode == NodeMode::Active {
        return Err(ClientError::Decommission {
            node,
            why: "no such node: no registration and no record names it".into(),
        });
    }
    meta.set_node_mode(node, NodeMode::Leaving).await?;
    let deadline = Instant::now() + wait;
    let mut last: Option<Drain> = None;
    loop {
        let drain = drain_state(pool, node).await?;
        if last.as_ref() != Some(&drain) {
            progress(&drain);
        }
        if drain.done() {
            // While it lives, it unlinks them; once removed, what it did
            // not confirm is forgotten (its disk never serves again).
            finish_deletions(pool, &drain).await;
            meta.set_node_mode(node, NodeMode::Removed).await?;
            finish_deletions(pool, &drain_state(pool, node).await?).await;
            return Ok(Decommissioned::Removed);
        }
        if Instant::now() >= deadline {
            return Ok(Decommissioned::StillLeaving(drain));
        }
        last = Some(drain);
        tokio::time::sleep(Duration::from_millis(DECOMMISSION_POLL_MS)).await;
    }
}

/// Unlinks, while the node still lives, the deleting segments that name
/// it; what fails is left to the rule that a removed node counts as
/// having unlinked (see `trilog_protocol::decommission`).
async fn finish_deletions(pool: &ConnPool, drain: &Drain) {
    for (log_id, h) in &drain.logs {
        if h.deleting.is_empty() {
            continue;
        }
        if let Err(e) = crate::trim::trim(pool, *log_id, None).await {
            log::warn!("log {log_id}: finishing its deletions: {e}");
        }
    }
}

/// Calls a decommission off: the node is active again (refused once it
/// is removed). Copies moved already stay where they went.
pub async fn cancel(pool: &ConnPool, node: u64) -> Result<(), ClientError> {
    pool.require(
        trilog_wire::Kind::MetaSetNodeMode,
        "call a decommission off",
    )?;
    pool.meta().set_node_mode(node, NodeMode::Active).await?;
    Ok(())
}
