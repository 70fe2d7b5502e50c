//! A local Raft cluster of real node processes on loopback, each with its
//! own data directory on the real disk, for the baseline benchmarks and
//! the tests. Dropping it kills every node.
//!
//! With [`RaftNodeOptions::delay_one_way`], each node sits behind a
//! [`DelayProxy`] and is known to its peers and clients only by the
//! proxy's address (`--advertise`), so every peer RPC and every client
//! request crosses a simulated round trip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use trilog_testkit::delay::DelayProxy;
use trilog_testkit::ports::free_port;
use trilog_testkit::wait::wait_for;

use super::client::{RaftClient, RaftClientError};
use super::limits::{LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT, SNAPSHOT_EVERY_ENTRIES_DEFAULT};
use super::rpc::NodeStatus;
use super::types::NodeId;

/// How a node process is started: a program and the arguments before the
/// node's own (`trilog-bench raft-node ...`, or `trilog-raft-node ...`,
/// this crate's own binary).
#[derive(Debug, Clone)]
pub struct RaftNodeCommand {
    pub program: PathBuf,
    pub prefix: Vec<String>,
}

impl RaftNodeCommand {
    /// This executable's hidden `raft-node` subcommand.
    pub fn this_exe() -> std::io::Result<RaftNodeCommand> {
        Ok(RaftNodeCommand {
            program: std::env::current_exe()?,
            prefix: vec!["raft-node".into()],
        })
    }

    /// A program that is a node by itself, with no subcommand
    /// (`trilog-raft-node`).
    pub fn program(program: impl Into<PathBuf>) -> RaftNodeCommand {
        RaftNodeCommand {
            program: program.into(),
            prefix: Vec::new(),
        }
    }
}

/// The nodes' tuning that a cluster may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftNodeOptions {
    pub snapshot_every: u64,
    pub keep_logs: u64,
    /// Put each node behind a [`DelayProxy`] adding this much in each
    /// direction; peers and clients reach it only through the proxy.
    pub delay_one_way: Option<Duration>,
}

impl Default for RaftNodeOptions {
    fn default() -> Self {
        RaftNodeOptions {
            snapshot_every: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            keep_logs: LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT,
            delay_one_way: None,
        }
    }
}

/// Why the cluster could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RaftClusterError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("node {node}: {why}")]
    Node { node: NodeId, why: String },
    #[error("timed out after {ms} ms waiting for {what}")]
    Timeout { what: String, ms: u64 },
    #[error("client: {0}")]
    Client(#[from] RaftClientError),
}

/// One node process.
#[derive(Debug)]
pub struct RaftNodeProc {
    pub id: NodeId,
    /// Where the process listens.
    pub addr: SocketAddr,
    /// Where peers and clients reach it: its proxy, or `addr`.
    pub reached_at: SocketAddr,
    pub dir: PathBuf,
    /// The process's stdout and stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl RaftNodeProc {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct RaftCluster {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
    pub nodes: Vec<RaftNodeProc>,
    cmd: RaftNodeCommand,
    options: RaftNodeOptions,
    /// For status queries (straight to each node, not delayed).
    probe: RaftClient,
    proxies: Vec<DelayProxy>,
}

impl Drop for RaftCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Time for a new cluster to elect its first leader.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl RaftCluster {
    /// Starts `n` nodes (ids 1..=n) in a new temporary directory (under
    /// `root` if given, else the system's temporary directory) and waits
    /// until a leader has committed the initial membership on every node.
    pub async fn start(
        n: usize,
        cmd: RaftNodeCommand,
        options: RaftNodeOptions,
        root: Option<&Path>,
    ) -> Result<RaftCluster, RaftClusterError> {
        assert!(n >= 1, "a cluster has a node");
        let root = root.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&root)?;
        let temp = tempfile::Builder::new()
            .prefix("trilog-raft-")
            .tempdir_in(&root)?;
        let dir = temp.path().to_path_buf();
        let mut nodes = Vec::with_capacity(n);
        let mut proxies = Vec::new();
        for i in 0..n {
            let id = i as NodeId + 1;
            let port = free_port()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let reached_at = match options.delay_one_way {
                Some(d) => {
                    let p =
                        DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)), addr, d).await?;
                    let at = p.listen;
                    proxies.push(p);
                    at
                }
                None => addr,
            };
            nodes.push(RaftNodeProc {
                id,
                addr,
                reached_at,
                dir: dir.join(format!("n{id}")),
                log: dir.join(format!("n{id}.log")),
                child: None,
            });
        }
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        let probe = RaftClient::connect(&addrs).await?;
        let mut cluster = RaftCluster {
            dir,
            _temp: temp,
            nodes,
            cmd,
            options,
            probe,
            proxies,
        };
        for id in 1..=n as NodeId {
            cluster.spawn(id)?;
        }
        cluster.wait_leader(START_TIMEOUT, None).await?;
        cluster.wait_all_applied(START_TIMEOUT).await?;
        Ok(cluster)
    }

    /// Every node's listening address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Where clients reach every node (through the proxies, if any).
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.reached_at).collect()
    }

    /// A new client of this cluster, reaching it as a remote client would
    /// (through the proxies, if any).
    pub async fn client(&self) -> Result<RaftClient, RaftClientError> {
        RaftClient::connect(&self.client_addrs()).await
    }

    fn node(&self, id: NodeId) -> Result<&RaftNodeProc, RaftClusterError> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| RaftClusterError::Node {
                node: id,
                why: "no such node".into(),
            })
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut RaftNodeProc, RaftClusterError> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| RaftClusterError::Node {
                node: id,
                why: "no such node".into(),
            })
    }

    fn spawn(&mut self, id: NodeId) -> Result<(), RaftClusterError> {
        let peers = self
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.reached_at))
            .collect::<Vec<_>>()
            .join(",");
        let cmd = self.cmd.clone();
        let options = self.options;
        let node = self.node_mut(id)?;
        if node.child.is_some() {
            return Err(RaftClusterError::Node {
                node: id,
                why: "already running".into(),
            });
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(&cmd.program)
            .args(&cmd.prefix)
            .args(["--id", &id.to_string()])
            .arg("--dir")
            .arg(&node.dir)
            .args(["--listen", &node.addr.to_string()])
            .args(["--peers", &peers])
            .args(["--advertise", &node.reached_at.to_string()])
            .args(["--snapshot-every", &options.snapshot_every.to_string()])
            .args(["--keep-logs", &options.keep_logs.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// Kills a node with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self, id: NodeId) -> Result<(), RaftClusterError> {
        let node = self.node_mut(id)?;
        if let Some(mut c) = node.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts a killed node again, on its directory and address.
    pub fn restart(&mut self, id: NodeId) -> Result<(), RaftClusterError> {
        self.spawn(id)
    }

    /// What node `id` says of itself.
    pub async fn status(&self, id: NodeId) -> Result<NodeStatus, RaftClusterError> {
        let addr = self.node(id)?.addr;
        Ok(self.probe.status(addr).await?)
    }

    /// The statuses of the running nodes that answer.
    pub async fn statuses(&self) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            if let Ok(s) = self.probe.status(n.addr).await {
                out.push(s);
            }
        }
        out
    }

    /// Slows node `id` by `extra` more each way, for its peers and its
    /// clients alike (zero: back to the base delay). Only with
    /// [`RaftNodeOptions::delay_one_way`]; `false` without a proxy.
    pub fn slow_node(&self, id: NodeId, extra: Duration) -> bool {
        let i = self.nodes.iter().position(|n| n.id == id);
        match i.and_then(|i| self.proxies.get(i)) {
            Some(p) => {
                p.set_extra(extra);
                true
            }
            None => false,
        }
    }

    /// Waits until a node other than `not` leads, acknowledged by a
    /// majority of the cluster; returns its id.
    pub async fn wait_leader(
        &self,
        timeout: Duration,
        not: Option<NodeId>,
    ) -> Result<NodeId, RaftClusterError> {
        let majority = self.nodes.len() / 2 + 1;
        self.wait_for("a leader", timeout, |statuses| {
            let leader = statuses
                .iter()
                .find(|s| s.is_leader() && Some(s.id) != not)?;
            let agree = statuses
                .iter()
                .filter(|s| s.leader == Some(leader.id) && s.term == leader.term)
                .count();
            (agree >= majority).then_some(leader.id)
        })
        .await
    }

    /// Waits until every running node applied the initial membership.
    async fn wait_all_applied(&self, timeout: Duration) -> Result<(), RaftClusterError> {
        let n = self.nodes.len();
        self.wait_for("every node to apply the membership", timeout, |statuses| {
            (statuses.len() == n
                && statuses
                    .iter()
                    .all(|s| s.last_applied_index.is_some() && s.voters.len() == n))
            .then_some(())
        })
        .await
    }

    /// Waits until node `id` applied the log up to position `positions`
    /// (the payload count); returns its status.
    pub async fn wait_caught_up(
        &self,
        id: NodeId,
        positions: u64,
        timeout: Duration,
    ) -> Result<NodeStatus, RaftClusterError> {
        self.wait_for(
            &format!("node {id} to apply {positions} payloads"),
            timeout,
            |statuses| {
                statuses
                    .iter()
                    .find(|s| s.id == id && s.positions >= positions)
                    .cloned()
            },
        )
        .await
    }

    /// Polls the statuses until `done` gives a value or the deadline.
    async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[NodeStatus]) -> Option<T>,
    ) -> Result<T, RaftClusterError> {
        // What the last check saw, for the error.
        let last = &std::sync::Mutex::new(Vec::new());
        let (this, done) = (self, &done);
        let got = wait_for(what, timeout, move || async move {
            let statuses = this.statuses().await;
            let v = done(&statuses);
            *last.lock().unwrap_or_else(|p| p.into_inner()) = statuses;
            v
        })
        .await;
        got.map_err(|e| RaftClusterError::Timeout {
            what: format!(
                "{} (last statuses: {:?})",
                e.what,
                last.lock().unwrap_or_else(|p| p.into_inner())
            ),
            ms: e.ms,
        })
    }
}
