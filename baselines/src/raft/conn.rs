//! One TCP connection to a node carrying many requests at once: each
//! request gets an id, the answers come back in any order and are matched
//! by id. A writer task sends queued frames (coalescing what is queued
//! into one flush); a reader task hands each answer to its caller. When
//! the connection fails, every caller waiting on it is told.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::limits::{CLIENT_IN_FLIGHT_MAX, FRAME_BYTES_MAX};
use super::rpc::{
    decode_body, encode_frame, frame_len, read_frame, set_frame_id, Request, Response,
};

/// Why a call on a connection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    #[error("connect to {addr}: {why}")]
    Connect { addr: SocketAddr, why: String },
    #[error("connection to {addr} closed: {why}")]
    Closed { addr: SocketAddr, why: String },
    #[error("no answer from {addr} within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    #[error("request of {bytes} bytes is over the frame limit")]
    TooLarge { bytes: usize },
    #[error("encode: {0}")]
    Encode(String),
}

type Reply = oneshot::Sender<Result<Response, ConnError>>;

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, Reply>,
    /// Set once the connection failed.
    closed: Option<String>,
}

fn lock(p: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection; dropping it closes the socket.
pub struct Conn {
    addr: SocketAddr,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    in_flight: Semaphore,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn fail_all(pending: &Mutex<Pending>, addr: SocketAddr, why: String) {
    let waiting = {
        let mut p = lock(pending);
        p.closed.get_or_insert(why.clone());
        std::mem::take(&mut p.waiting)
    };
    for (_, reply) in waiting {
        let _ = reply.send(Err(ConnError::Closed {
            addr,
            why: why.clone(),
        }));
    }
}

impl Conn {
    /// Connects to `addr` within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Arc<Conn>, ConnError> {
        let connect_err = |why: String| ConnError::Connect { addr, why };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(format!("timed out after {} ms", timeout.as_millis())))?
            .map_err(|e| connect_err(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_err(e.to_string()))?;
        let (rd, wr) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();

        let p = pending.clone();
        let writer = tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(256 << 10, wr);
            let r: std::io::Result<()> = async {
                while let Some(frame) = out_rx.recv().await {
                    w.write_all(&frame).await?;
                    while let Ok(frame) = out_rx.try_recv() {
                        w.write_all(&frame).await?;
                    }
                    w.flush().await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                fail_all(&p, addr, format!("write: {e}"));
            }
        });

        let p = pending.clone();
        let reader = tokio::spawn(async move {
            let mut r = BufReader::with_capacity(256 << 10, rd);
            let why = loop {
                match read_frame(&mut r).await {
                    Ok(Some((id, body))) => {
                        let reply = lock(&p).waiting.remove(&id);
                        let Some(reply) = reply else { continue };
                        match decode_body::<Response>(&body) {
                            Ok(resp) => {
                                let _ = reply.send(Ok(resp));
                            }
                            Err(e) => break format!("undecodable answer: {e}"),
                        }
                    }
                    Ok(None) => break "closed by the peer".to_string(),
                    Err(e) => break format!("read: {e}"),
                }
            };
            fail_all(&p, addr, why);
        });

        Ok(Arc::new(Conn {
            addr,
            out,
            pending,
            next_id: AtomicU64::new(1),
            in_flight: Semaphore::new(CLIENT_IN_FLIGHT_MAX),
            tasks: [writer, reader],
        }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection failed (a new one is needed).
    pub fn is_closed(&self) -> bool {
        lock(&self.pending).closed.is_some()
    }

    /// Encodes a request into a frame for [`Conn::call_frame`].
    pub fn frame(req: &Request) -> Result<Vec<u8>, ConnError> {
        let frame = encode_frame(req).map_err(|e| ConnError::Encode(e.to_string()))?;
        if frame_len(&frame) > FRAME_BYTES_MAX {
            return Err(ConnError::TooLarge {
                bytes: frame_len(&frame),
            });
        }
        Ok(frame)
    }

    /// Sends `req` and waits for its answer at most `timeout`.
    pub async fn call(&self, req: &Request, timeout: Duration) -> Result<Response, ConnError> {
        self.call_frame(Self::frame(req)?, timeout).await
    }

    /// Sends an encoded request and waits for its answer at most
    /// `timeout`.
    pub async fn call_frame(
        &self,
        mut frame: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response, ConnError> {
        let closed = |why: String| ConnError::Closed {
            addr: self.addr,
            why,
        };
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| closed("shut".into()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        set_frame_id(&mut frame, id);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.pending);
            if let Some(why) = &p.closed {
                return Err(closed(why.clone()));
            }
            p.waiting.insert(id, tx);
        }
        if self.out.send(frame).is_err() {
            lock(&self.pending).waiting.remove(&id);
            return Err(closed("writer stopped".into()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(closed("dropped".into())),
            Err(_) => {
                lock(&self.pending).waiting.remove(&id);
                Err(ConnError::Timeout {
                    addr: self.addr,
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }
}
