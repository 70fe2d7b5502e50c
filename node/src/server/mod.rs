//! Starting a node: one glommio executor per shard, each with its own
//! listening socket, shard machine, segments, group-commit loop and timer;
//! plus, if asked, the embedded metadata store and the node's registration
//! with it.
//!
//! The server is a thin driver of `trilog_protocol::shard::ShardMachine`:
//! connections (`conn.rs`) read frames and hand each request to the
//! machine (`handlers.rs`), which decides; `actions.rs` carries out what it
//! decided (answers, creation, control writes, disk reads), `flusher.rs`
//! runs the group commit and `timer.rs` the machine's one timer, each
//! telling the machine how its IO ended. What the driver keeps to itself
//! are resources, not decisions: each connection's outbox and in-flight
//! bytes, the frames of appends waiting for their segment, the files.

pub mod actions;
pub mod budget;
pub mod conn;
pub mod conns;
pub mod drain;
pub mod flusher;
pub mod handlers;
pub mod heal;
pub mod outbox;
pub mod records;
pub mod scrub;
pub mod shard;
pub mod timer;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Socket, Type};
use trilog_wire::meta::NodeInfo;

use crate::admin::{AdminHandle, AdminSources};
use crate::config::NodeConfig;
use crate::identity::{self, IdentityError};
use crate::limits::{DRAIN_MS_MAX, SHARD_CONNECTIONS_MAX, START_META_WAIT_MS};
use crate::metrics::{CloseReason, NodeMetrics, ShardMetrics};
use crate::repair_board::RepairBoard;
use crate::runtime::{GlommioRuntime, ShardRuntime};
use crate::space::{NodeSpace, SpaceMonitor};
use std::sync::Arc;
use trilog_meta::MetaAddr;

use crate::storage::{self, StorageError};
use drain::{DrainState, Drained};
use records::RecordSource;
use shard::{ctl_to_durable, machine_key, Shard};
use trilog_meta::{
    spawn_meta_server_tls, spawn_registration_refreshed, FirstRegistration, InfoRefresh,
    MetaServerHandle, ModeReport, NodeIdTaken, RegistrationHandle,
};
use trilog_protocol::access::Role;
use trilog_tls::TlsIdentity;
use trilog_wire::meta::NodeMode;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard}: {source}")]
    Storage { shard: usize, source: StorageError },
    #[error("shard {shard}: executor: {why}")]
    Executor { shard: usize, why: String },
    /// A failure of the shards as a whole (which one is not known).
    #[error("shards: {0}")]
    Shards(String),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("metadata server: {0}")]
    Meta(String),
    #[error("admin port (admin_addr) {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    NodeIdTaken(NodeIdTaken),
    #[error("metadata store {meta}: no answer to the node's first registration in {waited_ms} ms")]
    NotRegistered { meta: String, waited_ms: u64 },
    #[error(transparent)]
    Preflight(#[from] crate::preflight::PreflightError),
    #[error("TLS: {0}")]
    Tls(trilog_tls::TlsError),
    #[error("TLS: certificate {cert} names the role {role}; a node needs a certificate whose OU is `node`")]
    TlsRole {
        cert: std::path::PathBuf,
        role: Role,
    },
    #[error("node id {node_id} was removed from the cluster (decommissioned); it cannot serve again: start this machine under a new node id, on an empty data directory")]
    Removed { node_id: u64 },
}

/// Why a running node ended ([`NodeHandle::wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every shard stopped (they run until the process ends, unless one
    /// fails).
    ShardsStopped,
    /// An operator decommissioned the node and the store removed it: it
    /// holds nothing any record lists, and its id never registers again.
    Removed,
    /// Asked to stop (a signal, by its number): the caller drains
    /// ([`NodeHandle::drain`]).
    Stop { signal: i32 },
}

/// Tells a running node to stop, from any thread ([`NodeHandle::stopper`]).
#[derive(Debug, Clone)]
pub struct Stopper(mpsc::Sender<Ending>);

impl Stopper {
    /// [`NodeHandle::wait`] returns [`Ending::Stop`].
    pub fn stop(&self, signal: i32) {
        // The receiver is gone only if the node is ending already.
        let _ = self.0.send(Ending::Stop { signal });
    }
}

/// A running node.
pub struct NodeHandle {
    pub shard_ports: Vec<u16>,
    pub meta_server: Option<MetaServerHandle>,
    pub registration: Option<RegistrationHandle>,
    /// Measures the disk; the node's read-only mode.
    pub space: SpaceMonitor,
    /// Everything the node counts (`crate::metrics`).
    pub metrics: Arc<NodeMetrics>,
    /// The admin port, if configured (`--admin-addr`).
    pub admin: Option<AdminHandle>,
    pub node_id: u64,
    drain: Arc<DrainState>,
    ended: mpsc::Receiver<Ending>,
    ending: mpsc::Sender<Ending>,
}

impl NodeHandle {
    /// Blocks until the node ends, or is asked to: every shard stopped,
    /// the node was removed from the cluster (then the shards are left to
    /// the process's exit: everything they acknowledged is durable
    /// already), or a [`Stopper`] asked it to stop.
    pub fn wait(&self) -> Ending {
        self.ended.recv().unwrap_or(Ending::ShardsStopped)
    }

    /// A handle that makes [`NodeHandle::wait`] return, from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.ending.clone())
    }

    /// Stops the node on purpose (see [`drain`]): readiness turns false,
    /// the registration is given up (at most [`drain::DEREGISTER_MS_MAX`]),
    /// then every shard stops accepting, answers the appends it holds and
    /// closes its connections, within [`DRAIN_MS_MAX`] in all. The
    /// process may exit after it: nothing acknowledged depends on it.
    pub fn drain(&mut self) -> Drained {
        let started = Instant::now();
        if !self.drain.stop() {
            tracing::warn!("node {}: drain asked twice", self.node_id);
        }
        let deregistered = self
            .registration
            .take()
            .map(|r| r.give_up(Duration::from_millis(drain::DEREGISTER_MS_MAX)));
        self.drain.ask();
        let left = Duration::from_millis(DRAIN_MS_MAX).saturating_sub(started.elapsed());
        let shards_left = self.drain.wait_finished(left);
        Drained {
            took: started.elapsed(),
            shards_left,
            deregistered,
        }
    }
}

/// How long a restarted node keeps trying to bind a port still held by
/// its previous life: a process killed with io_uring operations in flight
/// releases its sockets only when the kernel's deferred ring teardown
/// runs, a moment after the process is gone.
const BIND_RETRY_MS_MAX: u64 = 10_000;

fn bind(addr: SocketAddr) -> Result<StdListener, StartError> {
    let err = |source| StartError::Bind { addr, source };
    let deadline = std::time::Instant::now() + Duration::from_millis(BIND_RETRY_MS_MAX);
    loop {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
        socket.set_reuse_address(true).map_err(err)?;
        match socket.bind(&addr.into()) {
            Ok(()) => {
                socket.listen(1024).map_err(err)?;
                return Ok(socket.into());
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                tracing::info!("{addr} still in use; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// Starts the metadata server if configured, checks the node's identity
/// (see [`crate::identity`]), starts every shard, then registers if
/// configured. Returns once every shard has recovered its segments and
/// listens, and the first registration was accepted.
pub fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
    crate::preflight::check_durable(&config.data_dir)?;
    crate::preflight::check_locked_memory(config.shards)?;
    let tls = load_tls(&config)?;
    let meta_server = match config.serve_meta {
        Some(addr) => Some(
            spawn_meta_server_tls(addr, config.meta_dir(), tls.clone())
                .map_err(|e| StartError::Meta(e.to_string()))?,
        ),
        None => None,
    };
    let identity = identity::establish(&config, tls.as_ref())?;
    let space = crate::space::start_monitor(
        config.node_id,
        config.data_dir.clone(),
        config.disk_reserve_bytes,
    )
    .map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let (listeners, shard_ports) = bind_shards(&config)?;
    let board = Arc::new(RepairBoard::new());
    let metrics = Arc::new(NodeMetrics::new(config.node_id, &config.zone));
    let shards_running = Arc::new(AtomicUsize::new(0));
    let drain = DrainState::new(config.shards);
    let executors = spawn_shards(
        &config,
        listeners,
        &shard_ports,
        ShardShared {
            space: &space.space,
            board: &board,
            tls: tls.as_ref(),
            metrics: &metrics,
            running: &shards_running,
            drain: &drain,
        },
    )?;
    let (ended_tx, ended) = mpsc::channel();
    let joined = ended_tx.clone();
    std::thread::Builder::new()
        .name("trilog-shards-join".into())
        .spawn(move || {
            for e in executors {
                let _ = e.join();
            }
            let _ = joined.send(Ending::ShardsStopped);
        })
        .map_err(|e| {
            StartError::Shards(format!(
                "cannot start the thread that waits for the shards: {e}"
            ))
        })?;
    let registration = match config.meta.clone() {
        Some(meta) => Some(register(
            &config,
            meta,
            &shard_ports,
            identity.incarnation,
            space.space.clone(),
            ended_tx.clone(),
            tls.clone(),
        )?),
        None => None,
    };
    if let Some(meta) = config.meta.clone() {
        crate::repair::spawn_repair(crate::repair::RepairConfig {
            node_id: config.node_id,
            meta,
            host: config.host,
            shard_ports: shard_ports.clone(),
            grace_ms: config.repair_grace_ms,
            bytes_per_sec: config.repair_bytes_per_sec,
            refill: config.replace,
            board: board.clone(),
            tls: tls.clone(),
            metrics: metrics.repair.clone(),
        });
    }
    let admin = match config.admin_addr {
        Some(addr) => Some(
            crate::admin::spawn_admin(
                addr,
                AdminSources {
                    metrics: metrics.clone(),
                    space: space.space.clone(),
                    board,
                    registration: registration.as_ref().map(RegistrationHandle::watch),
                    shards_running,
                    shards: config.shards,
                    drain: drain.clone(),
                },
            )
            .map_err(|source| StartError::Admin { addr, source })?,
        ),
        None => None,
    };
    tracing::info!(
        "node {} serving shards on {}:{:?} (data in {})",
        config.node_id,
        config.host,
        shard_ports,
        config.data_dir.display()
    );
    Ok(NodeHandle {
        shard_ports,
        meta_server,
        registration,
        space,
        metrics,
        admin,
        node_id: config.node_id,
        drain,
        ended,
        ending: ended_tx,
    })
}

/// The node's TLS identity, if configured: its certificate must be a
/// node's (a producer's or a reader's certificate would let the node
/// register, but no peer would accept it as a node).
fn load_tls(config: &NodeConfig) -> Result<Option<Arc<TlsIdentity>>, StartError> {
    let Some(files) = &config.tls else {
        return Ok(None);
    };
    let tls = TlsIdentity::load(files).map_err(StartError::Tls)?;
    if tls.role() != Role::Node {
        return Err(StartError::TlsRole {
            cert: files.cert.clone(),
            role: tls.role(),
        });
    }
    tracing::info!("mutual TLS on every port, as {}", tls.subject());
    Ok(Some(tls))
}

/// One listener per shard, on consecutive ports from `config.port` (or
/// ports the kernel picks, with port 0); with the ports bound.
fn bind_shards(config: &NodeConfig) -> Result<(Vec<StdListener>, Vec<u16>), StartError> {
    let mut listeners = Vec::with_capacity(config.shards);
    for i in 0..config.shards {
        let port = if config.port == 0 {
            0
        } else {
            config.port + i as u16
        };
        listeners.push(bind(SocketAddr::new(config.host, port))?);
    }
    let shard_ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|source| StartError::Bind {
            addr: SocketAddr::new(config.host, config.port),
            source,
        })?;
    Ok((listeners, shard_ports))
}

/// What every shard of a node shares.
struct ShardShared<'a> {
    space: &'a Arc<NodeSpace>,
    board: &'a Arc<RepairBoard>,
    tls: Option<&'a Arc<TlsIdentity>>,
    metrics: &'a Arc<NodeMetrics>,
    /// Shards serving now (for readiness).
    running: &'a Arc<AtomicUsize>,
    drain: &'a Arc<DrainState>,
}

/// Counts a shard as running for as long as it lives, however its thread
/// ends (a panic included).
struct RunningShard(Arc<AtomicUsize>);

impl RunningShard {
    fn new(running: Arc<AtomicUsize>) -> RunningShard {
        running.fetch_add(1, Ordering::AcqRel);
        RunningShard(running)
    }
}

impl Drop for RunningShard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts one glommio executor per shard on its listener, and waits until
/// every shard recovered its segments (or one failed to).
fn spawn_shards(
    config: &NodeConfig,
    listeners: Vec<StdListener>,
    shard_ports: &[u16],
    shared: ShardShared<'_>,
) -> Result<Vec<glommio::ExecutorJoinHandle<()>>, StartError> {
    let ShardShared {
        space,
        board,
        tls,
        metrics,
        running,
        drain,
    } = shared;
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), StorageError>)>();
    let mut executors = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let dir = config.shard_dir(i);
        std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let placement = match config.cores.get(i) {
            Some(core) => Placement::Fixed(*core),
            None => Placement::Unbound,
        };
        let ports = shard_ports.to_vec();
        let node_id = config.node_id;
        let lookups = config
            .meta
            .clone()
            .map(|meta| trilog_meta::spawn_record_lookups(meta, tls.cloned()));
        let scrub_rate = config.scrub_bytes_per_sec;
        let scrub_pause = config.scrub_pass_pause_ms;
        let orphan_sweep = config.orphan_sweep_ms;
        let conn_idle_ms = config.conn_idle_ms;
        let shard_space = space.clone();
        let shard_board = board.clone();
        let shard_tls = tls.cloned();
        let shard_metrics = ShardMetrics::new();
        metrics.add_shard(i as u32, &shard_metrics);
        let shard_running = running.clone();
        let shard_drain = drain.clone();
        let ready = ready_tx.clone();
        let fd = listener.into_raw_fd();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            .spawn(move || async move {
                // SAFETY: `fd` is a listening socket this thread now owns alone.
                let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
                let records = lookups.map(|l| Rc::new(l) as Rc<dyn RecordSource>);
                let place = ShardPlace {
                    node_id,
                    index: i,
                    ports,
                    dir,
                    scrub_bytes_per_sec: scrub_rate,
                    scrub_pass_pause_ms: scrub_pause,
                    orphan_sweep_ms: orphan_sweep,
                    conn_idle_ms,
                    space: shard_space,
                    board: shard_board,
                    tls: shard_tls,
                    metrics: shard_metrics,
                    running: shard_running,
                    drain: shard_drain,
                };
                run_shard(place, listener, ready, records).await;
            })
            .map_err(|e| StartError::Executor {
                shard: i,
                why: e.to_string(),
            })?;
        executors.push(handle);
    }
    drop(ready_tx);
    for _ in 0..config.shards {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(source))) => return Err(StartError::Storage { shard, source }),
            Err(_) => {
                // glommio gives no reason; the usual one is locked memory.
                let limit = match crate::preflight::locked_memory_limit() {
                    Some(bytes) => format!("{} KiB", bytes / 1024),
                    None => "unlimited".to_string(),
                };
                return Err(StartError::Shards(format!(
                    "a shard died while starting (glommio could not set up its \
                     io_uring; the locked-memory limit is {limit}: try `ulimit -l \
                     unlimited` or LimitMEMLOCK=infinity)"
                )));
            }
        }
    }
    Ok(executors)
}

/// Registers the node with the store at `meta` (and keeps its lease),
/// advertising its shard ports, and waits for the first registration: a
/// refusal (another live incarnation holds the id) or no answer within
/// [`START_META_WAIT_MS`] stops the start.
fn register(
    config: &NodeConfig,
    meta: MetaAddr,
    shard_ports: &[u16],
    incarnation: u64,
    space: Arc<NodeSpace>,
    ended: mpsc::Sender<Ending>,
    tls: Option<Arc<TlsIdentity>>,
) -> Result<RegistrationHandle, StartError> {
    let advertised_ports = match config.advertise_port {
        Some(base) => (0..shard_ports.len())
            .map(|i| base.saturating_add(i as u16))
            .collect(),
        None => shard_ports.to_vec(),
    };
    let info = NodeInfo {
        node_id: config.node_id,
        host: config.advertise_host.unwrap_or(config.host).to_string(),
        shard_ports: advertised_ports,
        zone: config.zone.clone(),
        capacity_bytes: 0,
        incarnation,
        bytes_used: 0,
        bytes_free: 0,
        full: false,
    };
    let lease = Duration::from_millis(config.lease_ms);
    let meta_text = meta.to_string();
    let refreshed = space.clone();
    let refresh: InfoRefresh = Arc::new(move |info: &mut NodeInfo| refreshed.refresh(info));
    let node_id = config.node_id;
    let ended = Mutex::new(ended);
    let on_mode: ModeReport = Arc::new(move |mode: NodeMode| match mode {
        NodeMode::Active => space.set_leaving(false),
        NodeMode::Leaving => space.set_leaving(true),
        NodeMode::Removed => {
            space.set_leaving(true);
            tracing::warn!("node {node_id}: removed from the cluster: stopping");
            let tx = ended.lock().unwrap_or_else(|e| e.into_inner());
            // The receiver is gone only if the node is ending already.
            let _ = tx.send(Ending::Removed);
        }
    });
    let handle = spawn_registration_refreshed(meta, info, lease, refresh, on_mode, tls);
    match handle.wait_first(Duration::from_millis(START_META_WAIT_MS)) {
        FirstRegistration::Registered => Ok(handle),
        FirstRegistration::Refused(taken) => Err(StartError::NodeIdTaken(taken)),
        FirstRegistration::Removed { node_id } => Err(StartError::Removed { node_id }),
        FirstRegistration::Pending => Err(StartError::NotRegistered {
            meta: meta_text,
            waited_ms: START_META_WAIT_MS,
        }),
    }
}

/// Starts shard `index` of node `node_id` on `rt`: recovers its segments
/// from `dir`, then runs its group commit and its timer. The shard is then
/// ready for connections ([`conn::serve`]). The same code starts a shard
/// on glommio here and in the simulator. With `records`, the shard learns
/// the seals of its idle segments from the metadata record; without, it
/// never asks.
pub async fn start_shard<R: ShardRuntime>(
    rt: R,
    node_id: u64,
    index: u32,
    ports: Vec<u16>,
    dir: PathBuf,
    records: Option<Rc<dyn RecordSource>>,
    metrics: ShardMetrics,
) -> Result<Rc<Shard<R>>, StorageError> {
    let learning = records.is_some();
    let shard = Shard::new(
        rt.clone(),
        node_id,
        index,
        ports,
        dir.clone(),
        records,
        metrics,
    );
    let n = recover(&shard, &dir).await?;
    tracing::info!("shard {index}: recovered {n} segments");
    if learning {
        let now_ms = shard.now_ms();
        shard
            .machine
            .borrow_mut()
            .learn_seals_from_record(now_ms, node_id);
    }
    rt.spawn(flusher::run_flusher(shard.clone()));
    rt.spawn(timer::run_timer(shard.clone()));
    rt.spawn(scrub::run_scrub(shard.clone()));
    rt.spawn(heal::run_heal(shard.clone()));
    Ok(shard)
}

/// Where a shard runs and what it is told at start.
struct ShardPlace {
    node_id: u64,
    index: usize,
    ports: Vec<u16>,
    dir: PathBuf,
    scrub_bytes_per_sec: u64,
    scrub_pass_pause_ms: u64,
    orphan_sweep_ms: u64,
    conn_idle_ms: u64,
    space: Arc<NodeSpace>,
    board: Arc<RepairBoard>,
    /// Connections are mutual TLS only when set.
    tls: Option<Arc<TlsIdentity>>,
    metrics: ShardMetrics,
    running: Arc<AtomicUsize>,
    drain: Arc<DrainState>,
}

async fn run_shard(
    place: ShardPlace,
    listener: glommio::net::TcpListener,
    ready: mpsc::Sender<(usize, Result<(), StorageError>)>,
    records: Option<Rc<dyn RecordSource>>,
) {
    let ShardPlace {
        node_id,
        index,
        ports,
        dir,
        scrub_bytes_per_sec,
        scrub_pass_pause_ms,
        orphan_sweep_ms,
        conn_idle_ms,
        space,
        board,
        tls,
        metrics,
        running,
        drain,
    } = place;
    let rt = GlommioRuntime::new();
    let shard = match start_shard(rt, node_id, index as u32, ports, dir, records, metrics).await {
        Ok(shard) => {
            shard.scrub_bytes_per_sec.set(scrub_bytes_per_sec);
            shard.scrub_pass_pause_ms.set(scrub_pass_pause_ms);
            shard.conn_idle_ms.set(conn_idle_ms);
            shard
                .machine
                .borrow_mut()
                .set_orphan_sweep_ms(orphan_sweep_ms);
            *shard.space.borrow_mut() = Some(space);
            *shard.board.borrow_mut() = Some(board);
            shard.sync_space();
            let _ = ready.send((index, Ok(())));
            shard
        }
        Err(e) => {
            // A shard that never served has nothing to drain.
            drain.shard_finished();
            let _ = ready.send((index, Err(e)));
            return;
        }
    };
    let _running = RunningShard::new(running);
    glommio::spawn_local(drain::watch(shard.clone(), drain.clone())).detach();
    loop {
        let accepted = async { Some(listener.accept().await) };
        let draining = async {
            shard.drained().await;
            None
        };
        let Some(accepted) = accepted.or(draining).await else {
            break;
        };
        match accepted {
            Ok(stream) => {
                if shard.connections.get() >= SHARD_CONNECTIONS_MAX {
                    tracing::warn!(
                        "shard {index}: {SHARD_CONNECTIONS_MAX} connections open; refusing one"
                    );
                    shard.metrics.connections_refused.inc();
                    continue;
                }
                shard.conn_began();
                let s = shard.clone();
                let peer = stream.peer_addr().ok();
                let _ = stream.set_nodelay(true);
                let tls = tls.clone();
                glommio::spawn_local(async move {
                    match tls {
                        None => conn::serve(s.clone(), stream, peer, None).await,
                        Some(tls) => match accept_tls(&s, &tls, stream).await {
                            Ok((secured, role)) => {
                                conn::serve(s.clone(), secured, peer, Some(role)).await
                            }
                            Err(e) => {
                                tracing::info!(
                                    "shard {index}: TLS handshake with {peer:?} refused: {e}"
                                );
                                s.metrics.connection_closed(CloseReason::Handshake);
                            }
                        },
                    }
                    s.conn_done();
                })
                .detach();
            }
            Err(e) => tracing::warn!("shard {index}: accept: {e}"),
        }
    }
    // Closing the listener: the kernel refuses new dials from here on.
    drop(listener);
    drain::finish(shard, drain).await;
}

/// A TLS handshake on an accepted connection, within
/// [`trilog_tls::HANDSHAKE_MS_MAX`] on the shard's clock.
async fn accept_tls<R: ShardRuntime>(
    shard: &Shard<R>,
    tls: &TlsIdentity,
    stream: glommio::net::TcpStream,
) -> std::io::Result<(
    trilog_tls::futures_io::ServerStream<glommio::net::TcpStream>,
    Role,
)> {
    let limit = Duration::from_millis(trilog_tls::HANDSHAKE_MS_MAX);
    let sleep = shard.rt.sleep(limit);
    let timeout = async {
        sleep.await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no TLS handshake in time",
        ))
    };
    trilog_tls::futures_io::accept(tls, stream)
        .or(timeout)
        .await
}

async fn recover<R: ShardRuntime>(shard: &Rc<Shard<R>>, dir: &Path) -> Result<usize, StorageError> {
    // The real disk settles glommio's polled-I/O probe itself, on every
    // open (see `GlommioDisk`).
    let recovered = storage::recover_dir(shard.rt.disk(), dir).await?;
    let n = recovered.len();
    for r in recovered {
        let key = machine_key(r.file.key());
        let mut replica = trilog_protocol::replica::Replica::recovered(
            r.len,
            r.max_commit,
            ctl_to_durable(r.ctl),
        );
        if let Some(damage) = r.damage {
            // Recovery logged what it found; the replica serves the entries
            // before it and refuses the rest (and appends) with `Damaged`.
            replica.mark_damaged(damage.from.min(replica.durable_len()));
        }
        shard.machine.borrow_mut().add_recovered(key, replica);
        shard.add_file(key, r.file);
    }
    Ok(n)
}
