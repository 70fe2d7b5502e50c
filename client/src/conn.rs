//! A connection to one shard of a log node: requests go out through one
//! writer task, answers come back through one reader task and are routed by
//! request id, so any number of requests can be in flight (pipelining).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rkyv::util::AlignedVec;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use trilog_meta::frame_io::{read_frame, read_message, FrameError};
use trilog_protocol::replica::Refusal;
use trilog_wire::message::{ErrorCode, Hello, HelloOk, ReadResponse};
use trilog_wire::{Kind, Message, ReadResponseHead, WireError, WireMessage};

use crate::error::ConnError;
use crate::runtime::{self, Connection, Runtime};
use tokio::io::{ReadHalf, WriteHalf};

/// How long a connect plus handshake may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Frames queued for one connection's writer. A connection this far
/// behind (its peer stopped reading) fails the sends past it, as a lost
/// connection would: every sender bounds what it has in flight far below
/// (a producer's window, one request per caller).
pub const OUTBOX_FRAMES_MAX: usize = 4096;

/// The protocol's reading of a node's error answer: a refusal the
/// machines decide on, or `None` for an error that only fails the
/// replica (`trilog_protocol::refusal` maps both ways, for the node too).
pub fn refusal_of(code: ErrorCode, value: u64) -> Option<Refusal> {
    trilog_protocol::refusal::from_wire(code, value)
}

/// An answer, or why none will come.
#[derive(Debug, Clone)]
pub enum Reply {
    Msg(Message),
    /// A read's answer, read in place: its records are a slice of the
    /// frame they arrived in.
    Records(ReadRecords),
    Lost(ConnError),
}

/// A `ReadResponse` whose records were not copied out of their frame.
#[derive(Debug, Clone)]
pub struct ReadRecords {
    pub head: ReadResponseHead,
    /// The records, in the record layout (`trilog_wire::record`). Each
    /// matched its crcs: the frame decoder checked them with the frame's.
    pub records: Bytes,
}

impl ReadRecords {
    /// The answer validated in place in `payload` (a `ReadResponse`'s),
    /// which the records then share.
    fn in_place(payload: AlignedVec<16>) -> Result<ReadRecords, WireError> {
        let (head, range) = {
            let a = trilog_wire::access::<ReadResponse>(&payload)?;
            let head = ReadResponseHead {
                log_id: a.log_id.to_native(),
                segment: a.segment.to_native(),
                from_offset: a.from_offset.to_native(),
                count: a.count.to_native(),
                watermark: a.watermark.to_native(),
                sealed_len: a.sealed_len.as_ref().map(|l| l.to_native()),
            };
            // The archive was checked: its records lie inside the payload.
            let start = a.records.as_ptr() as usize - payload.as_ptr() as usize;
            assert!(start + a.records.len() <= payload.len(), "checked archive");
            (head, start..start + a.records.len())
        };
        let records = Bytes::from_owner(payload).slice(range);
        Ok(ReadRecords { head, records })
    }

    /// The owned message, for a caller that wants one (a copy).
    pub fn to_message(&self) -> Message {
        let h = self.head;
        Message::ReadResponse(ReadResponse {
            log_id: h.log_id,
            segment: h.segment,
            from_offset: h.from_offset,
            count: h.count,
            watermark: h.watermark,
            sealed_len: h.sealed_len,
            records: self.records.to_vec(),
        })
    }
}

/// Reads the next answer: a read's in place, any other decoded.
async fn read_reply<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<(u64, Reply), FrameError> {
    let frame = read_frame(rd).await?;
    let id = frame.header.request_id;
    let reply = match frame.header.kind {
        Kind::ReadResponse => Reply::Records(ReadRecords::in_place(frame.payload)?),
        kind => Reply::Msg(trilog_wire::decode_payload(kind, &frame.payload)?),
    };
    Ok((id, reply))
}

/// Where the answer to a request goes.
enum Route {
    Once(oneshot::Sender<Reply>),
    /// Into a shared, bounded channel, tagged, for a driver that has many
    /// requests in flight (the producer). A full channel holds the reader
    /// back, and so the connection: the driver drains it without waiting
    /// on anything else.
    Tagged(mpsc::Sender<(u64, Reply)>, u64),
}

impl Route {
    async fn deliver(self, reply: Reply) {
        match self {
            Route::Once(tx) => {
                let _ = tx.send(reply);
            }
            Route::Tagged(tx, tag) => {
                let _ = tx.send((tag, reply)).await;
            }
        }
    }
}

/// A frame on its way to the writer task.
enum OutFrame {
    /// A whole frame of its own.
    Owned(Vec<u8>),
    /// A header of this connection and a payload shared with other
    /// connections (one append, three replicas): written from the shared
    /// buffer, not copied into a frame first.
    Shared {
        header: [u8; trilog_wire::FRAME_HEADER_BYTES],
        payload: Arc<rkyv::util::AlignedVec>,
    },
}

impl OutFrame {
    fn len(&self) -> usize {
        match self {
            OutFrame::Owned(f) => f.len(),
            OutFrame::Shared { header, payload } => header.len() + payload.len(),
        }
    }
}

/// Payloads at least this large are written straight from their shared
/// buffer; smaller ones are copied into the coalescing buffer, where one
/// write carries many frames.
const SHARED_WRITE_MIN_BYTES: usize = 64 << 10;
/// Bytes coalesced into one write.
const COALESCE_BYTES_MAX: usize = 1 << 20;

struct Inner {
    addr: SocketAddr,
    pending: Mutex<BTreeMap<u64, Route>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    hello: HelloOk,
}

impl Inner {
    async fn fail_all(&self, why: String) {
        self.closed.store(true, Ordering::SeqCst);
        let routes: Vec<Route> = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p).into_values().collect(),
            Err(_) => Vec::new(),
        };
        for r in routes {
            r.deliver(Reply::Lost(ConnError::Closed {
                addr: self.addr,
                why: why.clone(),
            }))
            .await;
        }
    }
}

/// A shared handle on one connection. The connection lives as long as a
/// handle does: when the last one is dropped, the writer sends what is
/// queued, then shuts the socket's write side, the node closes its end,
/// and the reader ends (before, the two tasks held each other's state and
/// every dropped connection stayed open for good, a socket and a node
/// connection slot each).
#[derive(Clone)]
pub struct NodeConn {
    inner: Arc<Inner>,
    /// The writer's queue; the writer stops once every handle is gone.
    out: mpsc::Sender<OutFrame>,
    rt: Arc<dyn Runtime>,
}

impl std::fmt::Debug for NodeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NodeConn({}, node {})",
            self.inner.addr, self.inner.hello.node_id
        )
    }
}

impl NodeConn {
    /// Connects on tokio (the runtime of every real process) and shakes
    /// hands.
    pub async fn connect_tokio(addr: SocketAddr) -> Result<NodeConn, ConnError> {
        let rt: Arc<dyn Runtime> = Arc::new(crate::runtime::TokioRuntime::new());
        NodeConn::connect(&rt, addr).await
    }

    /// Connects on `rt` and shakes hands.
    pub async fn connect(rt: &Arc<dyn Runtime>, addr: SocketAddr) -> Result<NodeConn, ConnError> {
        let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
        let connect = async {
            let mut stream = rt.connect(addr).await.map_err(|e| e.to_string())?;
            let hello = trilog_wire::encode(
                0,
                &Hello {
                    client: "trilog-client".into(),
                },
            );
            stream.write_all(&hello).await.map_err(|e| e.to_string())?;
            match read_message(&mut stream).await.map_err(|e| e.to_string())? {
                (_, Message::HelloOk(ok)) => Ok((stream, ok)),
                (_, other) => Err(format!("handshake answered with {:?}", other.kind())),
            }
        };
        let (stream, hello) = runtime::timeout(rt.as_ref(), timeout, connect)
            .await
            .ok_or(ConnError::Timeout {
                addr,
                ms: CONNECT_TIMEOUT_MS,
            })?
            .map_err(|why| ConnError::Connect { addr, why })?;
        let (rd, wr) = tokio::io::split(stream);
        let (out, out_rx) = mpsc::channel::<OutFrame>(OUTBOX_FRAMES_MAX);
        let inner = Arc::new(Inner {
            addr,
            pending: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            hello,
        });
        rt.spawn(Box::pin(write_frames(inner.clone(), wr, out_rx)));
        rt.spawn(Box::pin(read_answers(inner.clone(), rd)));
        Ok(NodeConn {
            inner,
            out,
            rt: rt.clone(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn hello(&self) -> &HelloOk {
        &self.inner.hello
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    fn lost(&self, why: &str) -> ConnError {
        ConnError::Closed {
            addr: self.inner.addr,
            why: why.into(),
        }
    }

    fn register(&self, route: Route) -> Result<u64, ConnError> {
        if self.is_closed() {
            return Err(self.lost("closed earlier"));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        match self.inner.pending.lock() {
            Ok(mut p) => {
                p.insert(id, route);
            }
            Err(_) => return Err(self.lost("poisoned")),
        }
        Ok(id)
    }

    fn send_frame(&self, id: u64, frame: Vec<u8>) -> Result<(), ConnError> {
        self.send_out(id, OutFrame::Owned(frame))
    }

    fn send_out(&self, id: u64, frame: OutFrame) -> Result<(), ConnError> {
        debug_assert!(frame.len() >= trilog_wire::FRAME_HEADER_BYTES);
        let why = match self.out.try_send(frame) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => "outbox full: the peer stopped reading",
            Err(mpsc::error::TrySendError::Closed(_)) => "writer gone",
        };
        if let Ok(mut p) = self.inner.pending.lock() {
            p.remove(&id);
        }
        Err(self.lost(why))
    }

    /// Sends a request whose answer goes into `tx` tagged with `tag`.
    pub fn send_tagged<T: WireMessage>(
        &self,
        msg: &T,
        tx: &mpsc::Sender<(u64, Reply)>,
        tag: u64,
    ) -> Result<(), ConnError>
    where
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::BoxedError>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let id = self.register(Route::Tagged(tx.clone(), tag))?;
        self.send_frame(id, trilog_wire::encode(id, msg))
    }

    /// Sends an already serialized payload of `kind`, whose crc32c is
    /// `payload_crc`, and routes its answer into `tx` tagged with `tag`.
    /// One payload goes to many replicas: it is neither copied nor
    /// checksummed again per connection.
    pub fn send_payload_tagged(
        &self,
        kind: trilog_wire::Kind,
        payload: &Arc<rkyv::util::AlignedVec>,
        payload_crc: u32,
        tx: &mpsc::Sender<(u64, Reply)>,
        tag: u64,
    ) -> Result<(), ConnError> {
        let id = self.register(Route::Tagged(tx.clone(), tag))?;
        let header =
            trilog_wire::FrameHeader::for_payload_crc(kind, id, payload.len(), payload_crc)
                .to_bytes();
        self.send_out(
            id,
            OutFrame::Shared {
                header,
                payload: payload.clone(),
            },
        )
    }

    /// Sends a message that has no answer.
    pub fn send_oneway<T: WireMessage>(&self, msg: &T) -> Result<(), ConnError>
    where
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::BoxedError>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        if self.is_closed() {
            return Err(self.lost("closed earlier"));
        }
        self.send_frame(0, trilog_wire::encode(0, msg))
    }

    /// Sends a request and waits for its answer, at most `timeout`.
    pub async fn request<T: WireMessage>(
        &self,
        msg: &T,
        timeout: Duration,
    ) -> Result<Message, ConnError>
    where
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::BoxedError>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        match self.request_reply(msg, timeout).await? {
            Reply::Records(r) => Ok(r.to_message()),
            Reply::Msg(m) => Ok(m),
            Reply::Lost(e) => Err(e),
        }
    }

    /// [`request`](Self::request), with a read's answer left in place
    /// ([`Reply::Records`]); never [`Reply::Lost`] (that is the error).
    pub async fn request_reply<T: WireMessage>(
        &self,
        msg: &T,
        timeout: Duration,
    ) -> Result<Reply, ConnError>
    where
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::BoxedError>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        let (tx, rx) = oneshot::channel();
        let id = self.register(Route::Once(tx))?;
        self.send_frame(id, trilog_wire::encode(id, msg))?;
        match runtime::timeout(self.rt.as_ref(), timeout, rx).await {
            Some(Ok(Reply::Lost(e))) => Err(e),
            Some(Ok(reply)) => Ok(reply),
            Some(Err(_)) => Err(self.lost("reader gone")),
            None => {
                if let Ok(mut p) = self.inner.pending.lock() {
                    p.remove(&id);
                }
                Err(ConnError::Timeout {
                    addr: self.inner.addr,
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }
}

/// The writer task of a connection: drains its outbox, coalescing what is
/// queued into one write; a large shared payload goes out from its own
/// buffer. A write error fails every request in flight.
async fn write_frames(
    inner: Arc<Inner>,
    mut wr: WriteHalf<Box<dyn Connection>>,
    mut out_rx: mpsc::Receiver<OutFrame>,
) {
    let mut buf = Vec::new();
    while let Some(first) = out_rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            let written = match frame {
                OutFrame::Owned(f) => {
                    buf.extend_from_slice(&f);
                    Ok(())
                }
                OutFrame::Shared { header, payload } => {
                    buf.extend_from_slice(&header);
                    if payload.len() < SHARED_WRITE_MIN_BYTES {
                        buf.extend_from_slice(&payload);
                        Ok(())
                    } else {
                        let head = wr.write_all(&buf).await;
                        buf.clear();
                        match head {
                            Ok(()) => wr.write_all(&payload).await,
                            Err(e) => Err(e),
                        }
                    }
                }
            };
            if let Err(e) = written {
                inner.fail_all(format!("write: {e}")).await;
                return;
            }
            if buf.len() < COALESCE_BYTES_MAX {
                next = out_rx.try_recv().ok();
            }
        }
        if buf.is_empty() {
            continue;
        }
        if let Err(e) = wr.write_all(&buf).await {
            inner.fail_all(format!("write: {e}")).await;
            return;
        }
    }
    // Every handle is gone and what they queued is written: end the
    // connection (the node answers the FIN by closing, so the reader ends
    // too).
    if let Err(e) = wr.shutdown().await {
        log::debug!("{}: shutdown: {e}", inner.addr);
    }
}

/// The reader task of a connection: routes every answer by request id. A
/// read error fails every request in flight.
async fn read_answers(inner: Arc<Inner>, mut rd: ReadHalf<Box<dyn Connection>>) {
    let addr = inner.addr;
    loop {
        match read_reply(&mut rd).await {
            Ok((rid, reply)) => {
                let route = match inner.pending.lock() {
                    Ok(mut p) => p.remove(&rid),
                    Err(_) => None,
                };
                match route {
                    Some(r) => r.deliver(reply).await,
                    None => log::debug!("{addr}: answer to unknown request {rid}"),
                }
            }
            Err(e) => {
                inner.fail_all(e.to_string()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_the_refusals_the_machines_decide_on() {
        assert_eq!(
            refusal_of(ErrorCode::Fenced, 4),
            Some(Refusal::Fenced { epoch: 4 })
        );
        assert_eq!(
            refusal_of(ErrorCode::Sealed, 7),
            Some(Refusal::Sealed { len: 7 })
        );
        assert_eq!(refusal_of(ErrorCode::Gap, 2), Some(Refusal::Gap { len: 2 }));
        for code in [
            ErrorCode::NotFound,
            ErrorCode::WrongShard,
            ErrorCode::BadRequest,
            ErrorCode::Internal,
        ] {
            assert_eq!(refusal_of(code, 1), None, "{code:?} only fails the replica");
        }
    }

    fn aligned(bytes: &[u8]) -> AlignedVec<16> {
        let mut v = AlignedVec::<16>::new();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn a_read_answer_is_read_in_place_and_a_bad_one_refused() {
        let owned = ReadResponse {
            log_id: 3,
            segment: 9,
            from_offset: 40,
            count: 2,
            watermark: 42,
            sealed_len: Some(42),
            records: (0..=255u8).cycle().take(1000).collect(),
        };
        let payload = aligned(&trilog_wire::encode_payload(&owned));
        let start = payload.as_ptr() as usize;
        let end = start + payload.len();
        let r = ReadRecords::in_place(payload).expect("a valid answer");
        let at = r.records.as_ptr() as usize;
        assert!(at >= start && at + r.records.len() <= end, "not copied out");
        assert_eq!(r.records, owned.records);
        assert_eq!(r.head, ReadResponseHead::of(&owned));
        assert_eq!(r.to_message(), Message::ReadResponse(owned.clone()));

        // Cut short, or its last field (the records' length) overwritten:
        // refused, nothing read.
        let bytes = trilog_wire::encode_payload(&owned);
        assert!(ReadRecords::in_place(aligned(&bytes[..bytes.len() - 9])).is_err());
        let mut forged = bytes.to_vec();
        let n = forged.len();
        forged[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ReadRecords::in_place(aligned(&forged)).is_err());
    }
}
