//! A node's identity: which node a data directory belongs to, in which
//! cluster, and which incarnation of the node it is ([`mod@file`]), checked at
//! every start before anything else touches the directory:
//!
//! - a directory created as another node id, or in another cluster, is
//!   refused;
//! - a node id another live process holds (a live registration of another
//!   incarnation) is refused: the store refuses such a registration too,
//!   which closes the race between this check and the registration;
//! - an empty directory (no identity file, no segment) whose node id the
//!   metadata lists as a replica is refused: the node lost its data, and
//!   answering as if it never held anything could lose acknowledged
//!   entries. `--replace` says the operator knows: the node starts empty
//!   with a fresh identity, and the repair thread's first scan refills
//!   every sealed segment the records list it for from the other replicas
//!   (docs/protocol.md, "Repair"; until a copy is sealed, readers go to the
//!   other replicas);
//! - a directory with segments but no identity file (from before identity
//!   files) adopts the given id once, logged.
//!
//! The decision is pure ([`mod@decide`]); this module reads the directory,
//! asks the store ([`store`]) and writes the file.

pub mod decide;
pub mod file;
pub mod store;

use std::path::Path;

use trilog_meta::{format_cluster_id, MetaError, NodeIdTaken};

use crate::config::NodeConfig;
use crate::storage::{SegmentKey, CREATING_SUFFIX, CTL_SUFFIX, DATA_SUFFIX};
use decide::{decide, DirState, Given, ListedReplica, Refusal, Verdict, Written};
use file::{IdentityFileError, NodeIdentity};
use store::StartStore;

/// Why the node's identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] IdentityFileError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    NodeIdTaken(#[from] NodeIdTaken),
    #[error("metadata store {meta}: {what} failed for {waited_ms} ms: {source}")]
    Meta {
        meta: String,
        what: &'static str,
        waited_ms: u64,
        #[source]
        source: Box<MetaError>,
    },
    #[error("cannot start a runtime for the start-up checks: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Checks `config.data_dir` against the node's id, the store's cluster and
/// its registrations (see the module doc), writes the identity file if it
/// is new or changed, and returns it. Blocks the calling thread.
pub fn establish(
    config: &NodeConfig,
    tls: Option<&std::sync::Arc<trilog_tls::TlsIdentity>>,
) -> Result<NodeIdentity, IdentityError> {
    let path = &config.data_dir;
    std::fs::create_dir_all(path).map_err(|source| IdentityError::DataDir {
        path: path.clone(),
        source,
    })?;
    let dir = DirState {
        path: path.clone(),
        identity: file::load(path)?,
        has_segments: has_segments(path)?,
    };
    let mut given = Given {
        node_id: config.node_id,
        cluster_id: None,
        replace: config.replace,
        fresh_incarnation: new_incarnation(),
    };
    let mut listed = None;
    if let Some(meta) = &config.meta {
        // On a thread of its own: the caller may be inside a runtime
        // already (a test starting nodes in its process), where blocking
        // on another one would panic.
        let consulted = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(IdentityError::Runtime)?;
                    runtime.block_on(consult(meta, tls, &dir, config.node_id))
                })
                .join()
        });
        let (cluster_id, found) = match consulted {
            Ok(answer) => answer?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        given.cluster_id = Some(cluster_id);
        listed = found;
    }
    let verdict = decide(&dir, &given, listed)?;
    if let Verdict::Write(identity, why) = verdict {
        file::save(path, &identity)?;
        log_written(path, &identity, why);
    }
    Ok(verdict.identity())
}

/// A random non-zero 64-bit stamp: the same draw as a cluster id.
fn new_incarnation() -> u64 {
    trilog_meta::new_cluster_id()
}

/// The store's side of the checks: its cluster id, no live holder of the
/// id, and, for an empty directory only, whether the id holds replicas.
async fn consult(
    meta: &trilog_meta::MetaAddr,
    tls: Option<&std::sync::Arc<trilog_tls::TlsIdentity>>,
    dir: &DirState,
    node_id: u64,
) -> Result<(u64, Option<ListedReplica>), IdentityError> {
    let store = StartStore::connect(meta, tls).await?;
    let cluster_id = store.cluster_id().await?;
    let ours = dir.identity.map(|i| i.incarnation);
    store.check_not_held(node_id, ours).await?;
    let listed = if dir.identity.is_none() && !dir.has_segments {
        store.listed_replica(node_id).await?
    } else {
        None
    };
    Ok((cluster_id, listed))
}

fn log_written(path: &Path, identity: &NodeIdentity, why: Written) {
    let cluster = identity
        .cluster_id
        .map_or_else(|| "none (no metadata store)".into(), format_cluster_id);
    let what = format!(
        "node {} in cluster {cluster}, incarnation {:016x}",
        identity.node_id, identity.incarnation
    );
    match why {
        Written::FirstStart => tracing::info!("{}: new data directory: {what}", path.display()),
        Written::Adopted => tracing::warn!(
            "{}: segments but no identity file (a directory from before identity files): adopted as {what}",
            path.display()
        ),
        Written::ClusterLearned => {
            tracing::info!("{}: learned its cluster: {what}", path.display())
        }
        Written::Replaces(listed) => tracing::warn!(
            "{}: --replace: this node replaces a lost node {} that held {} segments (log {}, \
             segment {} among them); they stay short here until repaired: {what}",
            path.display(),
            identity.node_id,
            listed.segments,
            listed.log_id,
            listed.segment
        ),
    }
}

/// Whether any shard directory of `data_dir` holds a segment file.
fn has_segments(data_dir: &Path) -> Result<bool, IdentityError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::DataDir { path, source }
    };
    for entry in std::fs::read_dir(data_dir).map_err(io(data_dir))? {
        let entry = entry.map_err(io(data_dir))?;
        let name = entry.file_name();
        let is_shard = name.to_str().is_some_and(|n| n.starts_with("shard-"));
        if !is_shard || !entry.path().is_dir() {
            continue;
        }
        let shard = entry.path();
        for file in std::fs::read_dir(&shard).map_err(io(&shard))? {
            let file = file.map_err(io(&shard))?;
            let name = file.file_name();
            let Some(name) = name.to_str() else { continue };
            let segment = [DATA_SUFFIX, CTL_SUFFIX, CREATING_SUFFIX]
                .iter()
                .any(|suffix| SegmentKey::parse_file_name(name, suffix).is_some());
            if segment {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_found_in_shard_directories_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!has_segments(dir.path()).expect("reads"));
        std::fs::create_dir_all(dir.path().join("shard-0")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("meta")).expect("mkdir");
        std::fs::write(
            dir.path()
                .join("meta/0000000000000001-0000000000000000.seg"),
            b"",
        )
        .expect("write");
        std::fs::write(dir.path().join("shard-0/.trilog-probe-1-0"), b"").expect("write");
        assert!(!has_segments(dir.path()).expect("reads"));
        let key = SegmentKey {
            log_id: 1,
            segment: 0,
        };
        std::fs::write(key.ctl_path(&dir.path().join("shard-0")), b"").expect("write");
        assert!(has_segments(dir.path()).expect("reads"));
    }
}
