//! The decision, pure: given what the data directory holds and what the
//! node was started with (and, for an empty directory, whether the
//! metadata says this node id held replicas), whether the node may start,
//! and which identity file it then keeps or writes.

use std::path::PathBuf;

use trilog_meta::format_cluster_id;

use super::file::NodeIdentity;

/// What the data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirState {
    pub path: PathBuf,
    pub identity: Option<NodeIdentity>,
    /// Any segment file (data, control, or one being created) in a shard
    /// directory.
    pub has_segments: bool,
}

/// What the node was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Given {
    pub node_id: u64,
    /// The store's cluster id; None without a store (`--meta`).
    pub cluster_id: Option<u64>,
    /// `--replace`.
    pub replace: bool,
    /// A fresh random incarnation, used if a new identity is written.
    pub fresh_incarnation: u64,
}

/// A segment of the metadata that lists this node id as a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedReplica {
    pub log_id: u64,
    pub segment: u64,
    /// How many segments list the id in all.
    pub segments: usize,
}

/// Why a new identity file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// An empty directory the metadata knows nothing of.
    FirstStart,
    /// A directory with segments from before identity files.
    Adopted,
    /// The file had no cluster id (a start without a store); now it has.
    ClusterLearned,
    /// `--replace` on an empty directory of a node that held replicas.
    Replaces(ListedReplica),
}

/// What the node does with its identity file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep(NodeIdentity),
    Write(NodeIdentity, Written),
}

impl Verdict {
    pub fn identity(&self) -> NodeIdentity {
        match self {
            Verdict::Keep(i) | Verdict::Write(i, _) => *i,
        }
    }
}

/// Why the node must not start on this directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "data directory {path} belongs to node {file_node_id}, not to --node-id {given_node_id}; \
         start node {file_node_id} on it, or give node {given_node_id} its own directory"
    )]
    OtherNodeId {
        path: PathBuf,
        file_node_id: u64,
        given_node_id: u64,
    },
    #[error(
        "data directory {path} belongs to cluster {}, but the metadata store is cluster {}; \
         this node's data is not this cluster's",
        format_cluster_id(*file_cluster_id),
        format_cluster_id(*store_cluster_id)
    )]
    OtherCluster {
        path: PathBuf,
        file_cluster_id: u64,
        store_cluster_id: u64,
    },
    #[error(
        "data directory {path} is empty, but the metadata lists node {node_id} as a replica of \
         {} segments (log {}, segment {} among them): its data was lost; if this node replaces \
         the lost one, start it with --replace (its replicas will be repaired)",
        listed.segments, listed.log_id, listed.segment
    )]
    WipedDir {
        path: PathBuf,
        node_id: u64,
        listed: ListedReplica,
    },
}

/// Whether the node may start on `dir` as `given`. `listed` is only looked
/// at for an empty directory (no identity file, no segments), where it says
/// whether the metadata lists this node id as a replica.
pub fn decide(
    dir: &DirState,
    given: &Given,
    listed: Option<ListedReplica>,
) -> Result<Verdict, Refusal> {
    assert_ne!(given.node_id, 0);
    assert_ne!(given.fresh_incarnation, 0);
    let fresh = |written| {
        let identity = NodeIdentity {
            node_id: given.node_id,
            cluster_id: given.cluster_id,
            incarnation: given.fresh_incarnation,
        };
        Ok(Verdict::Write(identity, written))
    };
    let Some(file) = dir.identity else {
        if dir.has_segments {
            return fresh(Written::Adopted);
        }
        return match listed {
            None => fresh(Written::FirstStart),
            Some(listed) if given.replace => fresh(Written::Replaces(listed)),
            Some(listed) => Err(Refusal::WipedDir {
                path: dir.path.clone(),
                node_id: given.node_id,
                listed,
            }),
        };
    };
    if file.node_id != given.node_id {
        return Err(Refusal::OtherNodeId {
            path: dir.path.clone(),
            file_node_id: file.node_id,
            given_node_id: given.node_id,
        });
    }
    match (file.cluster_id, given.cluster_id) {
        (Some(ours), Some(store)) if ours != store => Err(Refusal::OtherCluster {
            path: dir.path.clone(),
            file_cluster_id: ours,
            store_cluster_id: store,
        }),
        (None, Some(store)) => Ok(Verdict::Write(
            NodeIdentity {
                cluster_id: Some(store),
                ..file
            },
            Written::ClusterLearned,
        )),
        // Same cluster, or no store to check against.
        _ => Ok(Verdict::Keep(file)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTED: ListedReplica = ListedReplica {
        log_id: 7,
        segment: 3,
        segments: 2,
    };

    fn dir(identity: Option<NodeIdentity>, has_segments: bool) -> DirState {
        DirState {
            path: "/data/n2".into(),
            identity,
            has_segments,
        }
    }

    fn given(node_id: u64, cluster_id: Option<u64>, replace: bool) -> Given {
        Given {
            node_id,
            cluster_id,
            replace,
            fresh_incarnation: 99,
        }
    }

    fn file(node_id: u64, cluster_id: Option<u64>) -> NodeIdentity {
        NodeIdentity {
            node_id,
            cluster_id,
            incarnation: 5,
        }
    }

    #[test]
    fn a_directory_keeps_its_identity() {
        let f = file(2, Some(10));
        assert_eq!(
            decide(&dir(Some(f), true), &given(2, Some(10), false), None),
            Ok(Verdict::Keep(f))
        );
        // Without a store nothing is checked but the node id.
        assert_eq!(
            decide(&dir(Some(f), false), &given(2, None, false), None),
            Ok(Verdict::Keep(f))
        );
        // --replace on a directory with an identity changes nothing.
        assert_eq!(
            decide(&dir(Some(f), true), &given(2, Some(10), true), Some(LISTED)),
            Ok(Verdict::Keep(f))
        );
    }

    #[test]
    fn another_node_id_or_cluster_is_refused() {
        let refused = decide(
            &dir(Some(file(2, Some(10))), true),
            &given(3, Some(10), false),
            None,
        );
        let refusal = refused.expect_err("refused");
        assert_eq!(
            refusal,
            Refusal::OtherNodeId {
                path: "/data/n2".into(),
                file_node_id: 2,
                given_node_id: 3
            }
        );
        let text = refusal.to_string();
        assert!(
            text.contains("/data/n2") && text.contains("node 2") && text.contains("--node-id 3"),
            "{text}"
        );
        let refused = decide(
            &dir(Some(file(2, Some(10))), true),
            &given(2, Some(11), false),
            None,
        );
        let text = refused.expect_err("refused").to_string();
        assert!(
            text.contains("000000000000000a") && text.contains("000000000000000b"),
            "{text}"
        );
    }

    #[test]
    fn a_first_start_without_a_store_learns_its_cluster_later() {
        assert_eq!(
            decide(
                &dir(Some(file(2, None)), true),
                &given(2, Some(10), false),
                None
            ),
            Ok(Verdict::Write(file(2, Some(10)), Written::ClusterLearned))
        );
    }

    #[test]
    fn new_and_old_directories_get_an_identity() {
        let fresh = NodeIdentity {
            node_id: 2,
            cluster_id: Some(10),
            incarnation: 99,
        };
        assert_eq!(
            decide(&dir(None, false), &given(2, Some(10), false), None),
            Ok(Verdict::Write(fresh, Written::FirstStart))
        );
        // Segments but no file: a directory from before identity files.
        assert_eq!(
            decide(&dir(None, true), &given(2, Some(10), false), Some(LISTED)),
            Ok(Verdict::Write(fresh, Written::Adopted))
        );
    }

    #[test]
    fn a_wiped_directory_needs_replace() {
        let refused = decide(&dir(None, false), &given(2, Some(10), false), Some(LISTED));
        let text = refused.expect_err("refused").to_string();
        assert!(
            text.contains("--replace") && text.contains("log 7, segment 3"),
            "{text}"
        );
        let fresh = NodeIdentity {
            node_id: 2,
            cluster_id: Some(10),
            incarnation: 99,
        };
        assert_eq!(
            decide(&dir(None, false), &given(2, Some(10), true), Some(LISTED)),
            Ok(Verdict::Write(fresh, Written::Replaces(LISTED)))
        );
    }
}
