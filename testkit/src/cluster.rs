//! A local cluster of real node processes on loopback, for the quickstart,
//! the benchmarks and the integration tests. Each node is this very binary
//! (or `trilog-node`) run as a separate process with its own data
//! directory; node 1 also serves the embedded metadata store.
//!
//! A node may be started behind [`Proxy`]s (one in front of its port, one
//! between it and the metadata store) so a test can cut it off the network
//! with [`Cluster::partition`] without stopping it.
//!
//! With [`ClusterOptions::delay_one_way`] every node's port sits behind a
//! [`DelayProxy`] that the node advertises (`--advertise-port`), so every
//! producer and consumer connection to a node crosses a simulated round
//! trip. Nodes never connect to one another. Their registrations with the
//! metadata store (node 1) are not delayed: the metadata store is not on
//! the append path.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use trilog_client::{ConnPool, EmbeddedMeta, MetaStore};

use crate::delay::DelayProxy;
use crate::node_command::NodeCommand;
use crate::ports::free_port;
use crate::proxy::Proxy;
use crate::wait::{wait_for, TimedOut};

/// Why the cluster could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("node {node}: {why}")]
    Node { node: u64, why: String },
    #[error(transparent)]
    Timeout(#[from] TimedOut),
    #[error("client: {0}")]
    Client(#[from] trilog_client::ClientError),
    #[error("metadata: {0}")]
    Meta(#[from] trilog_client::meta::MetaError),
}

/// One node process.
#[derive(Debug)]
pub struct NodeProc {
    pub id: u64,
    pub port: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// How a cluster is started, beyond its size.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Nodes started behind proxies, which [`Cluster::partition`] can cut
    /// off. Node 1 serves the metadata store and cannot be one of them.
    pub proxied: Vec<u64>,
    /// Put every node's port behind a [`DelayProxy`] adding this much in
    /// each direction (in front of its cut-off proxy, if it has one).
    pub delay_one_way: Option<Duration>,
    /// The zone of node i+1 (`--zone`); nodes past the list have none.
    pub zones: Vec<String>,
    /// More arguments for every node, at every start.
    pub node_args: Vec<String>,
    /// Every node's lease (`--lease-ms`); none: 1 s.
    pub lease_ms: Option<u64>,
}

/// The two proxies of a node that can be cut off: clients reach its port
/// only through `data` (the node advertises the proxy's port), and its
/// registration reaches the metadata store only through `meta`, so a
/// partition also lets its lease run out, as a real one would.
#[derive(Debug)]
struct NodeProxies {
    data: Proxy,
    meta: Proxy,
}

/// A running cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub meta_addr: SocketAddr,
    pub nodes: Vec<NodeProc>,
    cmd: NodeCommand,
    pub lease_ms: u64,
    proxies: HashMap<u64, NodeProxies>,
    delays: HashMap<u64, DelayProxy>,
    zones: Vec<String>,
    node_args: Vec<String>,
}

impl Cluster {
    /// Starts `n` nodes in a new temporary directory (or under `root` if
    /// given) and waits until all are registered.
    pub async fn start(
        n: usize,
        cmd: NodeCommand,
        root: Option<&Path>,
    ) -> Result<Cluster, ClusterError> {
        Cluster::start_with(n, cmd, root, ClusterOptions::default()).await
    }

    /// [`Cluster::start`] with options (nodes behind proxies).
    pub async fn start_with(
        n: usize,
        cmd: NodeCommand,
        root: Option<&Path>,
        opts: ClusterOptions,
    ) -> Result<Cluster, ClusterError> {
        if let Some(bad) = opts.proxied.iter().find(|id| **id == 1 || **id > n as u64) {
            return Err(ClusterError::Node {
                node: *bad,
                why: "only nodes 2..=n can be put behind a proxy".into(),
            });
        }
        let temp = match root {
            Some(r) => {
                std::fs::create_dir_all(r)?;
                tempfile::Builder::new().prefix("trilog-").tempdir_in(r)?
            }
            None => tempfile::Builder::new()
                .prefix("trilog-")
                .tempdir_in(default_root())?,
        };
        let dir = temp.path().to_path_buf();
        let meta_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cluster = Cluster {
            dir,
            _temp: Some(temp),
            meta_addr,
            nodes: Vec::new(),
            cmd,
            lease_ms: opts.lease_ms.unwrap_or(1_000),
            proxies: HashMap::new(),
            delays: HashMap::new(),
            zones: opts.zones.clone(),
            node_args: opts.node_args.clone(),
        };
        for i in 1..=n as u64 {
            let port = free_port()?;
            if opts.proxied.contains(&i) {
                let target = SocketAddr::from(([127, 0, 0, 1], port));
                let proxies = NodeProxies {
                    data: Proxy::start(target).await?,
                    meta: Proxy::start(meta_addr).await?,
                };
                cluster.proxies.insert(i, proxies);
            }
            if let Some(d) = opts.delay_one_way {
                let target = match cluster.proxies.get(&i) {
                    Some(p) => p.data.addr(),
                    None => SocketAddr::from(([127, 0, 0, 1], port)),
                };
                let delay =
                    DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)), target, d).await?;
                cluster.delays.insert(i, delay);
            }
            let dir = cluster.dir.join(format!("node-{i}"));
            let log = cluster.dir.join(format!("node-{i}.log"));
            cluster.nodes.push(NodeProc {
                id: i,
                port,
                dir,
                log,
                child: None,
            });
            cluster.spawn(i)?;
        }
        cluster.wait_alive(n, Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    fn index(&self, id: u64) -> Result<usize, ClusterError> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or(ClusterError::Node {
                node: id,
                why: "no such node".into(),
            })
    }

    /// Starts (or restarts) node `id` and waits for its ready line.
    pub fn spawn(&mut self, id: u64) -> Result<(), ClusterError> {
        self.spawn_with(id, &[])
    }

    /// [`Cluster::spawn`] with more arguments for the node (`--replace`).
    pub fn spawn_with(&mut self, id: u64, extra: &[&str]) -> Result<(), ClusterError> {
        let i = self.index(id)?;
        let proxies = self.proxies.get(&id);
        let meta = match proxies {
            Some(p) => p.meta.addr().to_string(),
            None => self.meta_addr.to_string(),
        };
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Err(ClusterError::Node {
                node: id,
                why: "already running".into(),
            });
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut c = Command::new(&self.cmd.program);
        c.args(&self.cmd.prefix)
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--port", &node.port.to_string()])
            .args(["--meta", &meta])
            .args(["--lease-ms", &self.lease_ms.to_string()])
            .args(&self.node_args)
            .args(extra);
        if id == 1 {
            c.args(["--serve-meta", &meta]);
        }
        if let Some(zone) = self.zones.get(i).filter(|z| !z.is_empty()) {
            c.args(["--zone", zone]);
        }
        // One shard per node here, so one proxied port; the delay proxy,
        // if any, is in front of the cut-off one.
        if let Some(d) = self.delays.get(&id) {
            c.args(["--advertise-port", &d.listen.port().to_string()]);
        } else if let Some(p) = proxies {
            c.args(["--advertise-port", &p.data.port().to_string()]);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .stdin(Stdio::null())
            .spawn()?;
        let Some(stdout) = child.stdout.take() else {
            return Err(ClusterError::Node {
                node: id,
                why: "no stdout".into(),
            });
        };
        // The ready line comes once every shard recovered and listens.
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        if read.is_err() || !line.starts_with("trilog-node ready") {
            let _ = child.kill();
            let _ = child.wait();
            let tail = std::fs::read_to_string(&node.log).unwrap_or_default();
            return Err(ClusterError::Node {
                node: id,
                why: format!("did not start: {}", tail.lines().last().unwrap_or("")),
            });
        }
        node.child = Some(child);
        Ok(())
    }

    /// Whether node `id`'s process ended by itself, and how: `None` while
    /// it runs (or if it is not running under this cluster).
    pub fn exited(&mut self, id: u64) -> Result<Option<std::process::ExitStatus>, ClusterError> {
        let i = self.index(id)?;
        let Some(child) = self.nodes[i].child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.nodes[i].child = None;
        }
        Ok(status)
    }

    /// kill -9 of node `id`.
    pub fn kill(&mut self, id: u64) -> Result<(), ClusterError> {
        let i = self.index(id)?;
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to node `id`.
    pub fn signal(&self, id: u64, signal: i32) -> Result<(), ClusterError> {
        let i = self.index(id)?;
        if let Some(pid) = self.nodes[i].pid() {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            let rc = unsafe { libc::kill(pid as i32, signal) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        Ok(())
    }

    /// SIGSTOP of node `id`: it keeps its sockets and state, silent.
    pub fn pause(&self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, libc::SIGSTOP)
    }

    /// SIGCONT of node `id`.
    pub fn resume(&self, id: u64) -> Result<(), ClusterError> {
        self.signal(id, libc::SIGCONT)
    }

    fn proxies(&self, id: u64) -> Result<&NodeProxies, ClusterError> {
        self.proxies.get(&id).ok_or(ClusterError::Node {
            node: id,
            why: "not started behind a proxy".into(),
        })
    }

    /// Cuts node `id` (started behind proxies) off: clients and the
    /// metadata store hear nothing from it and it hears nothing from them,
    /// while it keeps running.
    pub fn partition(&self, id: u64) -> Result<(), ClusterError> {
        let p = self.proxies(id)?;
        p.data.partition();
        p.meta.partition();
        Ok(())
    }

    /// Ends the partition of node `id`.
    pub fn heal(&self, id: u64) -> Result<(), ClusterError> {
        let p = self.proxies(id)?;
        p.data.heal();
        p.meta.heal();
        Ok(())
    }

    /// The address clients use for node `id` (its proxy, if it has one).
    pub fn client_addr(&self, id: u64) -> Result<SocketAddr, ClusterError> {
        let i = self.index(id)?;
        if let Some(d) = self.delays.get(&id) {
            return Ok(d.listen);
        }
        Ok(match self.proxies.get(&id) {
            Some(p) => p.data.addr(),
            None => SocketAddr::from(([127, 0, 0, 1], self.nodes[i].port)),
        })
    }

    /// Whether node `id` runs (it may be stopped or cut off still).
    pub fn is_running(&self, id: u64) -> bool {
        self.index(id)
            .map(|i| self.nodes[i].is_running())
            .unwrap_or(false)
    }

    pub fn meta(&self) -> Arc<dyn MetaStore> {
        Arc::new(EmbeddedMeta::new(self.meta_addr))
    }

    pub fn pool(&self) -> ConnPool {
        ConnPool::new(self.meta())
    }

    /// Slows node `id`'s data port by `extra` more each way (zero: back to
    /// the base delay): a slow node. Only with
    /// [`ClusterOptions::delay_one_way`]; `false` without a delay proxy.
    pub fn slow_node(&self, id: u64, extra: Duration) -> bool {
        match self.delays.get(&id) {
            Some(d) => {
                d.set_extra(extra);
                true
            }
            None => false,
        }
    }

    /// Waits until `n` nodes hold live registrations.
    pub async fn wait_alive(&self, n: usize, timeout: Duration) -> Result<(), ClusterError> {
        let meta = &self.meta();
        let what = format!("{n} live nodes");
        wait_for(&what, timeout, move || async move {
            let nodes = meta.list_nodes(false).await.ok()?;
            (nodes.iter().filter(|s| s.alive).count() >= n).then_some(())
        })
        .await?;
        Ok(())
    }

    /// Waits until node `id`'s registration is alive (or, with `alive`
    /// false, until its lease ran out).
    pub async fn wait_node(
        &self,
        id: u64,
        alive: bool,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let meta = &self.meta();
        let what = format!("node {id} {}", if alive { "alive" } else { "dead" });
        wait_for(&what, timeout, move || async move {
            let nodes = meta.list_nodes(true).await.ok()?;
            let is_alive = nodes.iter().any(|s| s.info.node_id == id && s.alive);
            (is_alive == alive).then_some(())
        })
        .await?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // With `TRILOG_KEEP_DIRS` set, the data directories and the nodes'
        // logs stay for a post-mortem.
        if std::env::var_os(KEEP_DIRS_ENV).is_some() {
            if let Some(temp) = self._temp.take() {
                let kept = temp.keep();
                eprintln!("cluster directory kept: {}", kept.display());
            }
        }
    }
}

/// Set (to anything) to keep a cluster's directory when it is dropped.
pub const KEEP_DIRS_ENV: &str = "TRILOG_KEEP_DIRS";

/// Where clusters live by default: a directory on the real disk (O_DIRECT
/// does not work on tmpfs), under the system temp dir unless
/// `TRILOG_TEST_DIR` says otherwise.
pub fn default_root() -> PathBuf {
    match std::env::var_os("TRILOG_TEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir(),
    }
}
