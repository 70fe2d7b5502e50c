//! The embedded metadata store's server: one glommio executor on a thread of
//! its own (not pinned: it is idle nearly always and must not take a core
//! from a log shard).
//!
//! The executor owns the [`MetaState`] and the [`MetaFile`]; each
//! connection is a local task that reads a frame, answers it, and reads the
//! next, so requests apply one at a time and a slow peer or a long watch
//! holds only its own connection. A watch waits on an [`Event`] notified by
//! every applied CAS, raced against a timer: nothing polls.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_lite::future;
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};
use log::{info, warn};
use socket2::{Domain, Protocol, Socket, Type};
use trilog_wire::codec::decode_payload;
use trilog_wire::limits::ERROR_MESSAGE_BYTES_MAX;
use trilog_wire::meta::{
    MetaCasLog, MetaCasResult, MetaError, MetaGetLog, MetaLog, MetaLogs, MetaNodes, MetaRegistered,
};
use trilog_wire::{encode, Message};

use super::persist::{MetaFile, PersistError};
use super::store::{CasError, MetaState};
use super::CONNECTIONS_MAX;
use crate::framing::{read_frame, write_frames, Frame, FrameReadError};

/// Pending connections the kernel queues before the server accepts them.
const LISTEN_BACKLOG: i32 = 128;
/// Registered io memory of the executor: it does no direct I/O, so the
/// minimum glommio takes.
const EXECUTOR_IO_MEMORY_BYTES: usize = 64 * 1024;
/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

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
    #[error("metadata store on {listen}: executor: {reason}")]
    Executor { listen: SocketAddr, reason: String },
    #[error("metadata store thread panicked")]
    Panicked,
}

/// A running metadata server. Dropping it stops it too.
#[derive(Debug)]
pub struct MetaServerHandle {
    local_addr: SocketAddr,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl MetaServerHandle {
    /// Where the server listens (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection (pending watches end without
    /// an answer) and waits for the thread. A CAS being saved finishes
    /// first: the executor is single-threaded, so stop takes effect between
    /// requests. Errs only if the thread panicked.
    pub fn stop(mut self) -> Result<(), MetaServerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), MetaServerError> {
        self.stop.stop();
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
    let stop = Arc::new(StopSignal::default());
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("trilog-meta".into())
        .spawn(move || run_thread(listen, dir, thread_stop, ready_tx))
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

fn run_thread(listen: SocketAddr, dir: PathBuf, stop: Arc<StopSignal>, ready: Ready) {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("trilog-meta")
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
        .make();
    let executor = match executor {
        Ok(ex) => ex,
        Err(e) => {
            let _ = ready.send(Err(MetaServerError::Executor {
                listen,
                reason: e.to_string(),
            }));
            return;
        }
    };
    executor.run(async move {
        let (server, listener, local_addr) = match start(listen, &dir, stop) {
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
    stop: Arc<StopSignal>,
) -> Result<(Rc<Server>, Listening, SocketAddr), MetaServerError> {
    let (file, state) = MetaFile::open(dir)?;
    let io = |what| {
        move |source| MetaServerError::Io {
            listen,
            what,
            source,
        }
    };
    let listener = bind(listen).map_err(io("bind"))?;
    let local_addr = listener
        .listener
        .local_addr()
        .map_err(|e| io("local address")(e.into()))?;
    let server = Rc::new(Server {
        state: RefCell::new(state),
        file,
        changed: Event::new(),
        started: Instant::now(),
        failed: RefCell::new(None),
        connections: Cell::new(0),
        connection_closed: Event::new(),
        stop,
    });
    Ok((server, listener, local_addr))
}

/// The listener and its descriptor (glommio's listener does not expose it).
struct Listening {
    listener: TcpListener,
    fd: RawFd,
}

impl Listening {
    /// Stops listening now. Closing the descriptor is not enough: an accept
    /// still queued in io_uring keeps the socket listening until the ring
    /// lets it go, and a restart on the same port would find it in use.
    fn close(self) {
        // SAFETY: `fd` stays open while `self.listener` lives, and shutdown
        // takes no pointers.
        let rc = unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if rc != 0 {
            warn!(
                "metadata store: shutdown of the listener: {}",
                io::Error::last_os_error()
            );
        }
        drop(self.listener);
    }
}

/// Binds with SO_REUSEADDR (a restart need not wait for TIME_WAIT) and
/// without SO_REUSEPORT, which glommio's own `bind` sets: two stores must
/// never share a port.
fn bind(listen: SocketAddr) -> io::Result<Listening> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket whose ownership
    // `into_raw_fd` gave up; the listener takes it over and closes it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(Listening { listener, fd })
}

/// Set once from any thread; wakes every task waiting on it.
#[derive(Debug, Default)]
struct StopSignal {
    stopped: AtomicBool,
    event: Event,
}

impl StopSignal {
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    async fn wait(&self) {
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let listener = self.event.listen();
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

struct Server {
    state: RefCell<MetaState>,
    file: MetaFile,
    /// Notified after every applied CAS: watches wait on it.
    changed: Event,
    /// The lease clock's origin: leases are volatile, so a clock local to
    /// this process is enough, and a monotonic one cannot jump.
    started: Instant,
    /// Set when a save failed: from then on the disk's content is unknown
    /// and every CAS is refused until a restart reloads the file.
    failed: RefCell<Option<String>>,
    connections: Cell<usize>,
    connection_closed: Event,
    stop: Arc<StopSignal>,
}

/// Counts a connection while its task lives.
struct ConnectionGuard {
    server: Rc<Server>,
}

impl ConnectionGuard {
    fn new(server: Rc<Server>) -> ConnectionGuard {
        server.connections.set(server.connections.get() + 1);
        debug_assert!(server.connections.get() <= CONNECTIONS_MAX);
        ConnectionGuard { server }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.server
            .connections
            .set(self.server.connections.get() - 1);
        self.server.connection_closed.notify(usize::MAX);
    }
}

async fn accept_loop(server: Rc<Server>, listening: Listening) {
    loop {
        let accepted = future::or(async { Some(listening.listener.accept().await) }, async {
            server.stop.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                warn!("metadata store: accept failed: {e}");
                Timer::new(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(peer) => peer.to_string(),
            Err(_) => "an unknown peer".to_string(),
        };
        if server.connections.get() >= CONNECTIONS_MAX {
            warn!(
                "metadata store: refusing the connection from {peer}: {CONNECTIONS_MAX} are open"
            );
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            warn!("metadata store: nodelay on the connection from {peer}: {e}");
        }
        let guard = ConnectionGuard::new(server.clone());
        glommio::spawn_local(async move {
            let server = &guard.server;
            let mut stream = stream;
            future::or(serve(server, &mut stream, &peer), server.stop.wait()).await;
            // As for the listener: close now, not when io_uring lets go.
            let _ = stream.shutdown(std::net::Shutdown::Both).await;
            drop(guard);
        })
        .detach();
    }
    listening.close();
    // Every connection task sees the stop signal and ends; wait for them so
    // that the file and its lock are released when the thread ends.
    loop {
        if server.connections.get() == 0 {
            return;
        }
        let listener = server.connection_closed.listen();
        if server.connections.get() == 0 {
            return;
        }
        listener.await;
    }
}

async fn serve(server: &Server, stream: &mut TcpStream, peer: &str) {
    loop {
        let frame = match read_frame(stream).await {
            Ok(frame) => frame,
            Err(FrameReadError::Closed) => return,
            Err(e) => {
                warn!("metadata store: closing the connection from {peer}: {e}");
                return;
            }
        };
        let answer = server.handle(&frame, peer).await;
        if let Err(e) = write_frames(stream, &[answer]).await {
            warn!("metadata store: closing the connection from {peer}: write: {e}");
            return;
        }
    }
}

impl Server {
    /// Answers one request with exactly one frame carrying its request id.
    async fn handle(&self, frame: &Frame, peer: &str) -> Vec<u8> {
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
            Message::MetaRegister(r) => {
                let registered =
                    self.state
                        .borrow_mut()
                        .register(r.node, u64::from(r.lease_ms), self.now_ms());
                match registered {
                    Ok(_) => encode(
                        request_id,
                        &MetaRegistered {
                            lease_ms: r.lease_ms,
                        },
                    ),
                    Err(e) => error_frame(request_id, e.to_string()),
                }
            }
            Message::MetaListNodes(r) => {
                let nodes = self.state.borrow().nodes(self.now_ms(), r.include_dead);
                encode(request_id, &MetaNodes { nodes })
            }
            other => error_frame(
                request_id,
                format!("{:?} is not a metadata request", other.kind()),
            ),
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
                let changed = self.changed.listen();
                if self.state.borrow().version(r.log_id) != r.known_version {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let timed_out = future::or(
                    async {
                        changed.await;
                        false
                    },
                    async {
                        Timer::new(left).await;
                        true
                    },
                )
                .await;
                if timed_out {
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
    fn cas_log(&self, r: MetaCasLog) -> Result<MetaCasResult, String> {
        if let Some(why) = self.failed.borrow().as_ref() {
            return Err(format!(
                "the store refuses changes since a save failed ({why}); restart it"
            ));
        }
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
                self.changed.notify(usize::MAX);
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
