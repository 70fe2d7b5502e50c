//! [`EmbeddedMeta`], the one client of the embedded metadata store (served
//! by [`crate::spawn_meta_server`]), behind [`MetaStore`]: one request, one
//! answer per connection at a time, over pooled connections.

use std::mem::MaybeUninit;

use crate::addr::HostPort;
use crate::stream::MetaStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use trilog_tls::TlsIdentity;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use trilog_wire::limits::READ_WAIT_MS_MAX;
use trilog_wire::meta::{
    LogMeta, MetaCasLog, MetaDeregister, MetaGetCluster, MetaGetLog, MetaGetNodeModes,
    MetaListLogs, MetaListNodes, MetaRegister, MetaSetNodeMode, NodeInfo, NodeMode, NodeModeEntry,
    NodeStatus,
};
use trilog_wire::{Kind, Message, WireError};

use crate::error::{MetaError, NodeIdTaken};
use crate::frame_io::{read_message, FrameError};
use crate::limits::{META_CALL_TIMEOUT, META_IDLE_CONNECTIONS_MAX};
use crate::store::{CasOutcome, MetaFuture, MetaStore, Versioned};

/// The client of the embedded metadata store. Connects lazily; keeps a few
/// idle connections, so concurrent calls and long watches each have their
/// own connection; a connection that saw an error is dropped, never reused.
#[derive(Debug)]
pub struct EmbeddedMeta {
    addr: HostPort,
    call_timeout: Duration,
    tls: Option<Arc<TlsIdentity>>,
    idle: Mutex<Vec<MetaStream>>,
    next_request_id: AtomicU64,
}

impl EmbeddedMeta {
    /// A client of the store at `addr`. Nothing is connected yet.
    pub fn new(addr: impl Into<HostPort>) -> EmbeddedMeta {
        EmbeddedMeta::with_call_timeout(addr, META_CALL_TIMEOUT)
    }

    /// As [`EmbeddedMeta::new`], with another deadline per call (a watch
    /// gets its wait on top).
    pub fn with_call_timeout(addr: impl Into<HostPort>, call_timeout: Duration) -> EmbeddedMeta {
        EmbeddedMeta::with_tls(addr, call_timeout, None)
    }

    /// As [`EmbeddedMeta::with_call_timeout`], over mutual TLS with `tls`
    /// when given.
    pub fn with_tls(
        addr: impl Into<HostPort>,
        call_timeout: Duration,
        tls: Option<Arc<TlsIdentity>>,
    ) -> EmbeddedMeta {
        EmbeddedMeta {
            addr: addr.into(),
            call_timeout,
            tls,
            idle: Mutex::new(Vec::new()),
            next_request_id: AtomicU64::new(1),
        }
    }

    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// One request, one answer, within the call timeout plus `wait`.
    async fn call(
        &self,
        what: &'static str,
        request: Message,
        wait: Duration,
    ) -> Result<Message, MetaError> {
        let limit = self.call_timeout + wait;
        match tokio::time::timeout(limit, self.call_once(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(MetaError::Timeout {
                what,
                after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    async fn call_once(&self, request: Message) -> Result<Message, MetaError> {
        let addr = &self.addr;
        let io = |source| MetaError::Io {
            addr: addr.clone(),
            source,
        };
        let mut conn = match self.take_idle() {
            Some(conn) => conn,
            None => {
                // A name is resolved at each connect (tokio tries each
                // address it resolves to).
                MetaStream::dial(addr, self.tls.as_deref())
                    .await
                    .map_err(io)?
            }
        };
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        conn.write_all(&request.encode(request_id))
            .await
            .map_err(io)?;
        let (answer_id, answer) = read_message(&mut conn).await.map_err(|e| match e {
            FrameError::Closed => MetaError::Closed { addr: addr.clone() },
            FrameError::Io(source) => MetaError::Io {
                addr: addr.clone(),
                source,
            },
            FrameError::Wire(source) => MetaError::Wire {
                addr: addr.clone(),
                source,
            },
        })?;
        if answer_id != request_id {
            return Err(MetaError::Protocol {
                addr: addr.clone(),
                reason: format!("answer to request {answer_id} where {request_id} was expected"),
            });
        }
        self.put_idle(conn);
        match answer {
            Message::MetaError(e) => Err(MetaError::Server(e.message)),
            answer => Ok(answer),
        }
    }

    /// An idle connection that still looks open. One the store closed while
    /// it sat idle (a restart of the store) has something to read: end of
    /// stream, a reset or stray bytes. It is dropped, so that a call does not
    /// fail only because the pool kept a dead connection. The probe is a
    /// non-blocking `MSG_PEEK` (tokio's sockets are non-blocking), not
    /// tokio's `try_read`, which trusts a readiness the reactor may not have
    /// updated yet.
    fn take_idle(&self) -> Option<MetaStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            let mut probe = [MaybeUninit::<u8>::uninit(); 1];
            match socket2::SockRef::from(conn.tcp()).peek(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(conn),
                _ => continue,
            }
        }
        None
    }

    fn put_idle(&self, conn: MetaStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < META_IDLE_CONNECTIONS_MAX {
            idle.push(conn);
        }
    }

    async fn get(
        &self,
        log_id: u64,
        known_version: u64,
        wait_ms: u32,
    ) -> Result<Versioned, MetaError> {
        debug_assert!(wait_ms <= READ_WAIT_MS_MAX);
        let request = Message::MetaGetLog(MetaGetLog {
            log_id,
            known_version,
            wait_ms,
        });
        let wait = Duration::from_millis(u64::from(wait_ms));
        match self.call("get_log", request, wait).await? {
            Message::MetaLog(m) if m.log_id == log_id => Ok(Versioned {
                version: m.version,
                record: m.record,
            }),
            Message::MetaLog(m) => Err(MetaError::Protocol {
                addr: self.addr.clone(),
                reason: format!("asked for log {log_id}, got log {}", m.log_id),
            }),
            other => Err(self.unexpected(other, Kind::MetaLog)),
        }
    }

    fn unexpected(&self, got: Message, expected: Kind) -> MetaError {
        MetaError::Wire {
            addr: self.addr.clone(),
            source: WireError::UnexpectedKind {
                found: got.kind(),
                expected,
            },
        }
    }
}

/// Whole milliseconds, rounded up: a wait of 0.5 ms must still wait.
fn ceil_ms(d: Duration) -> u64 {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if Duration::from_millis(ms) < d {
        ms.saturating_add(1)
    } else {
        ms
    }
}

impl MetaStore for EmbeddedMeta {
    fn get_log(&self, log_id: u64) -> MetaFuture<'_, Versioned> {
        Box::pin(self.get(log_id, 0, 0))
    }

    /// A wait longer than the store's limit per request
    /// (`READ_WAIT_MS_MAX`) is served as several watches in a row.
    fn watch_log(
        &self,
        log_id: u64,
        known_version: u64,
        wait: Duration,
    ) -> MetaFuture<'_, Versioned> {
        Box::pin(async move {
            let deadline = Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait_ms = ceil_ms(left).min(u64::from(READ_WAIT_MS_MAX)) as u32;
                let seen = self.get(log_id, known_version, wait_ms).await?;
                if seen.version != known_version || wait_ms == 0 || Instant::now() >= deadline {
                    return Ok(seen);
                }
            }
        })
    }

    fn cas_log(
        &self,
        log_id: u64,
        expected_version: u64,
        record: LogMeta,
    ) -> MetaFuture<'_, CasOutcome> {
        Box::pin(async move {
            let request = Message::MetaCasLog(MetaCasLog {
                log_id,
                expected_version,
                record,
            });
            match self.call("cas_log", request, Duration::ZERO).await? {
                Message::MetaCasResult(r) if r.ok => Ok(CasOutcome::Applied { version: r.version }),
                Message::MetaCasResult(r) => Ok(CasOutcome::Conflict(Versioned {
                    version: r.version,
                    record: r.current,
                })),
                other => Err(self.unexpected(other, Kind::MetaCasResult)),
            }
        })
    }

    fn list_logs(&self) -> MetaFuture<'_, Vec<u64>> {
        Box::pin(async move {
            let request = Message::MetaListLogs(MetaListLogs { reserved: 0 });
            match self.call("list_logs", request, Duration::ZERO).await? {
                Message::MetaLogs(l) => Ok(l.logs),
                other => Err(self.unexpected(other, Kind::MetaLogs)),
            }
        })
    }

    fn register_node(&self, node: NodeInfo, lease: Duration) -> MetaFuture<'_, NodeMode> {
        Box::pin(async move {
            let node_id = node.node_id;
            let lease_ms = match u32::try_from(lease.as_millis()) {
                Ok(ms) if ms > 0 => ms,
                _ => return Err(MetaError::InvalidArgument(format!("lease of {lease:?}"))),
            };
            let request = Message::MetaRegister(MetaRegister { node, lease_ms });
            match self.call("register_node", request, Duration::ZERO).await? {
                Message::MetaRegistered(r) if r.mode == NodeMode::Removed => {
                    Err(MetaError::NodeRemoved { node_id })
                }
                Message::MetaRegistered(r) => Ok(r.mode),
                Message::MetaRegisterRefused(r) => Err(MetaError::NodeIdTaken(
                    NodeIdTaken::held_by(&r.holder, r.lease_remaining_ms),
                )),
                other => Err(self.unexpected(other, Kind::MetaRegistered)),
            }
        })
    }

    fn deregister_node(&self, node_id: u64, incarnation: u64) -> MetaFuture<'_, bool> {
        Box::pin(async move {
            let request = Message::MetaDeregister(MetaDeregister {
                node_id,
                incarnation,
            });
            match self
                .call("deregister_node", request, Duration::ZERO)
                .await?
            {
                Message::MetaDeregistered(d) => Ok(d.removed),
                other => Err(self.unexpected(other, Kind::MetaDeregistered)),
            }
        })
    }

    fn set_node_mode(&self, node_id: u64, mode: NodeMode) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        Box::pin(async move {
            let request = Message::MetaSetNodeMode(MetaSetNodeMode { node_id, mode });
            match self.call("set_node_mode", request, Duration::ZERO).await? {
                Message::MetaNodeModes(m) => Ok(m.modes),
                other => Err(self.unexpected(other, Kind::MetaNodeModes)),
            }
        })
    }

    fn node_modes(&self) -> MetaFuture<'_, Vec<NodeModeEntry>> {
        Box::pin(async move {
            let request = Message::MetaGetNodeModes(MetaGetNodeModes { reserved: 0 });
            match self.call("node_modes", request, Duration::ZERO).await? {
                Message::MetaNodeModes(m) => Ok(m.modes),
                other => Err(self.unexpected(other, Kind::MetaNodeModes)),
            }
        })
    }

    fn list_nodes(&self, include_dead: bool) -> MetaFuture<'_, Vec<NodeStatus>> {
        Box::pin(async move {
            let request = Message::MetaListNodes(MetaListNodes { include_dead });
            match self.call("list_nodes", request, Duration::ZERO).await? {
                Message::MetaNodes(n) => Ok(n.nodes),
                other => Err(self.unexpected(other, Kind::MetaNodes)),
            }
        })
    }

    /// The store creates its cluster id when it first starts, so this is
    /// a read.
    fn cluster_id(&self) -> MetaFuture<'_, u64> {
        Box::pin(async move {
            let request = Message::MetaGetCluster(MetaGetCluster { reserved: 0 });
            match self.call("cluster_id", request, Duration::ZERO).await? {
                Message::MetaCluster(c) => Ok(c.cluster_id),
                other => Err(self.unexpected(other, Kind::MetaCluster)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::server::{spawn_meta_server, MetaServerHandle};

    use super::*;

    fn start(dir: &std::path::Path) -> MetaServerHandle {
        let listen: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
        spawn_meta_server(listen, dir.to_path_buf()).expect("server starts")
    }

    fn record(log_id: u64, epoch: u64) -> LogMeta {
        LogMeta {
            log_id,
            epoch,
            trim_seq: 0,
            segments: vec![],
            deleting: Vec::new(),
            deleted: false,
        }
    }

    // The semantics every store shares (create, conflict, watch, leases)
    // are checked by the suite in tests/meta_suite, run against this
    // store by tests/meta_embedded.rs and against etcd by
    // tests/meta_etcd.rs; the server's own guarantees by server/tests.rs.
    // Here: what only this client does.

    #[tokio::test]
    async fn meta_pool_survives_a_store_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start(dir.path());
        let addr = server.local_addr();
        let meta = EmbeddedMeta::new(addr);
        meta.cas_log(1, 0, record(1, 1)).await.expect("cas");
        // The connection now sits in the pool; the store restarts under it.
        server.stop().expect("stops");
        let server =
            spawn_meta_server(addr, dir.path().to_path_buf()).expect("restarts on the same port");
        let seen = meta.get_log(1).await.expect("get after restart");
        assert_eq!(seen.version, 1);
        server.stop().expect("stops");
    }

    #[tokio::test]
    async fn meta_call_times_out_on_a_silent_store() {
        // A listener that never accepts: the kernel completes the connect,
        // nothing ever answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let meta = EmbeddedMeta::with_call_timeout(
            silent.local_addr().expect("addr"),
            Duration::from_millis(50),
        );
        let answer = meta.list_logs().await;
        assert!(
            matches!(
                answer,
                Err(MetaError::Timeout {
                    what: "list_logs",
                    ..
                })
            ),
            "{answer:?}"
        );
    }

    #[test]
    fn meta_waits_round_up_to_whole_milliseconds() {
        assert_eq!(ceil_ms(Duration::ZERO), 0);
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(7)), 7);
        assert_eq!(ceil_ms(Duration::from_micros(7_001)), 8);
    }
}
