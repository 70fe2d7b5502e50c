//! Keeping a node's registration alive: a thread that registers the node
//! with the metadata store and renews it every third of its lease, so two
//! renewals can be lost before the lease runs out.
//!
//! Whatever the store (embedded or etcd), the thread drives an
//! `Arc<dyn MetaStore>` from [`MetaAddr::connect_with`] on a small
//! current-thread tokio runtime of its own, so both stores share this one
//! loop. Each call has a deadline of the renewal interval, clamped to
//! [`REGISTER_CALL_TIMEOUT_MIN`]..=[`REGISTER_CALL_TIMEOUT_MAX`]. After any
//! error it drops the client and connects again, with a bounded
//! exponential backoff (never longer than the renewal interval), and logs
//! every failure at `warn`. Stopping takes effect at once, between calls or
//! during one (the call in flight is abandoned; a registration is
//! idempotent).
//!
//! What is registered may change while the node runs
//! ([`spawn_registration_refreshed`]): before every call the thread asks
//! the node for its current [`NodeInfo`] (its free bytes, whether its
//! disk is full), and between renewals it asks every
//! [`REGISTER_REFRESH_POLL`]: a change of `full` is registered at once,
//! so placement learns within a fraction of a second that a node stopped
//! (or resumed) taking new segments; the byte counts ride on the next
//! renewal.
//!
//! Every answer carries the id's mode ([`NodeMode`]), handed to the
//! node's [`ModeReport`] whenever it changes: a node learns that an
//! operator decommissions it (leaving) within a third of a lease. A
//! refusal because the id was removed ([`MetaError::NodeRemoved`]) ends the
//! thread at any time, after reporting [`NodeMode::Removed`]: the id will
//! never be accepted again, so retrying is pointless; before the first
//! success it is [`FirstRegistration::Removed`].
//!
//! A node that stops on purpose gives its registration up
//! ([`RegistrationHandle::give_up`]): the thread stops renewing and asks
//! the store to end the lease now (`deregister_node`), so placement and
//! repair see the node gone at once instead of a lease later.
//!
//! A refusal because another incarnation holds the node id
//! ([`NodeIdTaken`]) before the first success ends the thread: the node
//! must not start under an id another live process holds, and
//! [`RegistrationHandle::wait_first`] tells the caller so. After a first
//! success the same refusal (the lease ran out while the store was out of
//! reach, and another process took the id) is logged at `error` and
//! retried like any failure: the node keeps trying to win its id back
//! once the other's lease ends.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use tokio::sync::oneshot;
use trilog_wire::meta::{NodeInfo, NodeMode};

use crate::addr::MetaAddr;
use crate::error::{MetaError, NodeIdTaken};
use crate::limits::{
    LEASE_MS_MAX, LEASE_MS_MIN, REGISTER_BACKOFF_MAX, REGISTER_BACKOFF_MIN,
    REGISTER_CALL_TIMEOUT_MAX, REGISTER_CALL_TIMEOUT_MIN, REGISTER_REFRESH_POLL,
};
use crate::store::MetaStore;
use trilog_tls::TlsIdentity;

/// What became of a node's first registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FirstRegistration {
    /// No answer yet (the store is out of reach, or slow).
    #[default]
    Pending,
    Registered,
    /// Another live incarnation holds the id; the thread has ended.
    Refused(NodeIdTaken),
    /// The id was decommissioned for good; the thread has ended.
    Removed {
        node_id: u64,
    },
}

#[derive(Debug, Default)]
struct Registered {
    first: Mutex<FirstRegistration>,
    cond: Condvar,
    /// When the store last accepted a registration or renewal.
    last_ok: Mutex<Option<Instant>>,
}

impl Registered {
    fn set(&self, outcome: FirstRegistration) {
        assert_ne!(outcome, FirstRegistration::Pending);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if *first == FirstRegistration::Pending {
            *first = outcome;
        }
        self.cond.notify_all();
    }

    fn renewed(&self) {
        *self.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn is_pending(&self) -> bool {
        *self.first.lock().unwrap_or_else(|e| e.into_inner()) == FirstRegistration::Pending
    }
}

/// How the renewal thread is told to end; dropping the sender is a
/// plain stop.
#[derive(Debug)]
struct GiveUp {
    /// How long the deregistration may take, connecting included.
    within: Duration,
    answer: std::sync::mpsc::Sender<Result<bool, MetaError>>,
}

/// The renewal thread. Dropping the handle stops it too.
#[derive(Debug)]
pub struct RegistrationHandle {
    stop: Option<oneshot::Sender<GiveUp>>,
    registered: Arc<Registered>,
    /// The lease the store grants (as clamped).
    lease: Duration,
    thread: Option<JoinHandle<()>>,
}

/// Where a node's registration stands, for its readiness and metrics;
/// cheap to clone, readable from any thread.
#[derive(Debug, Clone)]
pub struct RegistrationWatch {
    registered: Arc<Registered>,
    lease: Duration,
}

impl RegistrationWatch {
    /// Whether the store accepted a registration or renewal within the
    /// lease: the node counts as alive there now.
    pub fn is_current(&self) -> bool {
        let last = *self
            .registered
            .last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|at| at.elapsed() < self.lease)
    }
}

impl RegistrationHandle {
    /// A watch on this registration ([`RegistrationWatch`]).
    pub fn watch(&self) -> RegistrationWatch {
        RegistrationWatch {
            registered: self.registered.clone(),
            lease: self.lease,
        }
    }

    /// Waits up to `timeout` for the first successful registration; true if
    /// it happened (then or before). Blocks the calling thread.
    pub fn registered_once(&self, timeout: Duration) -> bool {
        self.wait_first(timeout) == FirstRegistration::Registered
    }

    /// Waits up to `timeout` for the first registration's outcome: still
    /// [`FirstRegistration::Pending`] if the store did not answer by then.
    /// Blocks the calling thread.
    pub fn wait_first(&self, timeout: Duration) -> FirstRegistration {
        let first = self
            .registered
            .first
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (first, _) = self
            .registered
            .cond
            .wait_timeout_while(first, timeout, |first| *first == FirstRegistration::Pending)
            .unwrap_or_else(|e| e.into_inner());
        first.clone()
    }

    /// Stops renewing (the lease then runs out in the store) and joins.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Stops renewing and ends the lease in the store now
    /// (`deregister_node` for this incarnation), within `within`; joins
    /// the thread. `Ok(true)`: the store ended the lease; `Ok(false)`: it
    /// held none of ours (it ran out, or the thread had ended); an error:
    /// the store did not answer in time, and the lease runs out by itself.
    pub fn give_up(mut self, within: Duration) -> Result<bool, MetaError> {
        let (answer, answered) = std::sync::mpsc::channel();
        let told = match self.stop.take() {
            Some(stop) => stop.send(GiveUp { within, answer }).is_ok(),
            None => false,
        };
        self.shutdown();
        if !told {
            return Ok(false);
        }
        // The thread answers before it ends (joined above) unless it
        // ended on its own first.
        answered.try_recv().unwrap_or(Ok(false))
    }

    fn shutdown(&mut self) {
        // Dropping the sender wakes the thread's loop at once.
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

/// Starts registering `info` with the embedded metadata store at `meta`:
/// [`spawn_registration_at`] with [`MetaAddr::Embedded`].
pub fn spawn_registration(meta: SocketAddr, info: NodeInfo, lease: Duration) -> RegistrationHandle {
    spawn_registration_at(MetaAddr::Embedded(meta.into()), info, lease)
}

/// Starts registering `info` with etcd at `endpoints` (`host:port` each):
/// [`spawn_registration_at`] with [`MetaAddr::Etcd`].
pub fn spawn_etcd_registration(
    endpoints: Vec<String>,
    info: NodeInfo,
    lease: Duration,
) -> RegistrationHandle {
    spawn_registration_at(MetaAddr::Etcd(endpoints), info, lease)
}

/// Brings a registration up to date: sets the fields that change while the
/// node runs (free bytes, `full`). Called on the registration thread.
pub type InfoRefresh = Arc<dyn Fn(&mut NodeInfo) + Send + Sync>;

/// Told the id's mode at the first answer and at every change of it (see
/// the module doc). Called on the registration thread.
pub type ModeReport = Arc<dyn Fn(NodeMode) + Send + Sync>;

/// Starts registering `info` with the store at `meta` under `lease`
/// (clamped to the store's bounds), renewing every `lease / 3` (see the
/// module doc). The thread connects lazily, and again after any error.
pub fn spawn_registration_at(
    meta: MetaAddr,
    info: NodeInfo,
    lease: Duration,
) -> RegistrationHandle {
    spawn_registration_refreshed(
        meta,
        info,
        lease,
        Arc::new(|_: &mut NodeInfo| {}),
        Arc::new(|_: NodeMode| {}),
        None,
    )
}

/// [`spawn_registration_at`], with `info` brought up to date by `refresh`
/// before every call, and registered again at once when its `full` flag
/// changes, and the id's mode told to `on_mode` (see the module doc).
pub fn spawn_registration_refreshed(
    meta: MetaAddr,
    info: NodeInfo,
    lease: Duration,
    refresh: InfoRefresh,
    on_mode: ModeReport,
    tls: Option<Arc<TlsIdentity>>,
) -> RegistrationHandle {
    let lease_ms = clamp_lease(&info, lease);
    let node_id = info.node_id;
    let (stop_tx, stop_rx) = oneshot::channel();
    let registered = Arc::new(Registered::default());
    let thread_registered = registered.clone();
    let thread = std::thread::Builder::new()
        .name(format!("trilog-register-{node_id}"))
        .spawn(move || {
            let hooks = Hooks {
                refresh,
                on_mode,
                tls,
            };
            run_thread(meta, info, &hooks, lease_ms, stop_rx, &thread_registered)
        });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            error!("node {node_id}: cannot start the registration thread: {e}");
            None
        }
    };
    RegistrationHandle {
        stop: Some(stop_tx),
        registered,
        lease: Duration::from_millis(lease_ms),
        thread,
    }
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

/// What the loop calls back into the node.
struct Hooks {
    refresh: InfoRefresh,
    on_mode: ModeReport,
    /// The node's identity, to reach a store that serves mutual TLS.
    tls: Option<Arc<TlsIdentity>>,
}

fn run_thread(
    meta: MetaAddr,
    info: NodeInfo,
    hooks: &Hooks,
    lease_ms: u64,
    stop: oneshot::Receiver<GiveUp>,
    registered: &Registered,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(renew_loop(&meta, info, hooks, lease_ms, stop, registered)),
        Err(e) => error!(
            "node {}: cannot start the registration runtime: {e}",
            info.node_id
        ),
    }
}

async fn renew_loop(
    meta: &MetaAddr,
    mut info: NodeInfo,
    hooks: &Hooks,
    lease_ms: u64,
    mut stop: oneshot::Receiver<GiveUp>,
    registered: &Registered,
) {
    assert!((LEASE_MS_MIN..=LEASE_MS_MAX).contains(&lease_ms));
    let node_id = info.node_id;
    let lease = Duration::from_millis(lease_ms);
    let renew = renew_interval(lease_ms);
    let call_timeout = renew.clamp(REGISTER_CALL_TIMEOUT_MIN, REGISTER_CALL_TIMEOUT_MAX);
    let mut store: Option<Arc<dyn MetaStore>> = None;
    let mut backoff = REGISTER_BACKOFF_MIN;
    let mut failing = false;
    let mut mode: Option<NodeMode> = None;
    let refresh = &hooks.refresh;
    loop {
        refresh(&mut info);
        let outcome = tokio::select! {
            told = &mut stop => return deregister(told, &mut store, meta, hooks, &info).await,
            outcome = register_once(&mut store, meta, hooks.tls.as_ref(), &info, lease, call_timeout) => outcome,
        };
        let wait = match outcome {
            Ok(now) => {
                if mode != Some(now) {
                    if now == NodeMode::Leaving {
                        warn!("node {node_id}: decommissioned by an operator: leaving (no new data; its copies move to other nodes)");
                    } else if mode.is_some() {
                        info!("node {node_id}: mode {} now", now.name());
                    }
                    mode = Some(now);
                    (hooks.on_mode)(now);
                }
                if failing {
                    info!("node {node_id}: registered with the metadata store {meta} again");
                }
                failing = false;
                backoff = REGISTER_BACKOFF_MIN;
                registered.set(FirstRegistration::Registered);
                registered.renewed();
                renew
            }
            Err(MetaError::NodeRemoved { node_id }) => {
                error!("node {node_id}: the node id was removed from the cluster (decommissioned); it no longer registers");
                registered.set(FirstRegistration::Removed { node_id });
                (hooks.on_mode)(NodeMode::Removed);
                return;
            }
            Err(MetaError::NodeIdTaken(taken)) if registered.is_pending() => {
                error!("node {node_id}: registration refused: {taken}");
                registered.set(FirstRegistration::Refused(taken));
                return;
            }
            Err(why) => {
                // The client may be out of step with the store: connect again.
                store = None;
                failing = true;
                if matches!(why, MetaError::NodeIdTaken(_)) {
                    error!("node {node_id}: lost its id to another process: {why}; retrying in {backoff:?}");
                } else {
                    warn!(
                        "node {node_id}: registration with the metadata store {meta} failed: {why}; retrying in {backoff:?}"
                    );
                }
                let wait = backoff;
                backoff = (backoff * 2).min(REGISTER_BACKOFF_MAX).min(renew);
                wait
            }
        };
        if let Err(told) = wait_or_change(&mut stop, wait, &mut info, refresh).await {
            return deregister(told, &mut store, meta, hooks, &info).await;
        }
    }
}

/// Ends the registration the way the thread was told: if given up, ends
/// the lease in the store now (see [`RegistrationHandle::give_up`]) and
/// answers how that went.
async fn deregister(
    told: Result<GiveUp, oneshot::error::RecvError>,
    store: &mut Option<Arc<dyn MetaStore>>,
    meta: &MetaAddr,
    hooks: &Hooks,
    info: &NodeInfo,
) {
    // A dropped sender: a plain stop.
    let Ok(GiveUp { within, answer }) = told else {
        return;
    };
    let (node_id, incarnation) = (info.node_id, info.incarnation);
    let call = async {
        let client = match store {
            Some(client) => client,
            None => store.insert(meta.connect_tls(within, hooks.tls.as_ref()).await?),
        };
        client.deregister_node(node_id, incarnation).await
    };
    let outcome = match tokio::time::timeout(within, call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(MetaError::Timeout {
            what: "deregister_node",
            after_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
        }),
    };
    match &outcome {
        Ok(true) => info!("node {node_id}: registration given up: the store lists it dead now"),
        Ok(false) => info!("node {node_id}: registration given up; the store held no lease of this incarnation"),
        Err(e) => warn!("node {node_id}: could not give the registration up ({e}); its lease runs out by itself"),
    }
    // The caller may have stopped waiting.
    let _ = answer.send(outcome);
}

/// Waits `wait`, or less if `refresh` turns `info`'s `full` flag: a change
/// that must reach the store before the next renewal. Stopped: what the
/// thread was told.
async fn wait_or_change(
    stop: &mut oneshot::Receiver<GiveUp>,
    wait: Duration,
    info: &mut NodeInfo,
    refresh: &InfoRefresh,
) -> Result<(), Result<GiveUp, oneshot::error::RecvError>> {
    let deadline = tokio::time::Instant::now() + wait;
    let full = info.full;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let step = (deadline - now).min(REGISTER_REFRESH_POLL);
        tokio::select! {
            told = &mut *stop => return Err(told),
            _ = tokio::time::sleep(step) => {}
        }
        refresh(info);
        if info.full != full {
            info!(
                "node {}: disk {}; registering that now",
                info.node_id,
                if info.full {
                    "full (read-only)"
                } else {
                    "writable again"
                }
            );
            return Ok(());
        }
    }
}

async fn register_once(
    store: &mut Option<Arc<dyn MetaStore>>,
    meta: &MetaAddr,
    tls: Option<&Arc<TlsIdentity>>,
    info: &NodeInfo,
    lease: Duration,
    call_timeout: Duration,
) -> Result<NodeMode, MetaError> {
    let client = match store {
        Some(client) => client,
        None => store.insert(meta.connect_tls(call_timeout, tls).await?),
    };
    client.register_node(info.clone(), lease).await
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::embedded::EmbeddedMeta;
    use crate::server::spawn_meta_server;

    /// Generous: the tests must not fail on a slow machine, and nothing here
    /// waits for it to pass.
    const TEST_TIMEOUT: Duration = Duration::from_secs(20);

    fn node(node_id: u64) -> NodeInfo {
        NodeInfo {
            node_id,
            host: "127.0.0.1".into(),
            shard_ports: vec![7001, 7002],
            zone: "zone-a".into(),
            capacity_bytes: 1 << 30,
            incarnation: node_id + 1000,
            bytes_used: 0,
            bytes_free: 0,
            full: false,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn registration_then_list_nodes_shows_it_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let server = spawn_meta_server(listen, dir.path().to_path_buf()).expect("starts");
        let info = node(42);
        let registration =
            spawn_registration(server.local_addr(), info.clone(), Duration::from_secs(30));
        assert!(registration.registered_once(TEST_TIMEOUT));
        // One runtime for the client: its pooled connections belong to it.
        let rt = runtime();
        let meta = EmbeddedMeta::new(server.local_addr());
        for include_dead in [false, true] {
            let nodes = rt.block_on(meta.list_nodes(include_dead)).expect("listed");
            assert_eq!(nodes.len(), 1);
            assert_eq!(nodes[0].info, info);
            assert!(nodes[0].alive);
            assert!(nodes[0].lease_remaining_ms > 0 && nodes[0].lease_remaining_ms <= 30_000);
        }
        registration.stop();
        server.stop().expect("stops");
    }

    #[test]
    fn a_disk_turning_full_reaches_the_store_before_the_next_renewal() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let server = spawn_meta_server(listen, dir.path().to_path_buf()).expect("starts");
        let full = Arc::new(AtomicBool::new(false));
        let source = full.clone();
        let refresh: InfoRefresh = Arc::new(move |info: &mut NodeInfo| {
            info.full = source.load(Ordering::SeqCst);
            info.bytes_free = if info.full { 1 } else { 1 << 30 };
        });
        // A long lease: renewals every 20 s, so only the change can explain
        // a prompt update.
        let registration = spawn_registration_refreshed(
            MetaAddr::Embedded(server.local_addr().into()),
            node(3),
            Duration::from_secs(60),
            refresh,
            Arc::new(|_: NodeMode| {}),
            None,
        );
        assert!(registration.registered_once(TEST_TIMEOUT));
        let rt = runtime();
        let meta = EmbeddedMeta::new(server.local_addr());
        let listed = |rt: &tokio::runtime::Runtime| {
            let nodes = rt.block_on(meta.list_nodes(false)).expect("listed");
            assert_eq!(nodes.len(), 1);
            nodes[0].info.clone()
        };
        let first = listed(&rt);
        assert!(!first.full);
        assert_eq!(first.bytes_free, 1 << 30);
        full.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = listed(&rt);
            if now.full {
                assert_eq!(now.bytes_free, 1);
                break;
            }
            assert!(Instant::now() < deadline, "full never reached the store");
            std::thread::sleep(REGISTER_REFRESH_POLL);
        }
        registration.stop();
        server.stop().expect("stops");
    }

    #[test]
    fn giving_up_ends_the_lease_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let server = spawn_meta_server(listen, dir.path().to_path_buf()).expect("starts");
        let registration =
            spawn_registration(server.local_addr(), node(8), Duration::from_secs(120));
        assert!(registration.registered_once(TEST_TIMEOUT));
        assert!(matches!(registration.give_up(TEST_TIMEOUT), Ok(true)));
        let rt = runtime();
        let meta = EmbeddedMeta::new(server.local_addr());
        let nodes = rt.block_on(meta.list_nodes(true)).expect("listed");
        assert_eq!(nodes.len(), 1);
        assert!(
            !nodes[0].alive,
            "still alive with two minutes of lease: {nodes:?}"
        );
        server.stop().expect("stops");
    }

    #[test]
    fn giving_up_without_a_store_ends_within_its_limit() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let registration = spawn_registration(addr, node(6), Duration::from_secs(300));
        let started = Instant::now();
        let outcome = registration.give_up(Duration::from_millis(200));
        assert!(
            matches!(outcome, Err(MetaError::Timeout { .. })),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn registration_retries_until_the_store_is_up() {
        // Reserve a port, free it, and register there before the store starts.
        let dir = tempfile::tempdir().expect("tempdir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let probe = spawn_meta_server(listen, dir.path().to_path_buf()).expect("starts");
        let addr = probe.local_addr();
        probe.stop().expect("stops");
        let registration = spawn_registration(addr, node(9), Duration::from_secs(3));
        assert!(!registration.registered_once(Duration::from_millis(1)));
        let server =
            spawn_meta_server(addr, dir.path().to_path_buf()).expect("restarts on the same port");
        assert!(registration.registered_once(TEST_TIMEOUT));
        registration.stop();
        server.stop().expect("stops");
    }

    #[test]
    fn stop_does_not_wait_for_a_call_in_flight() {
        // A listener that never accepts: the kernel completes the connect,
        // nothing ever answers, so the call waits out its whole deadline
        // (REGISTER_CALL_TIMEOUT_MAX for this lease) unless stop cuts it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let registration = spawn_registration(addr, node(5), Duration::from_secs(300));
        assert!(!registration.registered_once(Duration::from_millis(100)));
        let started = Instant::now();
        registration.stop();
        let took = started.elapsed();
        assert!(
            took < REGISTER_CALL_TIMEOUT_MAX / 2,
            "stop waited for the call: {took:?}"
        );
    }
}
