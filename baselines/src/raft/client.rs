//! The client of the Raft log, outside the cluster (as trilog's producer
//! is): it sends each append to the node it believes leads, follows "not
//! the leader" answers, and retries on another node when a connection
//! fails or times out, until [`APPEND_RETRY_MS_MAX`] has passed.
//!
//! Retrying is safe: every append carries the client's id and a sequence
//! number, and the state machine answers a retry of an append it applied
//! with that append's first outcome instead of appending it again. So an
//! append that returns `Ok` is in the log exactly once, whatever leaders
//! came and went.
//!
//! Many appends may be in flight at once; they share one connection per
//! node, multiplexed by request id.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnError};
use super::limits::{
    APPEND_REQUEST_BYTES_MAX, APPEND_RETRY_MS_MAX, CONNECT_TIMEOUT_MS, READ_ENTRIES_MAX,
    REQUEST_TIMEOUT_MS, RETRY_BACKOFF_MS,
};
use super::rpc::{AppendRefused, NodeStatus, ReadReply, Request, Response};
use super::types::AppendRequest;

/// Why an append or a query failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftClientError {
    #[error("no node addresses given")]
    NoNodes,
    #[error("append of {bytes} payload bytes, over the limit of {APPEND_REQUEST_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("append of no payload")]
    Empty,
    #[error("gave up after {ms} ms; last: {last}")]
    GaveUp { ms: u64, last: String },
    #[error("refused: {0}")]
    Refused(#[from] AppendRefused),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{addr} answered {what}")]
    Unexpected { addr: SocketAddr, what: String },
    #[error("read: {0}")]
    Read(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client of a Raft log cluster.
pub struct RaftClient {
    addrs: Vec<SocketAddr>,
    client_id: u64,
    next_seq: AtomicU64,
    /// Sequence numbers of the appends in flight.
    in_flight: Mutex<BTreeSet<u64>>,
    conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    leader: Mutex<Option<SocketAddr>>,
    /// Which node to try next when no leader is known.
    next_try: AtomicUsize,
}

impl std::fmt::Debug for RaftClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftClient")
            .field("addrs", &self.addrs)
            .field("client_id", &self.client_id)
            .field("leader", &*lock(&self.leader))
            .finish_non_exhaustive()
    }
}

/// What one attempt at an append came to.
enum Attempt {
    /// Applied at this position.
    Applied(u64),
    /// The node named another as the leader: try it at once.
    Redirected(String),
    /// No answer, or no leader yet: try again after a pause.
    Retry(String),
    /// Refused for good.
    Failed(RaftClientError),
}

/// Removes an append from the in-flight set however its call ends.
struct InFlight<'a> {
    set: &'a Mutex<BTreeSet<u64>>,
    seq: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.seq);
    }
}

impl RaftClient {
    /// A client of the cluster whose nodes listen on `addrs`; finds the
    /// leader if one answers.
    pub async fn connect(addrs: &[SocketAddr]) -> Result<RaftClient, RaftClientError> {
        if addrs.is_empty() {
            return Err(RaftClientError::NoNodes);
        }
        let client = RaftClient {
            addrs: addrs.to_vec(),
            client_id: rand::random::<u64>() | 1,
            next_seq: AtomicU64::new(1),
            in_flight: Mutex::new(BTreeSet::new()),
            conns: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
            next_try: AtomicUsize::new(0),
        };
        let _ = client.find_leader().await;
        Ok(client)
    }

    /// The node addresses this client was given.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Appends one payload; returns its position in the log (0 for the
    /// first payload ever appended) once a majority of the nodes made it
    /// durable and the leader applied it.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, RaftClientError> {
        self.append_batch(vec![payload]).await
    }

    /// Appends payloads as one Raft entry (they get consecutive
    /// positions); returns the first one's position.
    pub async fn append_batch(&self, payloads: Vec<Vec<u8>>) -> Result<u64, RaftClientError> {
        if payloads.is_empty() {
            return Err(RaftClientError::Empty);
        }
        let bytes: usize = payloads.iter().map(Vec::len).sum();
        if bytes > APPEND_REQUEST_BYTES_MAX {
            return Err(RaftClientError::TooLarge { bytes });
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let first_unacked = {
            let mut set = lock(&self.in_flight);
            set.insert(seq);
            set.first().copied().unwrap_or(seq)
        };
        let _guard = InFlight {
            set: &self.in_flight,
            seq,
        };
        let req = Request::Append(AppendRequest {
            client: self.client_id,
            seq,
            first_unacked,
            payloads,
        });
        // Encoded once, sent as often as needed.
        let frame = Conn::frame(&req)?;
        drop(req);
        self.send_until_applied(&frame).await
    }

    /// Sends an encoded append to the node believed to lead, following
    /// "not the leader" answers and trying another node when one fails,
    /// until it is applied or [`APPEND_RETRY_MS_MAX`] passed.
    async fn send_until_applied(&self, frame: &[u8]) -> Result<u64, RaftClientError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(APPEND_RETRY_MS_MAX);
        let mut last = String::new();
        loop {
            if Instant::now() >= deadline {
                return Err(RaftClientError::GaveUp {
                    ms: started.elapsed().as_millis() as u64,
                    last,
                });
            }
            match self.attempt(frame).await {
                Attempt::Applied(position) => return Ok(position),
                Attempt::Failed(e) => return Err(e),
                Attempt::Redirected(why) => last = why,
                Attempt::Retry(why) => {
                    last = why;
                    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                }
            }
        }
    }

    /// Sends the append once, to the node believed to lead.
    async fn attempt(&self, frame: &[u8]) -> Attempt {
        let addr = self.target();
        let conn = match self.conn(addr).await {
            Ok(c) => c,
            Err(e) => {
                self.forget(addr);
                return Attempt::Retry(e.to_string());
            }
        };
        let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
        match conn.call_frame(frame.to_vec(), timeout).await {
            Ok(Response::Append(Ok(position))) => {
                *lock(&self.leader) = Some(addr);
                Attempt::Applied(position)
            }
            Ok(Response::Append(Err(AppendRefused::NotLeader {
                leader_addr: Some(leader),
                ..
            }))) if leader.parse::<SocketAddr>().is_ok_and(|l| l != addr) => {
                *lock(&self.leader) = leader.parse().ok();
                Attempt::Redirected(format!("{addr} is not the leader"))
            }
            Ok(Response::Append(Err(e @ AppendRefused::NotLeader { .. })))
            | Ok(Response::Append(Err(e @ AppendRefused::Other(_)))) => {
                // An election is under way, or the node is shutting
                // down: try another in a moment.
                self.forget_leader(addr);
                Attempt::Retry(format!("{addr}: {e}"))
            }
            Ok(Response::Append(Err(e))) => Attempt::Failed(RaftClientError::Refused(e)),
            Ok(other) => Attempt::Failed(RaftClientError::Unexpected {
                addr,
                what: format!("{other:?}"),
            }),
            Err(e) => {
                self.forget(addr);
                Attempt::Retry(e.to_string())
            }
        }
    }

    /// Asks every node who leads; remembers and returns the leader's
    /// address if one says it leads.
    pub async fn find_leader(&self) -> Option<SocketAddr> {
        for &addr in &self.addrs {
            if let Ok(s) = self.status(addr).await {
                if s.is_leader() {
                    *lock(&self.leader) = Some(addr);
                    return Some(addr);
                }
            }
        }
        None
    }

    /// What the node at `addr` says of itself.
    pub async fn status(&self, addr: SocketAddr) -> Result<NodeStatus, RaftClientError> {
        match self.call(addr, &Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(RaftClientError::Unexpected {
                addr,
                what: format!("{other:?}"),
            }),
        }
    }

    /// Payloads of the log as applied by the node at `addr`, from
    /// position `from` (at most `max`, fewer if the answer would be
    /// large).
    pub async fn read(
        &self,
        addr: SocketAddr,
        from: u64,
        max: usize,
    ) -> Result<ReadReply, RaftClientError> {
        let max = max.min(READ_ENTRIES_MAX) as u32;
        match self.call(addr, &Request::Read { from, max }).await? {
            Response::Read(r) => r.map_err(RaftClientError::Read),
            other => Err(RaftClientError::Unexpected {
                addr,
                what: format!("{other:?}"),
            }),
        }
    }

    async fn call(&self, addr: SocketAddr, req: &Request) -> Result<Response, RaftClientError> {
        let conn = self.conn(addr).await?;
        let r = conn
            .call(req, Duration::from_millis(REQUEST_TIMEOUT_MS))
            .await;
        if r.is_err() {
            self.forget(addr);
        }
        Ok(r?)
    }

    /// The node to send the next append to.
    fn target(&self) -> SocketAddr {
        if let Some(l) = *lock(&self.leader) {
            return l;
        }
        let i = self.next_try.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
        self.addrs[i]
    }

    fn forget_leader(&self, addr: SocketAddr) {
        let mut l = lock(&self.leader);
        if *l == Some(addr) {
            *l = None;
        }
    }

    /// Forgets a node's connection (it failed) and that it leads.
    fn forget(&self, addr: SocketAddr) {
        self.forget_leader(addr);
        let mut conns = lock(&self.conns);
        if conns.get(&addr).is_some_and(|c| c.is_closed()) {
            conns.remove(&addr);
        }
    }

    async fn conn(&self, addr: SocketAddr) -> Result<Arc<Conn>, ConnError> {
        if let Some(c) = lock(&self.conns).get(&addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Conn::connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await?;
        let mut conns = lock(&self.conns);
        // Another task may have connected meanwhile: keep one connection.
        match conns.get(&addr) {
            Some(existing) if !existing.is_closed() => Ok(existing.clone()),
            _ => {
                conns.insert(addr, c.clone());
                Ok(c)
            }
        }
    }
}
