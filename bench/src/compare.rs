//! The comparison: trilog and its baselines (`raft3`, `raft5`, `etcd3`)
//! started one after another on this machine, each driven by the same load
//! generator ([`crate::load`]) with the same payloads, concurrency and
//! durability (no system acknowledges an append before the replicas it
//! waits for fsynced it), from a client in this process, outside the
//! cluster.
//!
//! With a simulated round trip (`rtt_us`), every connection to a node of
//! any system — from the client, and from a peer where the system has
//! peers — crosses a [`trilog_testkit::delay::DelayProxy`] adding `rtt_us / 2` each
//! way. trilog nodes have no peers: its producer writes each segment to its
//! 3 replicas in parallel, so an append costs one round trip (plus the
//! slowest of three fsyncs); a Raft or etcd append costs the client's round
//! trip to the leader plus the leader's to a majority.
//!
//! With a slow node (`slow`), each system runs again with one node slowed
//! by that much more each way from the end of the warmup on, so the
//! measured time holds the moment it turns slow: a replica of trilog's
//! open segment (trilog runs on [`TRILOG_SLOW_NODES`] nodes then, one to
//! spare, since leaving a slow replica needs somewhere to go), a follower
//! of Raft and etcd (not the leader: a slow leader makes every
//! consensus system slow). Those runs are named `<system>-slow`.
//!
//! `etcd3` needs this crate's `etcd` feature (etcd's client library needs
//! protoc to build); without it [`compare`] refuses before it starts
//! anything, with [`CompareError::EtcdNotBuilt`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "etcd")]
use trilog_baselines::etcd::{EtcdCluster, EtcdError, EtcdLog};
use trilog_baselines::raft::{RaftCluster, RaftClusterError, RaftNodeCommand, RaftNodeOptions};
use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterError, ClusterOptions};
use trilog_testkit::delay;
use trilog_testkit::node_command::NodeCommand;

use crate::load::{run, save_histogram, LoadConfig, LoadResult, Mode, Target};
use crate::machine::machine;
use crate::report::{LoadMode, ReportConfig, SystemResult};
#[cfg(feature = "etcd")]
use crate::targets::EtcdTarget;
use crate::targets::{RaftTarget, TrilogTarget};

/// Nodes of the trilog cluster: exactly the 3 replicas of each segment
/// (node 1 also serves the metadata store), so each system's nodes all
/// take part in every append.
pub const TRILOG_NODES: usize = 3;
/// Nodes of the trilog cluster when a node is slowed: one to spare, where
/// the producer moves the segment away from the slow one.
pub const TRILOG_SLOW_NODES: usize = 4;

/// A system the comparison can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Trilog,
    Raft3,
    Raft5,
    Etcd3,
}

impl System {
    pub const ALL: [System; 4] = [System::Trilog, System::Raft3, System::Raft5, System::Etcd3];

    pub fn name(self) -> &'static str {
        match self {
            System::Trilog => "trilog",
            System::Raft3 => "raft3",
            System::Raft5 => "raft5",
            System::Etcd3 => "etcd3",
        }
    }

    pub fn nodes(self) -> usize {
        match self {
            System::Trilog => TRILOG_NODES,
            System::Raft3 | System::Etcd3 => 3,
            System::Raft5 => 5,
        }
    }

    /// Nodes of a run, with a node slowed or not.
    pub fn nodes_when(self, slowed: bool) -> usize {
        match self {
            System::Trilog if slowed => TRILOG_SLOW_NODES,
            _ => self.nodes(),
        }
    }

    /// A run's name: `raft3`, or `raft3-slow` with a node slowed.
    pub fn run_name(self, slowed: bool) -> String {
        match slowed {
            true => format!("{}-slow", self.name()),
            false => self.name().to_string(),
        }
    }
}

impl std::str::FromStr for System {
    type Err = String;

    fn from_str(s: &str) -> Result<System, String> {
        System::ALL
            .into_iter()
            .find(|sys| sys.name() == s)
            .ok_or_else(|| format!("unknown system {s:?} (trilog, raft3, raft5, etcd3)"))
    }
}

/// How the node processes are started: this binary's hidden subcommands.
#[derive(Debug, Clone)]
pub struct Commands {
    pub node: NodeCommand,
    pub raft: RaftNodeCommand,
}

impl Commands {
    pub fn this_exe() -> std::io::Result<Commands> {
        Ok(Commands {
            node: NodeCommand::this_exe()?,
            raft: RaftNodeCommand::this_exe()?,
        })
    }
}

/// Why a system could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{system}: {source}")]
    Cluster {
        system: &'static str,
        source: ClusterError,
    },
    #[error("{system}: {source}")]
    Raft {
        system: &'static str,
        source: RaftClusterError,
    },
    #[cfg(feature = "etcd")]
    #[error("{system}: {source}")]
    Etcd {
        system: &'static str,
        source: EtcdError,
    },
    #[error(
        "{system}: this trilog-bench was built without etcd; build it with `--features etcd` \
         (which needs protoc; scripts/setup-debian.sh installs it and etcd)"
    )]
    EtcdNotBuilt { system: &'static str },
    #[error("saving the histogram to {path}: {source}")]
    Histogram {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{system}: {errors} of the appends failed")]
    Failed { system: String, errors: u64 },
    #[error("{system}: slowing a node needs a simulated round trip (--rtt-us)")]
    SlowWithoutDelay { system: &'static str },
}

/// A started system: its target and its cluster (dropping it stops the
/// system's processes).
pub struct Running {
    pub system: System,
    pub target: Arc<dyn Target>,
    cluster: Arc<Keepalive>,
}

/// A started system's cluster: what keeps its processes alive, and what
/// can slow one of its nodes.
pub enum Keepalive {
    Trilog(Cluster),
    Raft(RaftCluster),
    #[cfg(feature = "etcd")]
    Etcd(EtcdCluster),
}

/// The log the comparison writes to on trilog.
const TRILOG_LOG: u64 = 1;

impl Keepalive {
    /// Slows one node by `extra` more each way: a replica of trilog's
    /// open segment, a follower of Raft or etcd. Says which, and for
    /// trilog when the log left it.
    pub async fn slow_one(&self, extra: Duration) -> Result<Slowed, String> {
        match self {
            Keepalive::Trilog(c) => {
                let v = c
                    .meta()
                    .get_log(TRILOG_LOG)
                    .await
                    .map_err(|e| e.to_string())?;
                let open = v
                    .record
                    .as_ref()
                    .and_then(|m| m.segments.last().cloned())
                    .ok_or("the log has no segment")?;
                let node = *open.replicas.last().ok_or("a segment without replicas")?;
                if !c.slow_node(node, extra) {
                    return Err(format!("node {node} has no delay proxy"));
                }
                let slowed_at = std::time::Instant::now();
                let left = left_node(c, node, Duration::from_secs(10)).await;
                let which = format!("node {node}, a replica of segment {}", open.id);
                Ok(Slowed {
                    which,
                    left_after: left.map(|_| slowed_at.elapsed()),
                })
            }
            Keepalive::Raft(c) => {
                let leader = c
                    .wait_leader(Duration::from_secs(10), None)
                    .await
                    .map_err(|e| e.to_string())?;
                let follower = c
                    .nodes
                    .iter()
                    .map(|n| n.id)
                    .find(|id| *id != leader)
                    .ok_or("a cluster of one has no follower")?;
                match c.slow_node(follower, extra) {
                    true => Ok(Slowed {
                        which: format!("node {follower}, a follower of leader {leader}"),
                        left_after: None,
                    }),
                    false => Err(format!("node {follower} has no delay proxy")),
                }
            }
            #[cfg(feature = "etcd")]
            Keepalive::Etcd(c) => {
                let i = c.slow_follower(extra).await.map_err(|e| e.to_string())?;
                Ok(Slowed {
                    which: format!("member e{i}, a follower"),
                    left_after: None,
                })
            }
        }
    }
}

/// The node a run slowed.
#[derive(Debug, Clone)]
pub struct Slowed {
    /// Which node, and its part.
    pub which: String,
    /// trilog: how long after the slowdown the log's open segment was no
    /// longer on it (`None`: not within 10 s, or another system).
    pub left_after: Option<Duration>,
}

/// Waits (polling the record every millisecond, up to `within`) until the
/// log's open segment is not on `node`; returns that segment.
async fn left_node(c: &Cluster, node: u64, within: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Ok(v) = c.meta().get_log(TRILOG_LOG).await {
            let open = v.record.as_ref().and_then(|m| m.segments.last());
            if let Some(seg) = open.filter(|s| !s.replicas.contains(&node)) {
                return Some(seg.id);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Starts `system` on this machine (behind delay proxies adding `rtt_us / 2`
/// each way if given; with a node to slow later if `slowed`) and returns it
/// ready for appends.
pub async fn start(
    system: System,
    cmds: &Commands,
    rtt_us: Option<u64>,
    slowed: bool,
) -> Result<Running, CompareError> {
    let one_way = rtt_us.map(|us| Duration::from_micros(us) / 2);
    let (target, cluster) = match system {
        System::Trilog => start_trilog(&cmds.node, one_way, system.nodes_when(slowed)).await,
        System::Raft3 | System::Raft5 => start_raft(system, &cmds.raft, one_way).await,
        System::Etcd3 => start_etcd(system, one_way).await,
    }?;
    Ok(Running {
        system,
        target,
        cluster: Arc::new(cluster),
    })
}

async fn start_trilog(
    node: &NodeCommand,
    one_way: Option<Duration>,
    nodes: usize,
) -> Result<(Arc<dyn Target>, Keepalive), CompareError> {
    let failed = |source| CompareError::Cluster {
        system: System::Trilog.name(),
        source,
    };
    let opts = ClusterOptions {
        delay_one_way: one_way,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(nodes, node.clone(), None, opts)
        .await
        .map_err(failed)?;
    let producer = Producer::open(cluster.pool(), TRILOG_LOG, ProducerOptions::default())
        .await
        .map_err(|e| failed(e.into()))?;
    Ok((
        Arc::new(TrilogTarget { producer }),
        Keepalive::Trilog(cluster),
    ))
}

async fn start_raft(
    system: System,
    raft: &RaftNodeCommand,
    one_way: Option<Duration>,
) -> Result<(Arc<dyn Target>, Keepalive), CompareError> {
    let name = system.name();
    let failed = |source| CompareError::Raft {
        system: name,
        source,
    };
    let opts = RaftNodeOptions {
        delay_one_way: one_way,
        ..RaftNodeOptions::default()
    };
    // A Raft baseline that does not form (openraft 0.9's first election
    // on 2 busy cores, now and then) is started once more: what is
    // measured is its appends, not its bootstrap.
    let cluster = match RaftCluster::start(system.nodes(), raft.clone(), opts, None).await {
        Ok(c) => c,
        Err(first) => {
            eprintln!("{name}: the cluster did not form ({first}); starting it again");
            RaftCluster::start(system.nodes(), raft.clone(), opts, None)
                .await
                .map_err(failed)?
        }
    };
    let client = cluster.client().await.map_err(|e| failed(e.into()))?;
    Ok((
        Arc::new(RaftTarget::new(name, client)),
        Keepalive::Raft(cluster),
    ))
}

/// Whether this binary can run every system of `systems`: `etcd3` only
/// with the `etcd` feature.
pub fn check_built(systems: &[System]) -> Result<(), CompareError> {
    match systems.iter().find(|s| **s == System::Etcd3) {
        Some(s) if !cfg!(feature = "etcd") => Err(CompareError::EtcdNotBuilt { system: s.name() }),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "etcd"))]
async fn start_etcd(
    system: System,
    _one_way: Option<Duration>,
) -> Result<(Arc<dyn Target>, Keepalive), CompareError> {
    Err(CompareError::EtcdNotBuilt {
        system: system.name(),
    })
}

#[cfg(feature = "etcd")]
async fn start_etcd(
    system: System,
    one_way: Option<Duration>,
) -> Result<(Arc<dyn Target>, Keepalive), CompareError> {
    let failed = |source| CompareError::Etcd {
        system: system.name(),
        source,
    };
    let cluster = EtcdCluster::start_with_delay(system.nodes(), one_way)
        .await
        .map_err(failed)?;
    let client = cluster.client().await.map_err(failed)?;
    let target = EtcdTarget::new(EtcdLog::new(client));
    Ok((Arc::new(target), Keepalive::Etcd(cluster)))
}

/// What one system's run gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: SystemResult,
    pub load: LoadResult,
    /// With a simulated round trip: chunks the delay proxies forwarded
    /// during the run and their mean one-way delay.
    pub proxied: Option<(u64, Duration)>,
    /// With a node slowed: which, or why it could not be.
    pub slowed: Option<Result<Slowed, String>>,
}

/// Starts `system`, runs `load` on it, stops it; saves the raw histogram
/// as `<dir>/<run name>.hdr` if `histogram_dir` is given. With `slow`,
/// one node is slowed by that much more each way once the warmup ends
/// ([`Keepalive::slow_one`]), and the run is `<system>-slow`.
pub async fn run_system(
    system: System,
    cmds: &Commands,
    rtt_us: Option<u64>,
    slow: Option<Duration>,
    load: &LoadConfig,
    histogram_dir: Option<&std::path::Path>,
) -> Result<Outcome, CompareError> {
    if slow.is_some() && rtt_us.is_none() {
        return Err(CompareError::SlowWithoutDelay {
            system: system.name(),
        });
    }
    let name = system.run_name(slow.is_some());
    let running = start(system, cmds, rtt_us, slow.is_some()).await?;
    delay::reset_observed();
    let slowing = slow.map(|extra| {
        let cluster = running.cluster.clone();
        let warmup = load.warmup;
        let name = name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let slowed = cluster.slow_one(extra).await;
            match &slowed {
                Ok(s) => match s.left_after {
                    Some(t) => eprintln!(
                        "{name}: slowed {} by {extra:?} each way; the log left it {:.1} ms later",
                        s.which,
                        t.as_secs_f64() * 1e3
                    ),
                    None => eprintln!("{name}: slowed {} by {extra:?} each way", s.which),
                },
                Err(why) => eprintln!("{name}: could not slow a node: {why}"),
            }
            slowed
        })
    });
    let result = run(running.target.clone(), load.clone()).await;
    let slowed = match slowing {
        Some(s) => Some(s.await.unwrap_or_else(|e| Err(e.to_string()))),
        None => None,
    };
    let proxied = rtt_us.map(|_| delay::observed());
    drop(running);
    if let Some(dir) = histogram_dir {
        let path = dir.join(format!("{name}.hdr"));
        std::fs::create_dir_all(dir)
            .and_then(|()| save_histogram(&result.histogram, &path))
            .map_err(|source| CompareError::Histogram { path, source })?;
    }
    if result.ops == 0 {
        return Err(CompareError::Failed {
            system: name,
            errors: result.errors,
        });
    }
    Ok(Outcome {
        result: SystemResult::new(
            &name,
            system.nodes_when(slow.is_some()),
            result.histogram.clone(),
            result.ops_per_s(),
            result.errors,
        ),
        load: result,
        proxied,
        slowed,
    })
}

/// Runs every system of `systems` one after another (none if this binary
/// cannot run them all: [`check_built`]); with `slow`, each one twice,
/// healthy and then with a node slowed.
pub async fn compare(
    systems: &[System],
    cmds: &Commands,
    rtt_us: Option<u64>,
    slow: Option<Duration>,
    load: &LoadConfig,
    histogram_dir: Option<&std::path::Path>,
) -> Result<Vec<Outcome>, CompareError> {
    check_built(systems)?;
    let mut out = Vec::with_capacity(systems.len() * 2);
    for &s in systems {
        out.push(run_system(s, cmds, rtt_us, None, load, histogram_dir).await?);
        if slow.is_some() {
            out.push(run_system(s, cmds, rtt_us, slow, load, histogram_dir).await?);
        }
    }
    Ok(out)
}

/// What the comparison runs with, for its JSON report.
pub fn report_config(rtt_us: Option<u64>, load: &LoadConfig, command: &str) -> ReportConfig {
    let (mode, concurrency, rate_per_s) = match load.mode {
        Mode::Closed { writers } => (LoadMode::Closed, writers, 0.0),
        Mode::Open {
            rate_per_s,
            in_flight_max,
        } => (LoadMode::Open, in_flight_max, rate_per_s),
    };
    ReportConfig {
        command: command.to_string(),
        machine: machine(),
        rtt_us: rtt_us.unwrap_or(0),
        network: match rtt_us {
            Some(_) => "loopback through userspace delay proxies (rtt/2 each way)".into(),
            None => "loopback, no proxies".into(),
        },
        mode,
        concurrency,
        rate_per_s,
        payload_bytes: load.payload_bytes,
        batch: load.batch,
        duration_s: load.duration.as_secs_f64(),
        warmup_s: load.warmup.as_secs_f64(),
        durability:
            "every system fsyncs before it acks: trilog all 3 replicas, raft and etcd a majority"
                .into(),
    }
}
