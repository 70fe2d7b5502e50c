//! One Raft node process: `trilog-bench raft-node` (hidden) with
//!
//! ```text
//! --id N --dir DIR --listen ADDR --peers 1=ADDR,2=ADDR,...
//!   [--advertise ADDR] [--snapshot-every ENTRIES] [--keep-logs ENTRIES]
//! ```
//!
//! `--peers` gives the addresses peers and clients reach each node at; a
//! node behind a proxy (a simulated round trip) listens on `--listen` and
//! is reached at `--advertise`, its proxy, which is what it is in the
//! membership and what `--peers` says for it.
//!
//! It recovers its log and last snapshot from `DIR`, serves peers and
//! clients on `ADDR`, and, if it is node 1 and the cluster was never
//! formed, waits until every peer answers and then initializes the
//! cluster with all of them as voters. It runs until SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use openraft::{Config, Raft, SnapshotPolicy};
use tokio::net::TcpListener;

use super::conn::Conn;
use super::limits::{
    CONNECT_TIMEOUT_MS, ELECTION_TIMEOUT_MS_MAX, ELECTION_TIMEOUT_MS_MIN, HEARTBEAT_MS,
    INSTALL_SNAPSHOT_TIMEOUT_MS, LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT, PAYLOAD_ENTRIES_MAX,
    REQUEST_TIMEOUT_MS, RETRY_BACKOFF_MS, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_EVERY_ENTRIES_DEFAULT,
};
use super::log_store::LogStore;
use super::network::NetworkFactory;
use super::rpc::Request;
use super::server::{serve, ServerCtx};
use super::state_machine::StateMachine;
use super::types::{Node, NodeId, TypeConfig};

/// The node's command line.
#[derive(Debug, Clone, Parser)]
#[command(name = "raft-node", about = "One node of the Raft log baseline")]
pub struct NodeArgs {
    /// This node's id (1, 2, ...).
    #[arg(long)]
    pub id: NodeId,
    /// Where the node keeps its log and snapshot.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to serve peers and clients on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Every member: `id=addr` separated by commas (this node included or
    /// not), at the address it is reached at.
    #[arg(long)]
    pub peers: String,
    /// The address peers and clients reach this node at, if not
    /// `--listen` (a proxy in front of it).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Build a snapshot (and purge the log below it) every this many
    /// entries.
    #[arg(long, default_value_t = SNAPSHOT_EVERY_ENTRIES_DEFAULT)]
    pub snapshot_every: u64,
    /// Entries kept in the log below the last snapshot.
    #[arg(long, default_value_t = LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT)]
    pub keep_logs: u64,
}

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("bad --peers: {0}")]
    Peers(String),
    #[error("config: {0}")]
    Config(String),
    #[error("log: {0}")]
    Log(#[from] super::log_store::LogStoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

/// Parses `1=addr,2=addr`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<NodeId, SocketAddr>, NodeError> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| NodeError::Peers(format!("{part:?} is not id=addr")))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| NodeError::Peers(format!("{id:?} is not a node id")))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| NodeError::Peers(format!("{addr:?} is not an address")))?;
        if peers.insert(id, addr).is_some() {
            return Err(NodeError::Peers(format!("node {id} given twice")));
        }
    }
    Ok(peers)
}

/// The openraft configuration of every node.
pub fn raft_config(snapshot_every: u64, keep_logs: u64) -> Result<Config, NodeError> {
    let config = Config {
        cluster_name: "trilog-raft-baseline".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS_MIN,
        election_timeout_max: ELECTION_TIMEOUT_MS_MAX,
        max_payload_entries: PAYLOAD_ENTRIES_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every.max(1)),
        max_in_snapshot_log_to_keep: keep_logs,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))
}

/// Runs a node with `args` (without the program name); returns the exit
/// code.
pub fn raft_node_main(args: Vec<OsString>) -> i32 {
    let argv = std::iter::once(OsString::from("raft-node")).chain(args);
    let args = match NodeArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("raft-node")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raft-node: runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("raft-node: {e}");
            1
        }
    }
}

async fn run(args: NodeArgs) -> Result<(), NodeError> {
    let mut peers = parse_peers(&args.peers)?;
    let reached_at = args.advertise.unwrap_or(args.listen);
    if peers.get(&args.id).is_some_and(|a| *a != reached_at) {
        return Err(NodeError::Peers(format!(
            "node {} is given at {} but is reached at {}",
            args.id, peers[&args.id], reached_at
        )));
    }
    peers.insert(args.id, reached_at);

    std::fs::create_dir_all(&args.dir)?;
    let log_store = LogStore::open(&args.dir.join("log"))?;
    let sm = StateMachine::open(&args.dir.join("sm"))?;
    let data = sm.data();
    let config = Arc::new(raft_config(args.snapshot_every, args.keep_logs)?);
    let raft = Raft::new(args.id, config, NetworkFactory, log_store, sm)
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;

    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "raft-node {} listening on {} (dir {})",
        args.id,
        args.listen,
        args.dir.display()
    );
    let server = tokio::spawn(serve(
        listener,
        ServerCtx {
            raft: raft.clone(),
            data,
        },
    ));

    if args.id == 1 {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized {
            let raft = raft.clone();
            tokio::spawn(async move { initialize(raft, peers).await });
        }
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = server => {
            let why = match r {
                Ok(Ok(())) => "server stopped".to_string(),
                Ok(Err(e)) => format!("server: {e}"),
                Err(e) => format!("server task: {e}"),
            };
            let _ = raft.shutdown().await;
            return Err(NodeError::Raft(why));
        }
    }
    let _ = raft.shutdown().await;
    Ok(())
}

/// Waits until every peer answers, then forms the cluster.
async fn initialize(raft: Raft<TypeConfig>, peers: BTreeMap<NodeId, SocketAddr>) {
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    for (id, addr) in &peers {
        loop {
            if let Ok(c) = Conn::connect(*addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await {
                if c.call(&Request::Status, timeout).await.is_ok() {
                    break;
                }
            }
            log::info!("waiting for node {id} at {addr}");
            tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS * 5)).await;
        }
    }
    let members: BTreeMap<NodeId, Node> = peers
        .iter()
        .map(|(id, addr)| (*id, Node::new(addr.to_string())))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => eprintln!("raft-node: cluster of {} formed", peers.len()),
        Err(e) => eprintln!("raft-node: initialize: {e}"),
    }
}
