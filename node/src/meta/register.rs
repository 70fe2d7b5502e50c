//! Keeping a node's registration alive: a std thread that registers the node
//! with the metadata store and renews it every third of its lease, so two
//! renewals can be lost before the lease runs out.
//!
//! With the embedded store it uses a blocking [`BlockingMetaClient`] with
//! timeouts on connect, read and write; with etcd, the client's `EtcdMeta`
//! on a current-thread runtime of the thread's own. Either way it
//! reconnects after any error with a bounded exponential backoff (never
//! longer than the renewal interval), and logs every failure at `warn`. Its waits are `recv_timeout` on the stop channel, so stopping it
//! takes effect at once between calls, and within one IO timeout during one.

use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, info, warn};
use trilog_client::meta_etcd::{EtcdMeta, ETCD_PREFIX_DEFAULT};
use trilog_client::MetaStore;
use trilog_wire::meta::{MetaRegister, NodeInfo};
use trilog_wire::Message;

use super::{BlockingMetaClient, LEASE_MS_MAX, LEASE_MS_MIN};

/// First pause after a failure; it doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bounds of the connect, read and write timeouts (otherwise the renewal
/// interval): long enough for a store saving a CAS, short enough to retry
/// before the lease ends.
const IO_TIMEOUT_MIN: Duration = Duration::from_millis(10);
const IO_TIMEOUT_MAX: Duration = Duration::from_secs(2);
const _: () = assert!(RETRY_BACKOFF_MIN.as_nanos() < RETRY_BACKOFF_MAX.as_nanos());
const _: () = assert!(IO_TIMEOUT_MIN.as_nanos() < IO_TIMEOUT_MAX.as_nanos());

#[derive(Debug, Default)]
struct Registered {
    done: Mutex<bool>,
    cond: Condvar,
}

/// The renewal thread. Dropping the handle stops it too.
#[derive(Debug)]
pub struct RegistrationHandle {
    stop: Option<mpsc::Sender<()>>,
    registered: Arc<Registered>,
    thread: Option<JoinHandle<()>>,
}

impl RegistrationHandle {
    /// Waits up to `timeout` for the first successful registration; true if
    /// it happened (then or before).
    pub fn registered_once(&self, timeout: Duration) -> bool {
        let done = self
            .registered
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .registered
            .cond
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }

    /// Stops renewing (the lease then runs out in the store) and joins.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Dropping the sender wakes the thread's `recv_timeout` at once.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("the registration thread panicked");
            }
        }
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts registering `info` with the embedded metadata store at `meta`
/// under `lease` (clamped to the store's bounds), renewing every `lease / 3`.
pub fn spawn_registration(meta: SocketAddr, info: NodeInfo, lease: Duration) -> RegistrationHandle {
    let lease_ms = clamp_lease(&info, lease);
    let request = Message::MetaRegister(MetaRegister {
        node: info.clone(),
        lease_ms: u32::try_from(lease_ms).unwrap_or(u32::MAX),
    });
    let io_timeout = renew_interval(lease_ms).clamp(IO_TIMEOUT_MIN, IO_TIMEOUT_MAX);
    let mut conn: Option<BlockingMetaClient> = None;
    let register = move || {
        let outcome = register_once(&mut conn, meta, &request, io_timeout);
        if outcome.is_err() {
            // The connection may be out of step with the store: reconnect.
            conn = None;
        }
        outcome
    };
    spawn_renewal(meta.to_string(), info.node_id, lease_ms, register)
}

/// Starts registering `info` with etcd at `endpoints` (`host:port` each),
/// through the client's `EtcdMeta`, as [`spawn_registration`] does with the
/// embedded store. The thread drives the async client on a small
/// current-thread tokio runtime of its own; it connects lazily and again
/// after any error.
pub fn spawn_etcd_registration(
    endpoints: Vec<String>,
    info: NodeInfo,
    lease: Duration,
) -> RegistrationHandle {
    let lease_ms = clamp_lease(&info, lease);
    let node_id = info.node_id;
    let label = format!("etcd://{}", endpoints.join(","));
    let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
    let io_timeout = renew_interval(lease_ms).clamp(IO_TIMEOUT_MIN, IO_TIMEOUT_MAX);
    let mut runtime: Option<tokio::runtime::Runtime> = None;
    let mut client: Option<EtcdMeta> = None;
    let register = move || {
        let rt = match &runtime {
            Some(rt) => rt,
            None => runtime.insert(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?,
            ),
        };
        let outcome = rt.block_on(async {
            let meta = match &client {
                Some(meta) => meta,
                None => client.insert(
                    EtcdMeta::connect_with(&urls, ETCD_PREFIX_DEFAULT, io_timeout)
                        .await
                        .map_err(|e| e.to_string())?,
                ),
            };
            meta.register_node(info.clone(), Duration::from_millis(lease_ms))
                .await
                .map_err(|e| e.to_string())
        });
        if outcome.is_err() {
            client = None;
        }
        outcome
    };
    spawn_renewal(label, node_id, lease_ms, register)
}

fn clamp_lease(info: &NodeInfo, lease: Duration) -> u64 {
    let asked_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let lease_ms = asked_ms.clamp(LEASE_MS_MIN, LEASE_MS_MAX);
    if lease_ms != asked_ms {
        warn!(
            "node {}: lease of {asked_ms} ms clamped to {lease_ms} ms",
            info.node_id
        );
    }
    lease_ms
}

fn renew_interval(lease_ms: u64) -> Duration {
    Duration::from_millis(lease_ms / 3).max(Duration::from_millis(1))
}

/// The renewal thread around `register`, one registration attempt.
fn spawn_renewal(
    store: String,
    node_id: u64,
    lease_ms: u64,
    register: impl FnMut() -> Result<(), String> + Send + 'static,
) -> RegistrationHandle {
    let (stop_tx, stop_rx) = mpsc::channel();
    let registered = Arc::new(Registered::default());
    let thread_registered = registered.clone();
    let thread = std::thread::Builder::new()
        .name(format!("trilog-register-{node_id}"))
        .spawn(move || {
            renew_loop(
                &store,
                node_id,
                lease_ms,
                register,
                &stop_rx,
                &thread_registered,
            )
        });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            error!("cannot start the registration thread: {e}");
            None
        }
    };
    RegistrationHandle {
        stop: Some(stop_tx),
        registered,
        thread,
    }
}

fn renew_loop(
    store: &str,
    node_id: u64,
    lease_ms: u64,
    mut register: impl FnMut() -> Result<(), String>,
    stop: &mpsc::Receiver<()>,
    registered: &Registered,
) {
    debug_assert!((LEASE_MS_MIN..=LEASE_MS_MAX).contains(&lease_ms));
    let renew = renew_interval(lease_ms);
    let mut backoff = RETRY_BACKOFF_MIN;
    let mut failing = false;
    loop {
        let wait = match register() {
            Ok(()) => {
                if failing {
                    info!("node {node_id}: registered with the metadata store {store} again");
                }
                failing = false;
                backoff = RETRY_BACKOFF_MIN;
                let mut done = registered.done.lock().unwrap_or_else(|e| e.into_inner());
                *done = true;
                registered.cond.notify_all();
                renew
            }
            Err(why) => {
                failing = true;
                warn!(
                    "node {node_id}: registration with the metadata store {store} failed: {why}; retrying in {backoff:?}"
                );
                let wait = backoff;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX).min(renew);
                wait
            }
        };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn register_once(
    conn: &mut Option<BlockingMetaClient>,
    meta: SocketAddr,
    request: &Message,
    io_timeout: Duration,
) -> Result<(), String> {
    let client = match conn {
        Some(client) => client,
        None => {
            conn.insert(BlockingMetaClient::connect(meta, io_timeout).map_err(|e| e.to_string())?)
        }
    };
    match client.call(request, io_timeout) {
        Ok(Message::MetaRegistered(_)) => Ok(()),
        Ok(Message::MetaError(e)) => Err(format!("refused: {}", e.message)),
        Ok(other) => Err(format!("unexpected answer {:?}", other.kind())),
        Err(e) => Err(e.to_string()),
    }
}
