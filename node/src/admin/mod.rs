//! The admin port (`--admin-addr`): plain HTTP for operators' tools, on a
//! thread of its own off the shards' cores. `/metrics` serves the node's
//! metrics (`crate::metrics`), `/healthz` says the process serves,
//! `/readyz` says whether it should get traffic (`ready`).
//!
//! It serves counts and states only, never data, and changes nothing;
//! still, bind it to a management address. A client cannot make it hold
//! much: at most [`ADMIN_CONNECTIONS_MAX`] connections, a request head of
//! at most [`crate::limits::ADMIN_HEAD_BYTES_MAX`] bytes arriving within [`ADMIN_IO_MS`],
//! one request per connection.

pub mod http;
pub mod ready;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use trilog_meta::RegistrationWatch;

use crate::limits::{ADMIN_CONNECTIONS_MAX, ADMIN_IO_MS};
use crate::metrics::{NodeMetrics, NodeSample};
use crate::repair_board::RepairBoard;
use crate::server::drain::DrainState;
use crate::space::NodeSpace;
use http::{HeadError, Request, Route};
use ready::Readiness;

/// What the admin port reports on.
#[derive(Debug, Clone)]
pub struct AdminSources {
    pub metrics: Arc<NodeMetrics>,
    pub space: Arc<NodeSpace>,
    pub board: Arc<RepairBoard>,
    /// None: the node registers nowhere.
    pub registration: Option<RegistrationWatch>,
    pub shards_running: Arc<AtomicUsize>,
    pub shards: usize,
    /// Whether the node is stopping (a drain).
    pub drain: Arc<DrainState>,
}

impl AdminSources {
    fn registered(&self) -> Option<bool> {
        self.registration
            .as_ref()
            .map(RegistrationWatch::is_current)
    }

    fn sample(&self) -> NodeSample {
        let (used, free) = self.space.usage();
        NodeSample {
            disk_used_bytes: used,
            disk_free_bytes: free,
            read_only: self.space.is_full(),
            leaving: self.space.is_leaving(),
            registered: self.registered().unwrap_or(false),
            shards_running: self.shards_running.load(Ordering::Acquire),
            repairs_running: self.board.repairing().len(),
            copies_to_heal: self.board.all().len(),
        }
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            registered: self.registered(),
            read_only: self.space.is_full(),
            leaving: self.space.is_leaving(),
            shards_running: self.shards_running.load(Ordering::Acquire).min(self.shards),
            shards: self.shards,
            stopping: self.drain.is_stopping(),
        }
    }
}

/// The admin port's thread. Dropping the handle stops it (not joined).
#[derive(Debug)]
pub struct AdminHandle {
    /// Where it listens (the port the kernel chose, with port 0).
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _thread: JoinHandle<()>,
}

/// Binds `addr` now (so a taken port stops the start) and serves it on a
/// thread of its own.
pub fn spawn_admin(addr: SocketAddr, sources: AdminSources) -> std::io::Result<AdminHandle> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("trilog-admin".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(accept_loop(listener, sources, stop)),
                Err(e) => tracing::error!("admin port {addr}: cannot start its runtime: {e}"),
            }
        })?;
    tracing::info!("admin port: http://{addr}/metrics, /healthz, /readyz");
    Ok(AdminHandle {
        addr,
        _stop: stop_tx,
        _thread: thread,
    })
}

async fn accept_loop(
    listener: std::net::TcpListener,
    sources: AdminSources,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("admin port: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(ADMIN_CONNECTIONS_MAX));
    let sources = Arc::new(sources);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: wait, do not spin.
                tracing::warn!("admin port: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("admin port: {ADMIN_CONNECTIONS_MAX} connections open; closing {peer}");
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            serve(stream, &sources).await;
            drop(slot);
        });
    }
}

/// Answers one request, then closes.
async fn serve(mut stream: TcpStream, sources: &AdminSources) {
    let limit = Duration::from_millis(ADMIN_IO_MS);
    let request = match tokio::time::timeout(limit, read_head(&mut stream)).await {
        Ok(Ok(Some(r))) => Ok(r),
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => Err(e),
    };
    let answer = match request {
        Ok(r) => answer(r, sources),
        Err(e) => http::response(
            e.status(),
            http::TEXT_CONTENT_TYPE,
            &format!("{e}\n"),
            false,
        ),
    };
    let _ = tokio::time::timeout(limit, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads until a whole request head: `Ok(None)` if the peer closed first.
async fn read_head(stream: &mut TcpStream) -> Result<Option<Request>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(request) = http::parse_head(&buf)? {
            return Ok(Some(request));
        }
    }
}

fn answer(request: Request, sources: &AdminSources) -> Vec<u8> {
    let text = http::TEXT_CONTENT_TYPE;
    match request.route {
        Route::Metrics => {
            let body = sources.metrics.render(&sources.sample());
            http::response(200, http::METRICS_CONTENT_TYPE, &body, request.head_only)
        }
        Route::Healthz => http::response(200, text, "ok\n", request.head_only),
        Route::Readyz => {
            let why = ready::not_ready(&sources.readiness());
            if why.is_empty() {
                http::response(200, text, "ready\n", request.head_only)
            } else {
                let body = format!("not ready: {}\n", why.join("; "));
                http::response(503, text, &body, request.head_only)
            }
        }
        Route::NotFound => http::response(
            404,
            text,
            "not found: /metrics, /healthz or /readyz\n",
            request.head_only,
        ),
    }
}
