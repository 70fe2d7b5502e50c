//! The cluster as scripts see it: `trilog status --json`.
//!
//! One JSON object:
//!
//! ```text
//! {"nodes": [{"id", "addr", "zone", "alive", "full", "bytes_used",
//!             "bytes_free", "host", "shard_ports", "lease_remaining_ms",
//!             "mode": "active" | "leaving" | "removed"}],
//!  "logs":  [{"id", "epoch", "version", "trim_seq", "deleted",
//!             "segments": [SEG], "deleting": [SEG]}]}
//! SEG = {"id", "first_seq", "epoch", "state": "open" | "sealed",
//!        "len" (the sealed length; null while open), "replicas": [node ids]}
//! ```
//!
//! `addr` is `host:port` of the node's first shard (shard i listens on
//! the i-th of `shard_ports`); `deleting` holds the segments a trim or a
//! delete took out of the chain whose files may still be on their
//! replicas. Every node the store knows is listed, dead ones with
//! `"alive": false`. Fields may be added; none is removed or renamed.

use serde_json::{json, Value};
use trilog_wire::meta::{LogMeta, NodeStatus, SegmentMeta};

use crate::error::ClientError;
use crate::MetaStore;

/// The status object (see the module doc), read from `meta`.
pub async fn status_json(meta: &dyn MetaStore) -> Result<Value, ClientError> {
    let nodes = meta.list_nodes(true).await?;
    let mut logs = Vec::new();
    for log_id in meta.list_logs().await? {
        let v = meta.get_log(log_id).await?;
        if let Some(record) = v.record {
            logs.push(log_json(&record, v.version));
        }
    }
    Ok(json!({
        "nodes": nodes.iter().map(node_json).collect::<Vec<_>>(),
        "logs": logs,
    }))
}

pub fn node_json(n: &NodeStatus) -> Value {
    let addr = n
        .info
        .shard_ports
        .first()
        .map(|port| format_addr(&n.info.host, *port));
    json!({
        "id": n.info.node_id,
        "addr": addr,
        "zone": n.info.zone,
        "alive": n.alive,
        "full": n.info.full,
        "bytes_used": n.info.bytes_used,
        "bytes_free": n.info.bytes_free,
        "host": n.info.host,
        "shard_ports": n.info.shard_ports,
        "lease_remaining_ms": n.lease_remaining_ms,
        "mode": n.mode.name(),
    })
}

pub fn log_json(r: &LogMeta, version: u64) -> Value {
    json!({
        "id": r.log_id,
        "epoch": r.epoch,
        "version": version,
        "trim_seq": r.trim_seq,
        "deleted": r.deleted,
        "segments": r.segments.iter().map(segment_json).collect::<Vec<_>>(),
        "deleting": r.deleting.iter().map(segment_json).collect::<Vec<_>>(),
    })
}

fn segment_json(s: &SegmentMeta) -> Value {
    json!({
        "id": s.id,
        "first_seq": s.first_seq,
        "epoch": s.epoch,
        "state": if s.sealed_len.is_some() { "sealed" } else { "open" },
        "len": s.sealed_len,
        "replicas": s.replicas,
    })
}

/// `host:port`, with an IPv6 host in brackets.
fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trilog_wire::meta::NodeInfo;

    #[test]
    fn the_json_has_the_documented_fields() {
        let node = NodeStatus {
            info: NodeInfo {
                node_id: 4,
                host: "::1".into(),
                shard_ports: vec![7400, 7401],
                zone: "a".into(),
                capacity_bytes: 0,
                incarnation: 1,
                bytes_used: 10,
                bytes_free: 20,
                full: true,
            },
            alive: true,
            lease_remaining_ms: 5,
            mode: trilog_wire::meta::NodeMode::Leaving,
        };
        let n = node_json(&node);
        assert_eq!(n["id"], 4);
        assert_eq!(n["addr"], "[::1]:7400");
        assert_eq!(n["zone"], "a");
        assert_eq!(n["alive"], true);
        assert_eq!(n["full"], true);
        assert_eq!(n["mode"], "leaving");
        assert_eq!(
            (n["bytes_used"].clone(), n["bytes_free"].clone()),
            (json!(10), json!(20))
        );
        let seg = |id, sealed_len| SegmentMeta {
            id,
            replicas: vec![1, 2, 3],
            first_seq: id * 10,
            epoch: 1,
            sealed_len,
        };
        let record = LogMeta {
            log_id: 9,
            epoch: 2,
            trim_seq: 10,
            segments: vec![seg(1, Some(5)), seg(2, None)],
            deleting: vec![seg(0, Some(10))],
            deleted: false,
        };
        let l = log_json(&record, 7);
        assert_eq!((l["id"].clone(), l["epoch"].clone()), (json!(9), json!(2)));
        assert_eq!(l["trim_seq"], 10);
        let s = &l["segments"];
        assert_eq!(s[0]["state"], "sealed");
        assert_eq!(s[0]["len"], 5);
        assert_eq!(s[1]["state"], "open");
        assert!(s[1]["len"].is_null());
        assert_eq!(s[1]["replicas"], json!([1, 2, 3]));
        assert_eq!(s[1]["first_seq"], 20);
        assert_eq!(l["deleting"][0]["id"], 0);
    }
}
