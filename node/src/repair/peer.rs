//! A connection from a repair job to one shard of a log node (another
//! node, or this node's own listener): the node's public protocol, one
//! request at a time, every answer bounded by a deadline. A repair copies
//! in the background at a throttled rate, so pipelining would buy nothing
//! and cost the simplicity of "one request, its answer, the next".

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use trilog_meta::frame_io::read_message;
use trilog_wire::message::{ErrorMsg, Hello};
use trilog_wire::Message;

/// How long a peer may take to answer one request (a read, an append's
/// fdatasync, a seal).
pub const PEER_ANSWER_MS_MAX: u64 = 10_000;
/// How long a connection may take to be made and greeted.
pub const PEER_CONNECT_MS_MAX: u64 = 3_000;

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{addr}: {why}")]
    Io { addr: SocketAddr, why: String },
    #[error("{addr}: no answer within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    #[error("{addr}: refused: {0:?}", .err)]
    Refused { addr: SocketAddr, err: ErrorMsg },
    #[error("{addr}: answered {got} to {asked}")]
    Unexpected {
        addr: SocketAddr,
        asked: String,
        got: String,
    },
}

/// A connection's bytes: plain TCP or mutual TLS over it.
trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> PeerStream for T {}

/// One greeted connection to a shard.
pub struct Peer {
    addr: SocketAddr,
    stream: Box<dyn PeerStream>,
    next_id: u64,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("addr", &self.addr).finish()
    }
}

impl Peer {
    /// Connects and greets; over mutual TLS with `tls` when given (the
    /// peer's certificate must be a node's, valid for its address).
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&trilog_tls::TlsIdentity>,
    ) -> Result<Peer, PeerError> {
        let ms = PEER_CONNECT_MS_MAX;
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| io(addr, e))?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn PeerStream> = match tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let name = trilog_tls::ServerName::IpAddress(addr.ip().into());
                    let secured = trilog_tls::tokio_io::connect(
                        tls,
                        tcp,
                        name,
                        trilog_protocol::access::Role::Node,
                    )
                    .await
                    .map_err(|e| io(addr, e))?;
                    Box::new(secured)
                }
            };
            let mut peer = Peer {
                addr,
                stream,
                next_id: 1,
            };
            let hello = Hello {
                client: "trilog-node-repair".into(),
            };
            match peer.request(Message::Hello(hello)).await? {
                Message::HelloOk(_) => Ok(peer),
                other => Err(unexpected(addr, "Hello", &other)),
            }
        };
        tokio::time::timeout(Duration::from_millis(ms), connect)
            .await
            .map_err(|_| PeerError::Timeout { addr, ms })?
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `msg` and waits for its answer; an `ErrorMsg` answer is
    /// [`PeerError::Refused`]. After any error the connection is out of
    /// step: drop it.
    pub async fn request(&mut self, msg: Message) -> Result<Message, PeerError> {
        let id = self.send(msg).await?;
        self.answer(id).await
    }

    /// Sends `msg`; returns its request id, for [`Peer::answer`].
    pub async fn send(&mut self, msg: Message) -> Result<u64, PeerError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = msg.encode(id);
        let (addr, ms) = (self.addr, PEER_ANSWER_MS_MAX);
        tokio::time::timeout(Duration::from_millis(ms), self.stream.write_all(&frame))
            .await
            .map_err(|_| PeerError::Timeout { addr, ms })?
            .map_err(|e| io(addr, e))?;
        Ok(id)
    }

    /// Waits for the answer to request `id`, the one sent last (requests
    /// are answered in order here: one is in flight at a time).
    pub async fn answer(&mut self, id: u64) -> Result<Message, PeerError> {
        let (addr, ms) = (self.addr, PEER_ANSWER_MS_MAX);
        let read = read_message(&mut self.stream);
        let (answer_id, answer) = tokio::time::timeout(Duration::from_millis(ms), read)
            .await
            .map_err(|_| PeerError::Timeout { addr, ms })?
            .map_err(|e| PeerError::Io {
                addr,
                why: e.to_string(),
            })?;
        if answer_id != id {
            return Err(PeerError::Unexpected {
                addr,
                asked: format!("request {id}"),
                got: format!("an answer to request {answer_id}"),
            });
        }
        match answer {
            Message::ErrorMsg(err) => Err(PeerError::Refused { addr, err }),
            other => Ok(other),
        }
    }
}

fn io(addr: SocketAddr, e: std::io::Error) -> PeerError {
    PeerError::Io {
        addr,
        why: e.to_string(),
    }
}

pub fn unexpected(addr: SocketAddr, asked: &str, got: &Message) -> PeerError {
    PeerError::Unexpected {
        addr,
        asked: asked.to_string(),
        got: format!("{:?}", got.kind()),
    }
}
