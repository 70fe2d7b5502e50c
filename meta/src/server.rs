//! The embedded metadata store's server: a current-thread tokio runtime on
//! a thread of its own. It is idle nearly always, so it must not take a
//! core from a log shard, and it does no direct I/O, so it has no use for
//! glommio's locked memory.
//!
//! The thread owns the [`MetaState`] and the [`MetaFile`]; each connection
//! is a local task that reads a frame, answers it, and reads the next. A
//! request is applied without an await between reading the state and
//! saving the next one, so requests apply one at a time, and a slow peer or
//! a long watch holds only its own connection. A watch waits on a
//! [`Notify`] woken by every applied CAS, raced against a timer: nothing
//! polls.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use trilog_protocol::access::Role;
use trilog_tls::TlsIdentity;
use trilog_wire::codec::decode_payload;
use trilog_wire::limits::ERROR_MESSAGE_BYTES_MAX;
use trilog_wire::meta::{
    MetaCasLog, MetaCasResult, MetaCluster, MetaDeregistered, MetaError, MetaGetLog, MetaLog,
    MetaLogs, MetaNodeModes, MetaNodes, MetaRegister, MetaRegisterRefused, MetaRegistered,
    MetaSetNodeMode, NodeMode,
};
use trilog_wire::{encode, Frame, Message};

use crate::cluster_id::{format_cluster_id, new_cluster_id};
use crate::frame_io::{read_frame, FrameError};
use crate::limits::{ACCEPT_RETRY_DELAY, CONNECTIONS_MAX, CONNECTION_IDLE_MS, LISTEN_BACKLOG};
use crate::persist::{MetaFile, PersistError};
use crate::state::{CasError, MetaState, RegisterError};

#[cfg(test)]
mod tests;

/// Why the metadata server did not start.
#[derive(Debug, thiserror::Error)]
pub enum MetaServerError {
    #[error("metadata store on {listen}: {what}: {source}")]
    Io {
        listen: SocketAddr,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("metadata store: {0}")]
    Persist(#[from] PersistError),
    #[error("metadata store thread panicked")]
    Panicked,
}

/// A running metadata server. Dropping it stops it too.
#[derive(Debug)]
pub struct MetaServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl MetaServerHandle {
    /// Where the server listens (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection (pending watches end without
    /// an answer) and waits for the thread, which releases the file and its
    /// lock. A CAS being saved finishes first: the thread applies one
    /// request at a time, so stop takes effect between requests. Errs only
    /// if the thread panicked.
    pub fn stop(mut self) -> Result<(), MetaServerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), MetaServerError> {
        self.stop.send_replace(true);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| MetaServerError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for MetaServerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            warn!("{e}");
        }
    }
}

/// Starts the metadata store on `listen` with its file in `dir` and returns
/// once it is listening (or why it could not start: a corrupt or locked
/// file, an address in use...).
pub fn spawn_meta_server(
    listen: SocketAddr,
    dir: PathBuf,
) -> Result<MetaServerHandle, MetaServerError> {
    spawn_meta_server_tls(listen, dir, None)
}

/// [`spawn_meta_server`], serving only mutual TLS with `tls` when given:
/// every client shows a certificate of its CA, and its role decides
/// which requests are served ([`trilog_protocol::access`]).
pub fn spawn_meta_server_tls(
    listen: SocketAddr,
    dir: PathBuf,
    tls: Option<Arc<TlsIdentity>>,
) -> Result<MetaServerHandle, MetaServerError> {
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("trilog-meta".into())
        .spawn(move || run_thread(listen, dir, tls, stop_rx, ready_tx))
        .map_err(|source| MetaServerError::Io {
            listen,
            what: "spawn thread",
            source,
        })?;
    match ready_rx.recv() {
        Ok(Ok(local_addr)) => Ok(MetaServerHandle {
            local_addr,
            stop,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        // The thread dropped the sender without a word: it panicked.
        Err(_) => {
            let _ = thread.join();
            Err(MetaServerError::Panicked)
        }
    }
}

type Ready = mpsc::SyncSender<Result<SocketAddr, MetaServerError>>;

fn run_thread(
    listen: SocketAddr,
    dir: PathBuf,
    tls: Option<Arc<TlsIdentity>>,
    stop: watch::Receiver<bool>,
    ready: Ready,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(source) => {
            let _ = ready.send(Err(MetaServerError::Io {
                listen,
                what: "start the runtime",
                source,
            }));
            return;
        }
    };
    // Connections are local tasks: the state is `Rc`/`RefCell`, owned by
    // this thread alone.
    let tasks = tokio::task::LocalSet::new();
    tasks.block_on(&runtime, async move {
        let (server, listener, local_addr) = match start(listen, &dir, tls, stop) {
            Ok(started) => started,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        info!(
            "metadata store listening on {local_addr}, file {}, revision {}, {} logs",
            server.file.path().display(),
            server.state.borrow().revision(),
            server.state.borrow().list_logs().len(),
        );
        let _ = ready.send(Ok(local_addr));
        accept_loop(server, listener).await;
        info!("metadata store on {local_addr} stopped");
    });
}

fn start(
    listen: SocketAddr,
    dir: &Path,
    tls: Option<Arc<TlsIdentity>>,
    stop: watch::Receiver<bool>,
) -> Result<(Rc<Server>, TcpListener, SocketAddr), MetaServerError> {
    let (file, mut state) = MetaFile::open(dir)?;
    ensure_cluster_id(&file, &mut state)?;
    let io = |what| {
        move |source| MetaServerError::Io {
            listen,
            what,
            source,
        }
    };
    let listener = bind(listen).map_err(io("bind"))?;
    let local_addr = listener.local_addr().map_err(io("local address"))?;
    let server = Rc::new(Server {
        state: RefCell::new(state),
        file,
        changed: Notify::new(),
        started: Instant::now(),
        failed: RefCell::new(None),
        connections: Cell::new(0),
        connection_closed: Notify::new(),
        idle: RefCell::new(BTreeMap::new()),
        next_connection: Cell::new(0),
        stop,
        tls,
    });
    Ok((server, listener, local_addr))
}

/// Creates the cluster id at the store's first start (or the first start
/// over a file from before cluster ids), durably, before anything is
/// served: every caller of `cluster_id` then sees the same id.
fn ensure_cluster_id(file: &MetaFile, state: &mut MetaState) -> Result<(), MetaServerError> {
    if state.cluster_id().is_some() {
        return Ok(());
    }
    let id = state.cluster_id_or_create(new_cluster_id());
    file.save(state)?;
    info!(
        "metadata store: created cluster id {} in {}",
        format_cluster_id(id),
        file.path().display()
    );
    Ok(())
}

/// Binds with SO_REUSEADDR (a restart need not wait for TIME_WAIT) and
/// without SO_REUSEPORT: two stores must never share a port.
fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Returns once the handle asked to stop (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can stop us any more, so
    // stop now.
    let _ = stop.wait_for(|stop| *stop).await;
}

struct Server {
    state: RefCell<MetaState>,
    file: MetaFile,
    /// Notified after every applied CAS: watches wait on it.
    changed: Notify,
    /// The lease clock's origin: leases are volatile, so a clock local to
    /// this process is enough, and a monotonic one cannot jump.
    started: Instant,
    /// Set when a save failed: from then on the disk's content is unknown
    /// and every CAS is refused until a restart reloads the file.
    failed: RefCell<Option<String>>,
    connections: Cell<usize>,
    connection_closed: Notify,
    /// Per open connection: since when it waits for its client's next
    /// request (`None` while a request is being answered), and how to
    /// close it.
    idle: RefCell<BTreeMap<u64, Idle>>,
    next_connection: Cell<u64>,
    stop: watch::Receiver<bool>,
    /// With it, connections are mutual TLS only, and each request is
    /// checked against the client certificate's role.
    tls: Option<Arc<TlsIdentity>>,
}

/// Since when a connection waits for its next request (`None`: it is
/// being answered), and the signal that closes it.
type Idle = (Option<Instant>, Rc<Notify>);

/// Counts a connection while its task lives.
struct ConnectionGuard {
    server: Rc<Server>,
    id: u64,
    evict: Rc<Notify>,
}

impl ConnectionGuard {
    fn new(server: Rc<Server>) -> ConnectionGuard {
        server.connections.set(server.connections.get() + 1);
        assert!(server.connections.get() <= CONNECTIONS_MAX);
        let id = server.next_connection.get();
        server.next_connection.set(id + 1);
        let evict = Rc::new(Notify::new());
        server
            .idle
            .borrow_mut()
            .insert(id, (Some(Instant::now()), evict.clone()));
        ConnectionGuard { server, id, evict }
    }

    /// The connection waits for a request (`true`) or answers one.
    fn set_idle(&self, idle: bool) {
        if let Some(entry) = self.server.idle.borrow_mut().get_mut(&self.id) {
            entry.0 = idle.then(Instant::now);
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = self.server.connections.get();
        assert!(open > 0, "a connection counted out twice");
        self.server.connections.set(open - 1);
        self.server.idle.borrow_mut().remove(&self.id);
        self.server.connection_closed.notify_waiters();
    }
}

impl Server {
    /// Closes the connection idle the longest, if one is idle, and waits
    /// until it is gone. False if none is idle.
    async fn evict_idlest(&self) -> bool {
        let idlest = self
            .idle
            .borrow()
            .iter()
            .filter_map(|(id, (since, evict))| since.map(|s| (s, *id, evict.clone())))
            .min_by_key(|(since, id, _)| (*since, *id));
        let Some((_, id, evict)) = idlest else {
            return false;
        };
        evict.notify_one();
        while self.idle.borrow().contains_key(&id) {
            let closed = self.connection_closed.notified();
            if !self.idle.borrow().contains_key(&id) {
                break;
            }
            closed.await;
        }
        true
    }
}

async fn accept_loop(server: Rc<Server>, listener: TcpListener) {
    let mut stop = server.stop.clone();
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("metadata store: accept failed: {e}");
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(ACCEPT_RETRY_DELAY) => continue,
                }
            }
        };
        if server.connections.get() >= CONNECTIONS_MAX && !server.evict_idlest().await {
            warn!(
                "metadata store: refusing the connection from {peer}: {CONNECTIONS_MAX} are open, none idle"
            );
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            warn!("metadata store: nodelay on the connection from {peer}: {e}");
        }
        let guard = ConnectionGuard::new(server.clone());
        tokio::task::spawn_local(async move {
            let server = &guard.server;
            let mut stop = server.stop.clone();
            let mut stream = stream;
            let evict = guard.evict.clone();
            let serving = async {
                match server.tls.clone() {
                    None => serve(&guard, &mut stream, peer, None).await,
                    // The handshake counts as idle: a client stalled in it
                    // is the first evicted, and it has a deadline.
                    Some(tls) => match trilog_tls::tokio_io::accept(&tls, &mut stream).await {
                        Ok((mut secured, role)) => {
                            serve(&guard, &mut secured, peer, Some(role)).await
                        }
                        Err(e) => info!("metadata store: TLS handshake with {peer} refused: {e}"),
                    },
                }
            };
            tokio::select! {
                _ = serving => {}
                _ = stopped(&mut stop) => {}
                _ = evict.notified() => {
                    info!("metadata store: closing the connection from {peer}, idle the longest, for a new one");
                }
            }
            drop(stream);
            drop(guard);
        });
    }
    drop(listener);
    // Every connection task sees the stop signal and ends; wait for them so
    // that the file and its lock are released when the thread ends.
    loop {
        // Created before the check, so a close between the two still wakes
        // us (`notify_waiters` reaches every `Notified` created before it).
        let closed = server.connection_closed.notified();
        if server.connections.get() == 0 {
            return;
        }
        closed.await;
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    guard: &ConnectionGuard,
    stream: &mut S,
    peer: SocketAddr,
    role: Option<Role>,
) {
    let server = &guard.server;
    let idle = Duration::from_millis(CONNECTION_IDLE_MS);
    loop {
        guard.set_idle(true);
        let frame = match tokio::time::timeout(idle, read_frame(stream)).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(FrameError::Closed)) => return,
            // A TLS client that ends without close_notify (every process
            // that exits): closed between frames, as far as it matters.
            Ok(Err(FrameError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => {
                info!("metadata store: the connection from {peer} ended: {e}");
                return;
            }
            Ok(Err(e)) => {
                warn!("metadata store: closing the connection from {peer}: {e}");
                return;
            }
            Err(_) => {
                info!("metadata store: closing the connection from {peer}: no whole request in {CONNECTION_IDLE_MS} ms");
                return;
            }
        };
        guard.set_idle(false);
        let answer = match role {
            Some(role) if !role.may_send(frame.header.kind) => {
                warn!(
                    "metadata store: refused {:?} from {peer}: its certificate's role is {role}",
                    frame.header.kind
                );
                error_frame(
                    frame.header.request_id,
                    format!(
                        "forbidden: a certificate of role {role} may not send {:?}",
                        frame.header.kind
                    ),
                )
            }
            _ => server.handle(&frame, peer).await,
        };
        if let Err(e) = stream.write_all(&answer).await {
            warn!("metadata store: closing the connection from {peer}: write: {e}");
            return;
        }
    }
}

impl Server {
    /// Answers one request with exactly one frame carrying its request id.
    async fn handle(&self, frame: &Frame, peer: SocketAddr) -> Vec<u8> {
        let request_id = frame.header.request_id;
        let request = match decode_payload(frame.header.kind, &frame.payload) {
            Ok(request) => request,
            Err(e) => {
                warn!("metadata store: bad request from {peer}: {e}");
                return error_frame(request_id, format!("bad request: {e}"));
            }
        };
        match request {
            Message::MetaGetLog(r) => encode(request_id, &self.get_log(r).await),
            Message::MetaCasLog(r) => match self.cas_log(r) {
                Ok(result) => encode(request_id, &result),
                Err(message) => error_frame(request_id, message),
            },
            Message::MetaListLogs(_) => {
                let logs = self.state.borrow().list_logs();
                encode(request_id, &MetaLogs { logs })
            }
            Message::MetaRegister(r) => self.register(request_id, r),
            Message::MetaDeregister(r) => {
                let removed =
                    self.state
                        .borrow_mut()
                        .deregister(r.node_id, r.incarnation, self.now_ms());
                if removed {
                    info!("metadata store: node {} deregistered (stopping)", r.node_id);
                }
                encode(request_id, &MetaDeregistered { removed })
            }
            Message::MetaListNodes(r) => {
                let nodes = self.state.borrow().nodes(self.now_ms(), r.include_dead);
                encode(request_id, &MetaNodes { nodes })
            }
            Message::MetaSetNodeMode(r) => match self.set_node_mode(r) {
                Ok(modes) => encode(request_id, &modes),
                Err(message) => error_frame(request_id, message),
            },
            Message::MetaGetNodeModes(_) => {
                let modes = self.state.borrow().modes();
                encode(request_id, &MetaNodeModes { modes })
            }
            Message::MetaGetCluster(_) => match self.state.borrow().cluster_id() {
                Some(cluster_id) => encode(request_id, &MetaCluster { cluster_id }),
                // `start` creates it before serving anything.
                None => error_frame(request_id, "the store has no cluster id".into()),
            },
            other => error_frame(
                request_id,
                format!("{:?} is not a metadata request", other.kind()),
            ),
        }
    }

    /// A registration; a refusal because another incarnation holds the
    /// id is its own answer, so the node can tell it from a failure.
    fn register(&self, request_id: u64, r: MetaRegister) -> Vec<u8> {
        let node_id = r.node.node_id;
        let registered =
            self.state
                .borrow_mut()
                .register(r.node, u64::from(r.lease_ms), self.now_ms());
        match registered {
            Ok(_) => encode(
                request_id,
                &MetaRegistered {
                    lease_ms: r.lease_ms,
                    mode: self.state.borrow().mode(node_id),
                },
            ),
            Err(RegisterError::Removed { .. }) => encode(
                request_id,
                &MetaRegistered {
                    lease_ms: 0,
                    mode: NodeMode::Removed,
                },
            ),
            Err(RegisterError::NodeIdTaken {
                holder,
                lease_remaining_ms,
            }) => encode(
                request_id,
                &MetaRegisterRefused {
                    node_id,
                    holder: *holder,
                    lease_remaining_ms,
                },
            ),
            Err(e) => error_frame(request_id, e.to_string()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A get; with `wait_ms > 0` a watch (see `MetaGetLog`).
    async fn get_log(&self, r: MetaGetLog) -> MetaLog {
        if r.wait_ms > 0 {
            let deadline = Instant::now() + Duration::from_millis(u64::from(r.wait_ms));
            loop {
                // Listen before checking, so a CAS between the check and the
                // wait still wakes us.
                let changed = self.changed.notified();
                if self.state.borrow().version(r.log_id) != r.known_version {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if tokio::time::timeout(left, changed).await.is_err() {
                    break;
                }
            }
        }
        let state = self.state.borrow();
        let (version, record) = state.get(r.log_id);
        MetaLog {
            log_id: r.log_id,
            version,
            record: record.cloned(),
        }
    }

    /// Applies a CAS to a copy of the state, saves the copy, and only then
    /// makes it the state and answers. The copy costs as much as the save
    /// (which writes the whole state anyway), and keeps memory equal to the
    /// file when the save fails.
    /// Sets a node's mode, durably before it is answered (as a CAS).
    fn set_node_mode(&self, r: MetaSetNodeMode) -> Result<MetaNodeModes, String> {
        self.refuse_if_failed()?;
        let mut next = self.state.borrow().clone();
        let changed = next
            .set_mode(r.node_id, r.mode)
            .map_err(|e| e.to_string())?;
        if changed {
            if let Err(e) = self.file.save(&next) {
                warn!("metadata store: {e}; refusing changes until restarted");
                let why = e.to_string();
                *self.failed.borrow_mut() = Some(why.clone());
                return Err(format!(
                    "the mode of node {} may or may not be durable: {why}",
                    r.node_id
                ));
            }
            *self.state.borrow_mut() = next;
        }
        let modes = self.state.borrow().modes();
        Ok(MetaNodeModes { modes })
    }

    fn refuse_if_failed(&self) -> Result<(), String> {
        match self.failed.borrow().as_ref() {
            Some(why) => Err(format!(
                "the store refuses changes since a save failed ({why}); restart it"
            )),
            None => Ok(()),
        }
    }

    fn cas_log(&self, r: MetaCasLog) -> Result<MetaCasResult, String> {
        self.refuse_if_failed()?;
        let mut next = self.state.borrow().clone();
        match next.cas(r.log_id, r.expected_version, r.record) {
            Ok(version) => {
                if let Err(e) = self.file.save(&next) {
                    warn!("metadata store: {e}; refusing changes until restarted");
                    let why = e.to_string();
                    *self.failed.borrow_mut() = Some(why.clone());
                    return Err(format!(
                        "the change of log {} may or may not be durable: {why}",
                        r.log_id
                    ));
                }
                *self.state.borrow_mut() = next;
                self.changed.notify_waiters();
                Ok(MetaCasResult {
                    ok: true,
                    version,
                    current: None,
                })
            }
            Err(CasError::Conflict { version, current }) => Ok(MetaCasResult {
                ok: false,
                version,
                current,
            }),
            Err(e) => Err(format!("log {}: {e}", r.log_id)),
        }
    }
}

/// A `MetaError` frame, its message cut to the wire's limit.
fn error_frame(request_id: u64, mut message: String) -> Vec<u8> {
    if message.len() > ERROR_MESSAGE_BYTES_MAX {
        let mut cut = ERROR_MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    encode(request_id, &MetaError { message })
}
