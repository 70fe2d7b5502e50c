//! The producer's driver task: the one loop that owns the machine, its
//! connections and its metadata call, and carries out its actions.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use trilog_protocol::actions::Actions;
use trilog_protocol::producer::{Action, AppendRefused, Phase, Producer as Machine, StopReason};
use trilog_wire::message::{Append, AppendAck, ErrorMsg, Seal, Watermark};
use trilog_wire::{encode_append, AppendHead, Message, WireMessage};

use super::{Cmd, Completion};
use crate::clock::Clock;
use crate::conn::{refusal_of, NodeConn, Reply};
use crate::error::{AppendError, ClientError};
use crate::pool::ConnPool;
use crate::record_calls::{self, MetaAnswer, MetaCallFuture};

/// How long telling a replica of a seal may take (best effort).
const SEAL_TELL_TIMEOUT_MS: u64 = 5_000;

/// How long a close waits for the answers to the seals it sent before it
/// returns: a CLI that exits right after `close` then usually delivered
/// them. A replica that misses its seal learns it from the metadata record
/// (the node's seal learning), so the wait is bounded, not a guarantee.
const CLOSE_SEAL_WAIT_MS: u64 = 3_000;

const _: () = assert!(CLOSE_SEAL_WAIT_MS <= SEAL_TELL_TIMEOUT_MS);

/// Segment ids a reply tag carries (48 bits, ids grow by one per switch or
/// takeover).
const TAG_SEGMENT_MAX: u64 = 1 << 48;

/// A reply's tag: the segment, the replica and the generation of the
/// connection it was sent on (so the losses of a connection replaced by a
/// new one are told from those of the new one).
fn tag(segment: u64, replica: usize, generation: u8) -> u64 {
    assert!(replica < 256, "replica index fits in the tag");
    assert!(segment < TAG_SEGMENT_MAX, "segment id fits in the tag");
    (segment << 16) | (u64::from(generation) << 8) | replica as u64
}

fn untag(tag: u64) -> (u64, usize, u8) {
    (tag >> 16, (tag & 0xff) as usize, ((tag >> 8) & 0xff) as u8)
}

/// A connection made again to one replica, or why it could not be:
/// (segment, replica, generation, outcome).
pub(super) type Reconnected = (u64, usize, u8, Result<NodeConn, String>);

/// Reconnections under way that may report at once.
pub(super) const RECONNECT_QUEUE_MAX: usize = 64;

/// Waits for the metadata call under way, or forever without one. The
/// call itself stays in `meta` if another event comes first.
async fn meta_answer(meta: &mut Option<MetaCallFuture>) -> MetaAnswer {
    match meta {
        Some(call) => {
            let answer = call.await;
            *meta = None;
            answer
        }
        None => std::future::pending().await,
    }
}

/// An append serialized once for every replica: (segment, first offset,
/// count, commit), the payload, and the payload's crc32c.
pub(super) type EncodedAppend = ((u64, u64, u32, u64), Arc<rkyv::util::AlignedVec>, u32);

/// A caller waiting for its entry.
pub(super) struct Waiter {
    seq: u64,
    done: Completion,
    /// Released once the entry is resolved.
    _permit: OwnedSemaphorePermit,
    submitted: std::time::Instant,
    bytes: u64,
}

pub(super) struct Driver {
    pub(super) m: Machine,
    pub(super) pool: ConnPool,
    pub(super) clock: Clock,
    /// Connections to the replicas of `conns_segment`, by replica index.
    pub(super) conns: Vec<Option<NodeConn>>,
    /// By replica index, the generation of its connection (see [`tag`]).
    pub(super) generations: Vec<u8>,
    /// By replica index, the failed attempts to reach it again since its
    /// connection was last up: only some are logged at warn (a dead node
    /// is retried every 100 ms until the ack timeout fails it).
    pub(super) unreachable: Vec<u32>,
    /// Where reconnection tasks report.
    pub(super) reconnected_tx: mpsc::Sender<Reconnected>,
    pub(super) conns_segment: Option<u64>,
    pub(super) replies_tx: mpsc::Sender<(u64, Reply)>,
    /// Callers waiting for their entry, in seq order.
    pub(super) waiters: VecDeque<Waiter>,
    /// Whether the producer connected to a segment yet: each later
    /// connection is a switch.
    pub(super) connected_once: bool,
    pub(super) closer: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// The last append payload serialized, reused for the other replicas.
    pub(super) last_append: Option<EncodedAppend>,
    /// Shared with the [`Producer`] handle: why the machine stopped.
    pub(super) stopped: Arc<OnceLock<StopReason>>,
    /// The metadata call the machine asked for, under way.
    pub(super) meta: Option<MetaCallFuture>,
    /// One per seal told and not yet answered (or timed out): a close
    /// waits for them.
    pub(super) seals_told: Vec<oneshot::Receiver<()>>,
    /// The view read (its time) and the open segment that standby
    /// connections were last opened for: again after each view read (one
    /// a node closed meanwhile is made anew) and each switch.
    pub(super) standby_for: Option<(u64, u64)>,
}

impl Driver {
    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut replies: mpsc::Receiver<(u64, Reply)>,
        mut reconnected: mpsc::Receiver<Reconnected>,
    ) {
        loop {
            let timer = self.m.poll_timeout();
            let clock = self.clock.clone();
            // In a fixed order, so a run replays (the simulator's seeds):
            // a due timer first (a slow replica's ack timeout must fire
            // while the others keep acking), then answers (they free the
            // window and the callers' budget), then new entries.
            let actions = tokio::select! {
                biased;
                () = clock.sleep_until(timer) => self.m.handle_timeout(self.clock.now_ms()),
                Some((tag, reply)) = replies.recv() => self.on_reply(tag, reply).await,
                Some(r) = reconnected.recv() => self.on_reconnected(r),
                answer = meta_answer(&mut self.meta) => {
                    let now = self.clock.now_ms();
                    match answer {
                        MetaAnswer::Record(r) => self.m.handle_record(r, now),
                        MetaAnswer::Cas(c) => self.m.handle_cas(c, now),
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.take_queued(cmd, &mut cmds),
                    // Every handle is gone: nobody waits for anything.
                    None => return,
                },
            };
            self.apply(actions).await;
            if matches!(self.m.phase(), Phase::Stopped(_)) {
                return;
            }
            self.open_standby();
        }
    }

    /// Takes `first` and whatever else is queued, so it goes out batched.
    fn take_queued(&mut self, first: Cmd, cmds: &mut mpsc::Receiver<Cmd>) -> Actions<Action> {
        let mut actions = self.take(first);
        while let Ok(more) = cmds.try_recv() {
            actions.extend(self.take(more));
        }
        actions.extend(self.m.poll(self.clock.now_ms()));
        actions
    }

    fn take(&mut self, cmd: Cmd) -> Actions<Action> {
        match cmd {
            Cmd::Append(entry, done, permit, submitted) => {
                let bytes = entry.payload.len() as u64;
                match self.m.append(entry) {
                    Ok(seq) => self.waiters.push_back(Waiter {
                        seq,
                        done,
                        _permit: permit,
                        submitted,
                        bytes,
                    }),
                    Err(AppendRefused::Closed) => {
                        let _ = done.send(Err(AppendError::Closed));
                    }
                    Err(AppendRefused::Stopped { reason }) => {
                        let why = reason.to_string();
                        let _ = done.send(Err(AppendError::Indeterminate { why }));
                    }
                }
                Actions::new()
            }
            Cmd::Close(done) => {
                self.closer = Some(done);
                self.m.close(self.clock.now_ms())
            }
        }
    }

    async fn on_reply(&mut self, tag: u64, reply: Reply) -> Actions<Action> {
        let (segment, replica, generation) = untag(tag);
        let now = self.clock.now_ms();
        let log_id = self.m.log_id();
        match reply {
            Reply::Msg(Message::AppendAck(AppendAck {
                segment,
                durable_len,
                ..
            })) => self.m.handle_ack(replica, segment, durable_len, now),
            Reply::Msg(Message::ErrorMsg(ErrorMsg {
                code,
                value,
                message,
                ..
            })) => match refusal_of(code, value) {
                Some(r) => self.m.handle_refusal(replica, segment, r, now),
                None => {
                    log::warn!(
                        "log {log_id} segment {segment} replica {replica}: {code:?} {message}"
                    );
                    self.replica_failed(replica, segment, now)
                }
            },
            Reply::Msg(other) => {
                log::warn!(
                    "log {log_id}: unexpected answer to an append: {:?}",
                    other.kind()
                );
                self.replica_failed(replica, segment, now)
            }
            Reply::Records(_) => {
                log::warn!("log {log_id}: unexpected answer to an append: ReadResponse");
                self.replica_failed(replica, segment, now)
            }
            Reply::Lost(e) => {
                if self.generations.get(replica) != Some(&generation) {
                    // A connection already replaced.
                    log::debug!("log {log_id} segment {segment} replica {replica}: {e}");
                    return Actions::new();
                }
                self.forget(segment, replica, &e).await;
                self.m.handle_connection_lost(replica, segment, now)
            }
        }
    }

    /// Connects to a replica again, in a task that reports back.
    fn reconnect(&mut self, replica: usize, node: u64, segment: u64) -> Actions<Action> {
        if self.conns_segment != Some(segment) {
            return Actions::new();
        }
        if let Some(slot) = self.conns.get_mut(replica) {
            *slot = None;
        }
        let generation = match self.generations.get_mut(replica) {
            Some(g) => {
                *g = g.wrapping_add(1);
                *g
            }
            None => return Actions::new(),
        };
        let (pool, tx, log_id) = (
            self.pool.clone(),
            self.reconnected_tx.clone(),
            self.m.log_id(),
        );
        self.pool.runtime().spawn(Box::pin(async move {
            let outcome = pool
                .for_segment(node, log_id, segment)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send((segment, replica, generation, outcome)).await;
        }));
        Actions::new()
    }

    fn on_reconnected(
        &mut self,
        (segment, replica, generation, outcome): Reconnected,
    ) -> Actions<Action> {
        let current = self.conns_segment == Some(segment)
            && self.generations.get(replica) == Some(&generation);
        if !current {
            return Actions::new();
        }
        let now = self.clock.now_ms();
        match outcome {
            Ok(conn) => {
                if let Some(slot) = self.conns.get_mut(replica) {
                    *slot = Some(conn);
                }
                if let Some(n) = self.unreachable.get_mut(replica) {
                    *n = 0;
                }
                self.m.handle_reconnected(replica, segment, now)
            }
            Err(why) => {
                let attempts = match self.unreachable.get_mut(replica) {
                    Some(n) => {
                        *n = n.saturating_add(1);
                        *n
                    }
                    None => 1,
                };
                // The 1st, 2nd, 4th, 8th... failed attempt at warn, the
                // others at debug: a few lines per dead node, not ten a
                // second until the ack timeout.
                let level = if attempts.is_power_of_two() {
                    log::Level::Warn
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "log {} segment {segment}: replica {replica} unreachable again (attempt {attempts}): {why}",
                    self.m.log_id()
                );
                self.m.handle_reconnect_failed(replica, segment, now)
            }
        }
    }

    /// A connection of `segment` was lost: the pool reconnects next time.
    /// Every append in flight on it comes back with the same error; only
    /// the first finds the connection still here and is worth a warning.
    async fn forget(&mut self, segment: u64, replica: usize, e: &crate::error::ConnError) {
        let log_id = self.m.log_id();
        let current = self.conns_segment == Some(segment);
        match self.conns.get_mut(replica).and_then(Option::take) {
            Some(c) if current => {
                log::warn!("log {log_id} segment {segment} replica {replica}: {e}");
                self.pool.forget(&c).await;
            }
            _ => log::debug!("log {log_id} segment {segment} replica {replica}: {e}"),
        }
    }

    /// Carries out actions, including those that carrying out others asks for.
    pub(super) async fn apply(&mut self, actions: Actions<Action>) {
        let mut queue: VecDeque<Action> = actions.into_iter().collect();
        while let Some(action) = queue.pop_front() {
            let more = self.apply_one(action).await;
            queue.extend(more);
        }
    }

    async fn apply_one(&mut self, action: Action) -> Actions<Action> {
        match action {
            Action::Committed { through } => {
                while self.waiters.front().is_some_and(|w| w.seq < through) {
                    if let Some(w) = self.waiters.pop_front() {
                        crate::metrics::committed(w.submitted.elapsed(), w.bytes);
                        let _ = w.done.send(Ok(w.seq));
                    }
                }
                Actions::new()
            }
            Action::Append {
                replica,
                segment,
                first_seq,
                first_offset,
                count,
                commit,
                ..
            } => {
                let key = (segment, first_offset, count, commit);
                self.send_append(replica, key, first_seq)
            }
            Action::Watermark {
                replica,
                segment,
                commit,
                ..
            } => self.send_watermark(replica, segment, commit),
            Action::Connect { segment, replicas } => {
                let switch = self.connected_once;
                self.connected_once = true;
                let started = std::time::Instant::now();
                let out = self.connect(segment, &replicas).await;
                if switch {
                    crate::metrics::switched();
                    log::info!(
                        "log {}: switched to segment {segment} on nodes {replicas:?} (connected in {} us)",
                        self.m.log_id(),
                        started.elapsed().as_micros()
                    );
                }
                out
            }
            Action::Reconnect {
                replica,
                node,
                segment,
            } => self.reconnect(replica, node, segment),
            Action::Seal { node, segment, len } => {
                self.tell_seal(node, segment, len);
                Actions::new()
            }
            Action::Meta(call) => {
                assert!(self.meta.is_none(), "one metadata call at a time");
                self.meta = Some(record_calls::start(&self.pool, self.m.log_id(), call));
                Actions::new()
            }
            Action::Stopped { reason, committed } => {
                self.stopped_with(reason, committed);
                Actions::new()
            }
        }
    }

    /// Connects to the replicas of the new open segment; a replica that
    /// cannot be reached is a failure the machine hears of.
    async fn connect(&mut self, segment: u64, replicas: &[u64]) -> Actions<Action> {
        let log_id = self.m.log_id();
        self.conns = vec![None; replicas.len()];
        self.generations = vec![0; replicas.len()];
        self.unreachable = vec![0; replicas.len()];
        self.conns_segment = Some(segment);
        for (i, node) in replicas.iter().enumerate() {
            match self.pool.for_segment(*node, log_id, segment).await {
                Ok(c) => self.conns[i] = Some(c),
                Err(e) => {
                    log::warn!("log {log_id} segment {segment}: replica {node} unreachable: {e}");
                    let now = self.clock.now_ms();
                    return self.replica_failed(i, segment, now);
                }
            }
        }
        Actions::new()
    }

    /// Opens connections, in the background, to the nodes a switch away
    /// from a slow replica would place the next segment on
    /// (`Producer::standby`), once per view read and segment: the switch
    /// then finds them in the pool instead of connecting while appends
    /// wait. A failure here costs nothing; the switch connects as before.
    fn open_standby(&mut self) {
        let Some(read_at) = self.m.view().map(|v| v.alive_at_ms) else {
            return;
        };
        let key = (read_at, self.m.segment().id);
        if self.standby_for == Some(key) {
            return;
        }
        let Some((next, nodes)) = self.m.standby(self.clock.now_ms()) else {
            return;
        };
        self.standby_for = Some(key);
        let (pool, log_id) = (self.pool.clone(), self.m.log_id());
        self.pool.runtime().spawn(Box::pin(async move {
            for node in nodes {
                if let Err(e) = pool.for_segment(node, log_id, next).await {
                    log::debug!(
                        "log {log_id}: no standby connection to node {node} for segment {next}: {e}"
                    );
                }
            }
        }));
    }

    /// Tells the machine a replica failed, and counts it.
    fn replica_failed(&mut self, replica: usize, segment: u64, now_ms: u64) -> Actions<Action> {
        crate::metrics::replica_failed();
        self.m.handle_replica_failure(replica, segment, now_ms)
    }

    /// Sends append `key` (segment, first offset, count, commit) to one
    /// replica, serializing it only once for all of them.
    fn send_append(
        &mut self,
        replica: usize,
        key: (u64, u64, u32, u64),
        first_seq: u64,
    ) -> Actions<Action> {
        let (segment, first_offset, count, commit) = key;
        let reuse = matches!(&self.last_append, Some((k, _, _)) if *k == key);
        if !reuse {
            // Serialized from the entries the machine holds, without
            // cloning them first: the payload bytes are copied once, into
            // the buffer the three replicas are sent.
            let head = AppendHead {
                log_id: self.m.log_id(),
                segment,
                epoch: self.m.epoch(),
                first_seq,
                first_offset,
                commit,
            };
            // Its crc comes from the entries', so no payload byte is read
            // for it.
            let append = encode_append(head, self.m.entries(first_offset, count));
            self.last_append = Some((key, Arc::new(append.payload), append.crc));
        }
        let Some((_, payload, crc)) = &self.last_append else {
            unreachable!("serialized just above");
        };
        let sent = match self.conn(segment, replica) {
            Some(c) => c
                .send_payload_tagged(
                    Append::KIND,
                    payload,
                    *crc,
                    &self.replies_tx,
                    tag(segment, replica, self.generations[replica]),
                )
                .map_err(|e| e.to_string()),
            None => Err("not connected".to_string()),
        };
        match sent {
            Ok(()) => Actions::new(),
            Err(why) => {
                log::warn!(
                    "log {} segment {segment}: send to replica {replica}: {why}",
                    self.m.log_id()
                );
                let now = self.clock.now_ms();
                self.m.handle_connection_lost(replica, segment, now)
            }
        }
    }

    /// The connection to replica `replica` of `segment`, if there is one.
    fn conn(&self, segment: u64, replica: usize) -> Option<&NodeConn> {
        if self.conns_segment != Some(segment) {
            return None;
        }
        self.conns.get(replica).and_then(Option::as_ref)
    }

    /// Sends the watermark alone. A connection that is gone is a failed
    /// replica, as for an append: the machine's refresh of an idle
    /// replica is how a reset connection or a restarted node is found.
    fn send_watermark(&mut self, replica: usize, segment: u64, commit: u64) -> Actions<Action> {
        let Some(c) = self.conn(segment, replica) else {
            return Actions::new();
        };
        let w = Watermark {
            log_id: self.m.log_id(),
            segment,
            epoch: self.m.epoch(),
            commit,
        };
        match c.send_oneway(&w) {
            Ok(()) => Actions::new(),
            Err(e) => {
                log::warn!(
                    "log {} segment {segment}: watermark to replica {replica}: {e}",
                    self.m.log_id()
                );
                let now = self.clock.now_ms();
                self.m.handle_connection_lost(replica, segment, now)
            }
        }
    }

    /// Best effort and off the hot path: replicas that miss it still
    /// refuse nothing they should accept, and readers pass the sealed
    /// length from the metadata.
    fn tell_seal(&mut self, node: u64, segment: u64, len: u64) {
        let pool = self.pool.clone();
        let (told_tx, told_rx) = oneshot::channel();
        // Forget the seals answered already (a long-lived producer switches
        // many times).
        self.seals_told
            .retain_mut(|rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        self.seals_told.push(told_rx);
        let s = Seal {
            log_id: self.m.log_id(),
            segment,
            epoch: self.m.epoch(),
            len,
        };
        self.pool.runtime().spawn(Box::pin(async move {
            if let Ok(c) = pool.for_segment(node, s.log_id, segment).await {
                let _ = c
                    .request(&s, Duration::from_millis(SEAL_TELL_TIMEOUT_MS))
                    .await;
            }
            let _ = told_tx.send(());
        }));
    }

    /// The machine stopped: every caller still waiting learns why.
    fn stopped_with(&mut self, reason: StopReason, committed: u64) {
        let log_id = self.m.log_id();
        let result = match reason {
            StopReason::Closed => {
                assert!(self.waiters.is_empty(), "closed with entries pending");
                Ok(())
            }
            _ => {
                log::warn!("log {log_id}: {reason}");
                let _ = self.stopped.set(reason);
                let why = reason.to_string();
                crate::metrics::failed(self.waiters.len() as u64);
                for w in self.waiters.drain(..) {
                    assert!(
                        w.seq >= committed,
                        "committed entries were resolved already"
                    );
                    let why = why.clone();
                    let _ = w.done.send(Err(AppendError::Indeterminate { why }));
                }
                Err(ClientError::Log { log_id, why })
            }
        };
        let Some(closer) = self.closer.take() else {
            return;
        };
        if !matches!(reason, StopReason::Closed) {
            let _ = closer.send(result);
            return;
        }
        // Closed: answer once the seals told are answered, or at most
        // CLOSE_SEAL_WAIT_MS from now.
        let told = std::mem::take(&mut self.seals_told);
        let rt = self.pool.runtime().clone();
        self.pool.runtime().spawn(Box::pin(async move {
            let all = async {
                for rx in told {
                    let _ = rx.await;
                }
            };
            let limit = Duration::from_millis(CLOSE_SEAL_WAIT_MS);
            if crate::runtime::timeout(rt.as_ref(), limit, all)
                .await
                .is_none()
            {
                log::warn!("close: not every replica answered its seal within {limit:?}");
            }
            let _ = closer.send(result);
        }));
    }
}
