//! The embedded metadata store: DESIGN.md section 5 in one process.
//!
//! A node started with the metadata flag runs [`spawn_meta_server`], which
//! serves the `Meta*` messages of `trilog_wire::meta` over TCP. What it
//! guarantees:
//! - **Linearizable compare-and-swap per log.** One executor thread owns the
//!   state, so requests apply one at a time. Every successful CAS takes the
//!   next value of a global revision as the log's version (as etcd's
//!   `mod_revision`): versions start at 1, only grow, and 0 means "absent".
//! - **Durable before answered.** A CAS is answered only after the whole
//!   state is on disk (temp file, fsync, rename, directory fsync; see
//!   [`persist`]). After a restart on the same directory every log is back
//!   with the same version. A corrupt file stops the store from starting;
//!   it never starts empty over it. If a save fails the store refuses every
//!   later CAS until it is restarted (the disk's state is then unknown).
//! - **Valid records only.** A CAS whose record breaks the shape of a log
//!   (consecutive segment ids, one open segment at the end, contiguous seqs,
//!   epochs, distinct replicas) is refused ([`store::validate_record`]).
//! - **Watches without polling.** A get with `wait_ms > 0` answers as soon as
//!   the log's version differs from the caller's, or when the wait ends.
//! - **Leases.** A registration is alive for its lease from the time the
//!   store received it. Registrations are volatile: after a restart of the
//!   store, nodes reappear as they renew (every third of a lease, see
//!   [`register`]), so the registry is whole again within one lease.
//! - **Isolation of peers.** A malformed frame closes only the connection
//!   that sent it, with a logged reason; a well-framed bad request gets a
//!   `MetaError` answer. Every request gets exactly one answer, with the
//!   request's id.
//!
//! It is **not fault tolerant**: one process on one disk. When it is down,
//! no log can switch segments or change hands (appends to open segments go
//! on). It is meant for one host and for tests; production uses etcd behind
//! the same client trait (`trilog_client::meta::MetaStore`).
//!
//! Modules: [`store`] (the pure state), [`persist`] (the file), [`server`]
//! (the glommio server), [`register`] (a node's lease renewal), and here a
//! small blocking client, [`BlockingMetaClient`], used by `register` and by
//! tests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rkyv::util::AlignedVec;
use trilog_wire::codec::decode_payload;
use trilog_wire::limits::{
    ERROR_MESSAGE_BYTES_MAX, FRAME_PAYLOAD_BYTES_MAX, REPLICAS_MAX, SHARDS_MAX,
};
use trilog_wire::{FrameHeader, Message, WireError, FRAME_HEADER_BYTES};

pub mod persist;
pub mod register;
pub mod server;
pub mod store;
#[cfg(test)]
mod tests;

pub use persist::{MetaFile, PersistError};
pub use register::{spawn_etcd_registration, spawn_registration, RegistrationHandle};
pub use server::{spawn_meta_server, MetaServerError, MetaServerHandle};
pub use store::{CasError, MetaState, RecordError, RegisterError};

// Limits of the metadata store. They live here rather than in a node-wide
// limits file because only this module uses them.

/// Most logs the store holds (so that the list of log ids fits in a frame).
pub const LOGS_MAX: usize = 100_000;
/// Most segments in one log's record; it is part of a record's shape, so it
/// lives with [`store::validate_record`] in the protocol crate.
pub use trilog_protocol::meta_record::SEGMENTS_PER_LOG_MAX;
/// Most registered nodes (so that the node list fits in a frame).
pub const NODES_MAX: usize = 1024;
/// Shortest lease a node may ask for.
pub const LEASE_MS_MIN: u64 = 10;
/// Longest lease a node may ask for.
pub const LEASE_MS_MAX: u64 = 300_000;
/// Most connections the server serves at once; more are refused (closed).
pub const CONNECTIONS_MAX: usize = 256;

// Archived sizes, generously: a log id is 8 bytes; a segment is 5 words
// plus its replicas; a node status is two short strings, the shard ports and
// a few words.
const FRAME_SLACK_BYTES: usize = 4096;
const _: () = assert!(LOGS_MAX * 8 + FRAME_SLACK_BYTES <= FRAME_PAYLOAD_BYTES_MAX as usize);
const _: () = assert!(
    SEGMENTS_PER_LOG_MAX * (64 + REPLICAS_MAX * 8) + FRAME_SLACK_BYTES
        <= FRAME_PAYLOAD_BYTES_MAX as usize
);
const _: () = assert!(
    NODES_MAX * (2 * ERROR_MESSAGE_BYTES_MAX + 2 * SHARDS_MAX + 128) + FRAME_SLACK_BYTES
        <= FRAME_PAYLOAD_BYTES_MAX as usize
);
const _: () =
    assert!(LEASE_MS_MIN > 0 && LEASE_MS_MIN < LEASE_MS_MAX && LEASE_MS_MAX <= u32::MAX as u64);

/// Why a blocking call to the metadata store failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("metadata store {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("metadata store {addr} closed the connection")]
    Closed { addr: SocketAddr },
    #[error("metadata store {addr}: bad frame: {source}")]
    Wire {
        addr: SocketAddr,
        #[source]
        source: WireError,
    },
    #[error("metadata store {addr} answered request {found} to request {expected}")]
    RequestId {
        addr: SocketAddr,
        expected: u64,
        found: u64,
    },
}

/// One blocking connection to a metadata store: one request, one answer.
#[derive(Debug)]
pub struct BlockingMetaClient {
    addr: SocketAddr,
    stream: TcpStream,
    next_request_id: u64,
}

impl BlockingMetaClient {
    /// Connects within `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<BlockingMetaClient, CallError> {
        let io = |source| CallError::Io { addr, source };
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(BlockingMetaClient {
            addr,
            stream,
            next_request_id: 1,
        })
    }

    /// Sends `request` and returns the answer, which may be a
    /// `Message::MetaError`. Each of the write and the read must finish
    /// within `timeout` (for a watch, give it more than the wait).
    /// After an error the connection may be out of step with the store
    /// (half a frame read): drop it and connect again.
    pub fn call(&mut self, request: &Message, timeout: Duration) -> Result<Message, CallError> {
        let addr = self.addr;
        let io = |source| CallError::Io { addr, source };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.stream.set_write_timeout(Some(timeout)).map_err(io)?;
        self.stream.set_read_timeout(Some(timeout)).map_err(io)?;
        self.stream
            .write_all(&request.encode(request_id))
            .map_err(io)?;
        let mut head = [0u8; FRAME_HEADER_BYTES];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(CallError::Closed { addr })
            }
            Err(e) => return Err(io(e)),
        }
        let wire = |source| CallError::Wire { addr, source };
        let header = FrameHeader::parse(&head).map_err(wire)?;
        let mut payload = AlignedVec::<16>::with_capacity(header.payload_len as usize);
        payload.resize(header.payload_len as usize, 0);
        self.stream.read_exact(&mut payload).map_err(io)?;
        header.verify(&payload).map_err(wire)?;
        if header.request_id != request_id {
            return Err(CallError::RequestId {
                addr,
                expected: request_id,
                found: header.request_id,
            });
        }
        decode_payload(header.kind, &payload).map_err(wire)
    }
}
