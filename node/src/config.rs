//! The node's configuration, from its command line, checked before start.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use trilog_meta::MetaAddr;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("shards (--shards) must be between 1 and {max}, got {got}")]
    Shards { got: usize, max: usize },
    #[error("cores (--cores) lists {cores} cores for {shards} shards")]
    Cores { cores: usize, shards: usize },
    #[error("core {core} does not exist (this machine has {available})")]
    NoSuchCore { core: usize, available: usize },
    #[error("port (--port) {port} + {shards} shards passes 65535")]
    Ports { port: u16, shards: usize },
    #[error("node_id (--node-id) must not be 0")]
    NodeId,
    #[error("repair_bytes_per_sec (--repair-bytes-per-sec) must not be 0")]
    RepairRate,
    #[error("repair_grace_secs (--repair-grace-secs): {got_ms} ms is shorter than {min_ms} ms: a node restart would cost a full copy of its data")]
    RepairGrace { got_ms: u64, min_ms: u64 },
    #[error("idle_connection_secs (--idle-connection-secs) must be at least 1")]
    IdleConnection,
    #[error("orphan_sweep_secs (--orphan-sweep-secs) must not be 0")]
    OrphanSweep,
    #[error("scrub_bytes_per_sec (--scrub-bytes-per-sec) must not be 0")]
    ScrubRate,
    #[error("lease_ms (--lease-ms) must be between 300 and 600000, got {0}")]
    Lease(u64),
    #[error("meta (--meta) {0}: this node was built without etcd support (cargo feature `etcd`)")]
    EtcdNotBuilt(String),
    #[error("{key} {host:?}: {why}")]
    Host {
        key: &'static str,
        host: String,
        why: String,
    },
    #[error("host {host} listens on every address but is no address to dial: give advertise_host (--advertise-host), the address clients reach this node at")]
    Unspecified { host: IpAddr },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The shortest repair grace period accepted: below it, a node that
/// restarts (seconds) would be copied away before it is back.
pub const REPAIR_GRACE_MS_MIN: u64 = 1_000;

/// A checked node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    /// The address shards listen on and that the node registers.
    pub host: IpAddr,
    /// Shard i listens on `port + i`; 0 lets the kernel choose every port.
    pub port: u16,
    pub shards: usize,
    /// Pin shard i to `cores[i]`; empty: no pinning.
    pub cores: Vec<usize>,
    /// Register with this metadata store (embedded or etcd).
    pub meta: Option<MetaAddr>,
    /// Also serve the embedded metadata store here (its state in
    /// `data_dir/meta`).
    pub serve_meta: Option<SocketAddr>,
    pub lease_ms: u64,
    pub zone: String,
    /// Each shard's scrub rate (sealed segments re-read, every crc checked).
    pub scrub_bytes_per_sec: u64,
    /// The scrub's pause between two passes over a shard's segments.
    pub scrub_pass_pause_ms: u64,
    /// The period of the orphan sweep (`trilog_protocol::shard`'s orphans).
    pub orphan_sweep_ms: u64,
    /// Register this address instead of `host` (behind NAT or a proxy).
    pub advertise_host: Option<IpAddr>,
    /// Register shard i at `advertise_port + i` instead of its own port.
    pub advertise_port: Option<u16>,
    /// Start on an empty data directory although the metadata lists this
    /// node id as a replica: this node replaces a lost one (see
    /// `crate::identity`).
    pub replace: bool,
    /// How long a node must be dead before this node copies its replicas.
    pub repair_grace_ms: u64,
    /// The rate this node copies repairs at.
    pub repair_bytes_per_sec: u64,
    /// Free bytes kept on the data directory's file system: below them the
    /// node turns read-only (`trilog_protocol::space`).
    pub disk_reserve_bytes: u64,
    /// How long an idle connection (nothing sent, nothing owed) stays open.
    pub conn_idle_ms: u64,
    /// Mutual TLS on every port and every connection the node makes.
    pub tls: Option<trilog_tls::TlsFiles>,
    /// Serve `/metrics`, `/healthz` and `/readyz` over HTTP here.
    pub admin_addr: Option<SocketAddr>,
}

impl NodeConfig {
    /// A node `node_id` keeping its data in `data_dir`, every other
    /// setting at its default (one shard on 127.0.0.1, kernel-chosen port,
    /// no metadata store).
    pub fn with_defaults(node_id: u64, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            node_id,
            data_dir,
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            shards: 1,
            cores: Vec::new(),
            meta: None,
            serve_meta: None,
            lease_ms: crate::limits::LEASE_MS_DEFAULT,
            zone: String::new(),
            scrub_bytes_per_sec: crate::scrub::SCRUB_BYTES_PER_SEC_DEFAULT,
            scrub_pass_pause_ms: crate::scrub::SCRUB_PASS_PAUSE_MS,
            orphan_sweep_ms: trilog_protocol::shard::ORPHAN_SWEEP_MS,
            advertise_host: None,
            advertise_port: None,
            replace: false,
            repair_grace_ms: trilog_protocol::repair::REPAIR_GRACE_MS_DEFAULT,
            repair_bytes_per_sec: trilog_protocol::repair::REPAIR_BYTES_PER_SEC_DEFAULT,
            disk_reserve_bytes: trilog_protocol::space::DISK_RESERVE_BYTES_DEFAULT,
            conn_idle_ms: crate::limits::CONN_IDLE_MS_DEFAULT,
            tls: None,
            admin_addr: None,
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::NodeId);
        }
        if self.scrub_bytes_per_sec == 0 {
            return Err(ConfigError::ScrubRate);
        }
        if self.conn_idle_ms < 1000 {
            return Err(ConfigError::IdleConnection);
        }
        if self.orphan_sweep_ms == 0 {
            return Err(ConfigError::OrphanSweep);
        }
        if self.repair_bytes_per_sec == 0 {
            return Err(ConfigError::RepairRate);
        }
        if self.repair_grace_ms < REPAIR_GRACE_MS_MIN {
            return Err(ConfigError::RepairGrace {
                got_ms: self.repair_grace_ms,
                min_ms: REPAIR_GRACE_MS_MIN,
            });
        }
        if self.shards == 0 || self.shards > trilog_wire::limits::SHARDS_MAX {
            return Err(ConfigError::Shards {
                got: self.shards,
                max: trilog_wire::limits::SHARDS_MAX,
            });
        }
        if !self.cores.is_empty() && self.cores.len() != self.shards {
            return Err(ConfigError::Cores {
                cores: self.cores.len(),
                shards: self.shards,
            });
        }
        let available = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if let Some(core) = self.cores.iter().find(|c| **c >= available) {
            return Err(ConfigError::NoSuchCore {
                core: *core,
                available,
            });
        }
        if self.port != 0 && usize::from(self.port) + self.shards > 65_536 {
            return Err(ConfigError::Ports {
                port: self.port,
                shards: self.shards,
            });
        }
        if !(300..=600_000).contains(&self.lease_ms) {
            return Err(ConfigError::Lease(self.lease_ms));
        }
        // Refused here rather than retried forever by the registration loop.
        if let Some(meta @ MetaAddr::Etcd(_)) = &self.meta {
            if !cfg!(feature = "etcd") {
                return Err(ConfigError::EtcdNotBuilt(meta.to_string()));
            }
        }
        Ok(())
    }

    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.data_dir.join(format!("shard-{shard}"))
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.data_dir.join("meta")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NodeConfig {
        NodeConfig {
            port: 7000,
            shards: 2,
            ..NodeConfig::with_defaults(1, "/tmp/x".into())
        }
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(base().check().is_ok());
        assert!(matches!(
            NodeConfig {
                node_id: 0,
                ..base()
            }
            .check(),
            Err(ConfigError::NodeId)
        ));
        assert!(matches!(
            NodeConfig {
                shards: 0,
                ..base()
            }
            .check(),
            Err(ConfigError::Shards { .. })
        ));
        assert!(matches!(
            NodeConfig {
                cores: vec![0],
                ..base()
            }
            .check(),
            Err(ConfigError::Cores { .. })
        ));
        assert!(matches!(
            NodeConfig {
                cores: vec![0, 100_000],
                ..base()
            }
            .check(),
            Err(ConfigError::NoSuchCore { .. })
        ));
        assert!(matches!(
            NodeConfig {
                port: 65_535,
                ..base()
            }
            .check(),
            Err(ConfigError::Ports { .. })
        ));
        assert!(matches!(
            NodeConfig {
                lease_ms: 1,
                ..base()
            }
            .check(),
            Err(ConfigError::Lease(1))
        ));
        let etcd = NodeConfig {
            meta: Some("etcd://127.0.0.1:2379".parse().expect("an etcd address")),
            ..base()
        }
        .check();
        if cfg!(feature = "etcd") {
            assert!(etcd.is_ok(), "{etcd:?}");
        } else {
            assert!(
                matches!(etcd, Err(ConfigError::EtcdNotBuilt(_))),
                "{etcd:?}"
            );
        }
    }
}
