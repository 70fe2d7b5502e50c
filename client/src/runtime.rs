//! What the client's drivers need from the world: a clock, timers, tasks
//! and connections to nodes. [`TokioRuntime`] is the real thing; the
//! deterministic simulator (`trilog-sim`) supplies another, so the very
//! drivers that ship (producer, takeover, consumer, connections) run there
//! on a virtual clock and a simulated network.
//!
//! A [`ConnPool`](crate::ConnPool) holds one runtime and hands it to every
//! producer, consumer and connection made from it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use trilog_protocol::access::Role;
use trilog_tls::TlsIdentity;

/// A boxed, sendable future: what the runtime's methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A byte stream to a node.
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {}

/// The client's clock, timers, tasks and connections (see the module doc).
pub trait Runtime: Send + Sync + std::fmt::Debug + 'static {
    /// Time on a monotonic clock, from an arbitrary start.
    fn now(&self) -> Duration;

    /// Completes `after` from now.
    fn sleep(&self, after: Duration) -> BoxFuture<()>;

    /// Runs `task` until it ends.
    fn spawn(&self, task: BoxFuture<()>);

    /// Connects to `addr` (with no timeout of its own: callers bound it).
    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Connection>>>;

    /// A random number (seeds, spreading readers over replicas).
    fn random(&self) -> u64;
}

/// tokio's clock, timers, tasks and TCP (mutual TLS over it, when the
/// runtime has an identity).
#[derive(Debug)]
pub struct TokioRuntime {
    started: tokio::time::Instant,
    tls: Option<Arc<TlsIdentity>>,
}

impl TokioRuntime {
    pub fn new() -> TokioRuntime {
        TokioRuntime::with_tls(None)
    }

    /// Connections to nodes over mutual TLS with `tls` when given: each
    /// node's certificate must be a node's and valid for the address
    /// dialled.
    pub fn with_tls(tls: Option<Arc<TlsIdentity>>) -> TokioRuntime {
        TokioRuntime {
            started: tokio::time::Instant::now(),
            tls,
        }
    }
}

impl Default for TokioRuntime {
    fn default() -> Self {
        TokioRuntime::new()
    }
}

impl Runtime for TokioRuntime {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn sleep(&self, after: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(after))
    }

    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Connection>>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let Some(tls) = tls else {
                return Ok(Box::new(stream) as Box<dyn Connection>);
            };
            let name = trilog_tls::ServerName::IpAddress(addr.ip().into());
            let secured = trilog_tls::tokio_io::connect(&tls, stream, name, Role::Node).await?;
            Ok(Box::new(secured) as Box<dyn Connection>)
        })
    }

    fn random(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once per process and per
        // instance: enough for seeds that only spread load.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(self.started.elapsed().as_nanos());
        h.finish()
    }
}

/// Runs `fut` for at most `limit` on `rt`'s clock; `None` if it did not end.
pub async fn timeout<T>(
    rt: &dyn Runtime,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let sleep = rt.sleep(limit);
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => Some(out),
        () = sleep => None,
    }
}
