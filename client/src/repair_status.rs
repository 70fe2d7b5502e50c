//! What `trilog repair --status` shows: the sealed segments that lack a
//! replica now, from the metadata alone, and where the cluster will copy
//! each one (the target `trilog_protocol::repair` gives it, as the nodes
//! compute it). The nodes run the repairs; this only looks.

use trilog_meta::MetaStore;
use trilog_protocol::repair::{repair_target, shortfalls, LostNodes, NodeView};
use trilog_protocol::NodeId;

use crate::error::ClientError;

/// One sealed segment with replicas on dead nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderReplicated {
    pub log_id: u64,
    pub segment: u64,
    pub sealed_len: u64,
    pub replicas: Vec<NodeId>,
    /// Replicas whose node has no live registration now.
    pub dead: Vec<NodeId>,
    /// The node that will copy the first dead replica once its node has
    /// been dead for the nodes' grace period (`None`: no writable node
    /// outside the replica set, or no live replica to copy from).
    pub target: Option<NodeId>,
}

/// Every sealed segment of every log with a replica on a node that is not
/// alive now.
pub async fn under_replicated(meta: &dyn MetaStore) -> Result<Vec<UnderReplicated>, ClientError> {
    let nodes = meta.list_nodes(true).await?;
    let views: Vec<NodeView> = nodes.iter().map(NodeView::of).collect();
    // A grace of 0: "dead now" is what the status shows; the nodes wait
    // for their grace period before they copy.
    let mut lost = LostNodes::new(0);
    lost.observe(0, &views);
    let mut out = Vec::new();
    for log_id in meta.list_logs().await? {
        let Some(record) = meta.get_log(log_id).await?.record else {
            continue;
        };
        for short in shortfalls(&record, &mut lost, 0) {
            let Some(seg) = record.segments.iter().find(|s| s.id == short.segment) else {
                continue;
            };
            let target = match (short.lost.first(), short.alive.is_empty()) {
                (Some(first), false) => repair_target(log_id, seg, *first, &lost),
                _ => None,
            };
            out.push(UnderReplicated {
                log_id,
                segment: seg.id,
                sealed_len: seg.sealed_len.unwrap_or(0),
                replicas: seg.replicas.clone(),
                dead: short.lost,
                target,
            });
        }
    }
    Ok(out)
}
