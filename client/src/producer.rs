//! The producer: appends to a log, pipelined to the three replicas of its
//! open segment. A thin driver around [`trilog_protocol::producer`]: it
//! moves entries from callers into the state machine, frames out to
//! replicas, acks back in, and runs the metadata CAS the machine asks for.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use trilog_protocol::metadata::{open_for_write, seal_last, switch_segment, MetaRefusal};
use trilog_protocol::placement::choose_replicas;
use trilog_protocol::producer::{Action, OpenSegment, Producer as Machine, ProducerConfig};
use trilog_protocol::replica::Refusal;
use trilog_wire::limits::ENTRY_BYTES_MAX;
use trilog_wire::message::{Append, AppendAck, Entry, ErrorCode, ErrorMsg, Seal, Watermark};
use trilog_wire::meta::LogMeta;
use trilog_wire::{Message, WireMessage};

use crate::conn::{NodeConn, Reply};
use crate::error::{AppendError, ClientError};
use crate::meta::CasOutcome;
use crate::pool::ConnPool;

/// How often the driver checks for overdue acks.
const TICK_MS: u64 = 50;
/// Metadata CAS attempts before a switch or an open gives up.
const CAS_ATTEMPTS_MAX: u32 = 50;
/// Pause between attempts to find healthy nodes.
const PLACEMENT_RETRY_MS: u64 = 100;
/// Pause after a metadata CAS conflict during a switch.
const CAS_RETRY_MS: u64 = 10;
/// How long a segment switch keeps trying (to find 3 healthy nodes, to
/// reach the metadata store) before the producer gives up.
const SWITCH_PATIENCE_MS: u64 = 30_000;
/// Queued commands between callers and the driver.
const COMMAND_QUEUE_MAX: usize = 65_536;

/// How a producer behaves.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub config: ProducerConfig,
    /// Replicas per segment.
    pub replicas: usize,
    /// Payload bytes taken but not committed; `submit` waits past it.
    pub in_flight_bytes_max: usize,
    /// Seeds the random choice of replicas.
    pub seed: u64,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            config: ProducerConfig::default(),
            replicas: 3,
            in_flight_bytes_max: 64 << 20,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        }
    }
}

type Completion = oneshot::Sender<Result<u64, AppendError>>;

enum Cmd {
    Append(Entry, Completion, OwnedSemaphorePermit),
    Close(oneshot::Sender<Result<(), ClientError>>),
}

/// An append in flight: resolves to the entry's seq once it is committed
/// on every replica.
#[derive(Debug)]
pub struct AppendFuture(oneshot::Receiver<Result<u64, AppendError>>);

impl std::future::Future for AppendFuture {
    type Output = Result<u64, AppendError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(r) => r,
            Err(_) => Err(AppendError::Indeterminate {
                why: "the producer stopped".into(),
            }),
        })
    }
}

/// The writer of one log.
#[derive(Debug)]
pub struct Producer {
    log_id: u64,
    epoch: u64,
    cmds: mpsc::Sender<Cmd>,
    budget: Arc<Semaphore>,
    budget_max: usize,
    /// Set by the driver when a newer epoch took the log over, before it
    /// stops: a later `submit` then fails the way an append taken while
    /// the driver still ran does (`Indeterminate`, naming the epoch), not
    /// with `Closed` as if the caller had closed the producer. Without it
    /// the error depended on whether the driver had exited yet.
    fenced: Arc<std::sync::OnceLock<String>>,
}

impl Producer {
    /// Opens `log_id` for writing: creates it, or continues it with a new
    /// epoch and a new segment if its last segment is sealed.
    pub async fn open(
        pool: ConnPool,
        log_id: u64,
        opts: ProducerOptions,
    ) -> Result<Producer, ClientError> {
        let mut seed = opts.seed;
        for _ in 0..CAS_ATTEMPTS_MAX {
            let current = pool.meta().get_log(log_id).await?;
            let alive = alive_nodes(&pool).await?;
            seed = seed.wrapping_add(1);
            let replicas = choose_replicas(&alive, &[], opts.replicas, seed)?;
            let record =
                open_for_write(current.record.as_ref(), log_id, &replicas).map_err(|e| {
                    ClientError::Log {
                        log_id,
                        why: e.to_string(),
                    }
                })?;
            match pool
                .meta()
                .cas_log(log_id, current.version, record.clone())
                .await?
            {
                CasOutcome::Applied { .. } => return Ok(Self::start(pool, record, 0, opts).await),
                CasOutcome::Conflict(_) => continue,
            }
        }
        Err(ClientError::Log {
            log_id,
            why: "metadata kept changing while opening".into(),
        })
    }

    /// Starts the driver on the open last segment of `record` (written by
    /// this producer's CAS), whose first `held` entries are already durable
    /// on every replica (a takeover's tail).
    pub(crate) async fn start(
        pool: ConnPool,
        record: LogMeta,
        held: u64,
        opts: ProducerOptions,
    ) -> Producer {
        let last = record.segments.last().cloned();
        let Some(last) = last else {
            panic!("a record opened for writing has an open segment");
        };
        let segment = OpenSegment {
            id: last.id,
            first_seq: last.first_seq,
            replicas: last.replicas.clone(),
        };
        let machine = Machine::new(record.log_id, record.epoch, segment, held, opts.config);
        let (cmds, cmd_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let fenced = Arc::new(std::sync::OnceLock::new());
        let mut driver = Driver {
            fenced: fenced.clone(),
            m: machine,
            pool,
            conns: Vec::new(),
            events_tx,
            waiters: VecDeque::new(),
            started: Instant::now(),
            replicas: opts.replicas,
            seed: opts.seed,
            closer: None,
            last_append: None,
        };
        let mut initial = driver.connect_segment().await;
        // The watermark of a held tail goes out at once.
        initial.extend(driver.m.poll(driver.now_ms()));
        driver.apply(initial).await;
        tokio::spawn(driver.run(cmd_rx, events_rx));
        Producer {
            log_id: record.log_id,
            epoch: record.epoch,
            cmds,
            budget: Arc::new(Semaphore::new(opts.in_flight_bytes_max)),
            budget_max: opts.in_flight_bytes_max,
            fenced,
        }
    }

    /// Why a command could not reach the driver: it stopped, fenced or
    /// closed.
    fn stopped(&self) -> AppendError {
        match self.fenced.get() {
            Some(why) => AppendError::Indeterminate { why: why.clone() },
            None => AppendError::Closed,
        }
    }

    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Takes an entry, waiting while too many bytes are in flight
    /// (back-pressure). The returned future resolves once it is committed.
    pub async fn submit(&self, payload: Vec<u8>) -> Result<AppendFuture, AppendError> {
        let len = payload.len();
        if len > ENTRY_BYTES_MAX as usize {
            return Err(AppendError::TooLarge {
                len,
                max: ENTRY_BYTES_MAX as usize,
            });
        }
        // Every entry costs at least one unit so empty entries are bounded.
        let units = (len.max(1)).min(self.budget_max) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|_| self.stopped())?;
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Append(Entry::new(payload), tx, permit))
            .await
            .map_err(|_| self.stopped())?;
        Ok(AppendFuture(rx))
    }

    /// Appends one entry and waits until it is committed; returns its seq.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, AppendError> {
        self.submit(payload).await?.await
    }

    /// Waits for every entry to commit, then seals the segment so the next
    /// producer starts cleanly.
    pub async fn close(self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close(tx)).await.is_err() {
            return Err(ClientError::Log {
                log_id: self.log_id,
                why: match self.fenced.get() {
                    Some(why) => why.clone(),
                    None => "producer already stopped".into(),
                },
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(ClientError::Log {
                log_id: self.log_id,
                why: "producer stopped while closing".into(),
            })
        })
    }
}

pub(crate) async fn alive_nodes(pool: &ConnPool) -> Result<Vec<u64>, ClientError> {
    Ok(pool
        .refresh_nodes()
        .await?
        .into_iter()
        .filter(|n| n.alive)
        .map(|n| n.info.node_id)
        .collect())
}

fn tag(segment: u64, replica: usize) -> u64 {
    assert!(replica < 256, "replica index fits in the tag");
    (segment << 8) | replica as u64
}

fn untag(tag: u64) -> (u64, usize) {
    (tag >> 8, (tag & 0xff) as usize)
}

/// An append serialized once for every replica: (segment, first offset,
/// count, commit), the payload, and the payload's crc32c.
type EncodedAppend = ((u64, u64, u32, u64), Arc<rkyv::util::AlignedVec>, u32);

struct Driver {
    m: Machine,
    /// Shared with the [`Producer`] handle: why it was fenced.
    fenced: Arc<std::sync::OnceLock<String>>,
    pool: ConnPool,
    conns: Vec<Option<NodeConn>>,
    events_tx: mpsc::UnboundedSender<(u64, Reply)>,
    /// Callers waiting for their entry, in seq order.
    waiters: VecDeque<(u64, Completion, OwnedSemaphorePermit)>,
    started: Instant,
    replicas: usize,
    seed: u64,
    closer: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// The last append payload serialized, reused for the other replicas.
    last_append: Option<EncodedAppend>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn connect_segment(&mut self) -> Vec<Action> {
        let seg = self.m.segment().clone();
        let log_id = self.m.log_id();
        self.conns = vec![None; seg.replicas.len()];
        let mut out = Vec::new();
        for (i, node) in seg.replicas.iter().enumerate() {
            match self.pool.for_segment(*node, log_id, seg.id).await {
                Ok(c) => self.conns[i] = Some(c),
                Err(e) => {
                    log::warn!(
                        "log {log_id} segment {}: replica {node} unreachable: {e}",
                        seg.id
                    );
                    out.extend(self.m.handle_replica_failure(i, seg.id));
                    break;
                }
            }
        }
        out
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut events: mpsc::UnboundedReceiver<(u64, Reply)>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let actions = tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => {
                        let mut actions = self.take(cmd);
                        // Drain what else is queued so it goes out batched.
                        while let Ok(more) = cmds.try_recv() {
                            actions.extend(self.take(more));
                        }
                        actions.extend(self.m.poll(self.now_ms()));
                        actions
                    }
                    None => {
                        // Every handle is gone: nobody waits for anything.
                        return;
                    }
                },
                Some((tag, reply)) = events.recv() => self.on_reply(tag, reply).await,
                _ = tick.tick() => self.m.tick(self.now_ms()),
            };
            self.apply(actions).await;
            if self.finished() {
                return;
            }
        }
    }

    fn finished(&self) -> bool {
        matches!(
            self.m.phase(),
            trilog_protocol::producer::Phase::Closed
                | trilog_protocol::producer::Phase::Fenced { .. }
        ) && self.closer.is_none()
    }

    fn take(&mut self, cmd: Cmd) -> Vec<Action> {
        match cmd {
            Cmd::Append(entry, done, permit) => {
                match self.m.append(entry) {
                    Ok(seq) => self.waiters.push_back((seq, done, permit)),
                    Err(e) => {
                        let _ = done.send(Err(match e {
                            trilog_protocol::producer::AppendRefused::Closed => AppendError::Closed,
                            trilog_protocol::producer::AppendRefused::Fenced { by_epoch } => {
                                AppendError::Indeterminate {
                                    why: format!("log taken over by epoch {by_epoch}"),
                                }
                            }
                        }));
                    }
                }
                Vec::new()
            }
            Cmd::Close(done) => {
                self.closer = Some(done);
                self.m.close()
            }
        }
    }

    async fn on_reply(&mut self, tag: u64, reply: Reply) -> Vec<Action> {
        let (segment, replica) = untag(tag);
        let now = self.now_ms();
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
            })) => {
                let refusal = match code {
                    ErrorCode::Gap => Some(Refusal::Gap { len: value }),
                    ErrorCode::Sealed => Some(Refusal::Sealed { len: value }),
                    ErrorCode::Fenced => Some(Refusal::Fenced { epoch: value }),
                    _ => None,
                };
                match refusal {
                    Some(r) => self.m.handle_refusal(replica, segment, r, now),
                    None => {
                        log::warn!(
                            "log {} segment {segment} replica {replica}: {code:?} {message}",
                            self.m.log_id()
                        );
                        self.m.handle_replica_failure(replica, segment)
                    }
                }
            }
            Reply::Msg(other) => {
                log::warn!("unexpected answer to an append: {:?}", other.kind());
                self.m.handle_replica_failure(replica, segment)
            }
            Reply::Lost(e) => {
                let current = segment == self.m.segment().id;
                if let Some(Some(c)) = self.conns.get(replica) {
                    if current {
                        self.pool.forget(c).await;
                    }
                }
                // Every append in flight on a lost connection comes back
                // with the same error: only the first one fails the
                // replica and is worth a warning; the rest find the
                // segment already being switched away from.
                let failing = current
                    && matches!(
                        self.m.phase(),
                        trilog_protocol::producer::Phase::Writing
                            | trilog_protocol::producer::Phase::Closing
                    );
                if failing {
                    log::warn!(
                        "log {} segment {segment} replica {replica}: {e}",
                        self.m.log_id()
                    );
                } else {
                    log::debug!(
                        "log {} segment {segment} replica {replica}: {e}",
                        self.m.log_id()
                    );
                }
                self.m.handle_replica_failure(replica, segment)
            }
        }
    }

    /// Carries out actions, including those that carrying out others asks for.
    async fn apply(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let more = self.apply_one(action).await;
            queue.extend(more);
        }
    }

    async fn apply_one(&mut self, action: Action) -> Vec<Action> {
        match action {
            Action::Committed { through } => {
                while self
                    .waiters
                    .front()
                    .is_some_and(|(seq, _, _)| *seq < through)
                {
                    if let Some((seq, done, _permit)) = self.waiters.pop_front() {
                        let _ = done.send(Ok(seq));
                    }
                }
                Vec::new()
            }
            Action::Append {
                replica,
                segment,
                first_seq,
                first_offset,
                count,
                commit,
                ..
            } => self.send_append(replica, segment, first_seq, first_offset, count, commit),
            Action::Watermark {
                replica,
                segment,
                commit,
                ..
            } => {
                if segment != self.m.segment().id {
                    return Vec::new();
                }
                if let Some(Some(c)) = self.conns.get(replica) {
                    let w = Watermark {
                        log_id: self.m.log_id(),
                        segment,
                        epoch: self.m.epoch(),
                        commit,
                    };
                    // Best effort: a lost watermark only delays readers.
                    let _ = c.send_oneway(&w);
                }
                Vec::new()
            }
            Action::SwitchSegment {
                segment,
                seal_len,
                exclude,
            } => self.switch(segment, seal_len, exclude).await,
            Action::SealForClose { segment, len } => self.seal_for_close(segment, len).await,
            Action::Seal { node, segment, len } => {
                let pool = self.pool.clone();
                let s = Seal {
                    log_id: self.m.log_id(),
                    segment,
                    epoch: self.m.epoch(),
                    len,
                };
                // Best effort and off the hot path: replicas that miss it
                // still refuse nothing they should accept, and readers pass
                // the sealed length from metadata.
                tokio::spawn(async move {
                    if let Ok(c) = pool.for_segment(node, s.log_id, segment).await {
                        let _ = c.request(&s, Duration::from_secs(5)).await;
                    }
                });
                Vec::new()
            }
            Action::Fenced {
                by_epoch,
                committed,
            } => {
                let _ = self
                    .fenced
                    .set(format!("log taken over by epoch {by_epoch}"));
                let why = self.fenced.get().cloned().unwrap_or_default();
                for (seq, done, _) in self.waiters.drain(..) {
                    assert!(seq >= committed, "committed entries were resolved already");
                    let _ = done.send(Err(AppendError::Indeterminate { why: why.clone() }));
                }
                if let Some(closer) = self.closer.take() {
                    let _ = closer.send(Err(ClientError::Log {
                        log_id: self.m.log_id(),
                        why,
                    }));
                }
                Vec::new()
            }
        }
    }

    fn send_append(
        &mut self,
        replica: usize,
        segment: u64,
        first_seq: u64,
        first_offset: u64,
        count: u32,
        commit: u64,
    ) -> Vec<Action> {
        if segment != self.m.segment().id {
            // Queued for a segment that was switched away from meanwhile.
            return Vec::new();
        }
        let key = (segment, first_offset, count, commit);
        let reuse = matches!(&self.last_append, Some((k, _, _)) if *k == key);
        if !reuse {
            let append = Append {
                log_id: self.m.log_id(),
                segment,
                epoch: self.m.epoch(),
                first_seq,
                first_offset,
                commit,
                entries: self.m.entries(first_offset, count).cloned().collect(),
            };
            let payload = trilog_wire::encode_payload(&append);
            let crc = crc32c::crc32c(&payload);
            self.last_append = Some((key, Arc::new(payload), crc));
        }
        let Some((_, payload, crc)) = &self.last_append else {
            return Vec::new();
        };
        let sent = match self.conns.get(replica) {
            Some(Some(c)) => c
                .send_payload_tagged(
                    Append::KIND,
                    payload,
                    *crc,
                    &self.events_tx,
                    tag(segment, replica),
                )
                .map_err(|e| e.to_string()),
            _ => Err("not connected".to_string()),
        };
        match sent {
            Ok(()) => Vec::new(),
            Err(why) => {
                log::warn!(
                    "log {} segment {segment}: send to replica {replica}: {why}",
                    self.m.log_id()
                );
                self.m.handle_replica_failure(replica, segment)
            }
        }
    }

    async fn switch(&mut self, segment: u64, seal_len: u64, mut exclude: Vec<u64>) -> Vec<Action> {
        let log_id = self.m.log_id();
        let deadline = Instant::now() + Duration::from_millis(SWITCH_PATIENCE_MS);
        let mut why = String::from("no attempt");
        while Instant::now() < deadline {
            let current = match self.pool.meta().get_log(log_id).await {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("log {log_id}: switch: metadata: {e}");
                    why = format!("metadata: {e}");
                    tokio::time::sleep(Duration::from_millis(PLACEMENT_RETRY_MS)).await;
                    continue;
                }
            };
            let Some(record) = current.record else {
                return self.m.handle_fenced(self.m.epoch() + 1);
            };
            let alive: Vec<u64> = alive_nodes(&self.pool).await.unwrap_or_default();
            self.seed = self.seed.wrapping_add(1);
            let replicas = match choose_replicas(&alive, &exclude, self.replicas, self.seed) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("log {log_id}: switch: {e}; waiting for healthy nodes");
                    why = e.to_string();
                    tokio::time::sleep(Duration::from_millis(PLACEMENT_RETRY_MS)).await;
                    continue;
                }
            };
            let next = match switch_segment(&record, self.m.epoch(), segment, seal_len, &replicas) {
                Ok(n) => n,
                Err(MetaRefusal::NotOwner { current, .. }) => return self.m.handle_fenced(current),
                Err(e) => {
                    log::warn!("log {log_id}: switch refused: {e}");
                    return self.m.handle_fenced(record.epoch.max(self.m.epoch() + 1));
                }
            };
            match self
                .pool
                .meta()
                .cas_log(log_id, current.version, next.clone())
                .await
            {
                Ok(CasOutcome::Applied { .. }) => {
                    let Some(last) = next.segments.last() else {
                        return Vec::new();
                    };
                    log::info!(
                        "log {log_id}: segment {segment} sealed at {seal_len}; segment {} on {:?}",
                        last.id,
                        last.replicas
                    );
                    let open = OpenSegment {
                        id: last.id,
                        first_seq: last.first_seq,
                        replicas: last.replicas.clone(),
                    };
                    let mut out = self.m.handle_switched(open, self.now_ms());
                    // Connect before sending: the sends above are queued
                    // behind these connections in `apply`.
                    let failures = self.connect_segment().await;
                    out.splice(0..0, failures);
                    return out;
                }
                Ok(CasOutcome::Conflict(_)) => {
                    // Another writer of the record (a takeover bumping the
                    // epoch): the next read shows who owns the log now.
                    why = "the metadata record kept changing".into();
                    tokio::time::sleep(Duration::from_millis(CAS_RETRY_MS)).await;
                    continue;
                }
                Err(e) => {
                    why = format!("metadata CAS: {e}");
                    // The CAS may have been applied: the next attempt reads
                    // the record and either finds our switch (NotOpenLast on
                    // a record of our own epoch) or retries it.
                    log::warn!("log {log_id}: switch CAS: {e}");
                    if let Ok(v) = self.pool.meta().get_log(log_id).await {
                        if let Some(r) = v.record {
                            if let Some(done) = self.adopt_switch(&r, segment, seal_len) {
                                return done;
                            }
                        }
                    }
                    exclude.sort_unstable();
                    exclude.dedup();
                }
            }
        }
        // Not a takeover: say what happened. The first reason set is the
        // one every later append reports.
        let _ = self.fenced.set(format!(
            "log {log_id}: no segment switch away from segment {segment} within {} s ({why}); the producer stopped",
            SWITCH_PATIENCE_MS / 1000
        ));
        self.m.handle_fenced(self.m.epoch() + 1)
    }

    /// After a CAS whose outcome is unknown: if the record shows our own
    /// switch applied, continue on it.
    fn adopt_switch(
        &mut self,
        record: &LogMeta,
        segment: u64,
        seal_len: u64,
    ) -> Option<Vec<Action>> {
        let n = record.segments.len();
        if record.epoch != self.m.epoch() || n < 2 {
            return None;
        }
        let (sealed, last) = (&record.segments[n - 2], &record.segments[n - 1]);
        if sealed.id == segment && sealed.sealed_len == Some(seal_len) && last.sealed_len.is_none()
        {
            let open = OpenSegment {
                id: last.id,
                first_seq: last.first_seq,
                replicas: last.replicas.clone(),
            };
            return Some(self.m.handle_switched(open, self.now_ms()));
        }
        None
    }

    async fn seal_for_close(&mut self, segment: u64, len: u64) -> Vec<Action> {
        let log_id = self.m.log_id();
        let mut result = Err(ClientError::Log {
            log_id,
            why: "metadata kept changing while closing".into(),
        });
        for _ in 0..CAS_ATTEMPTS_MAX {
            let current = match self.pool.meta().get_log(log_id).await {
                Ok(v) => v,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            };
            let Some(record) = current.record else { break };
            match seal_last(&record, self.m.epoch(), segment, len) {
                Ok(next) => match self
                    .pool
                    .meta()
                    .cas_log(log_id, current.version, next)
                    .await
                {
                    Ok(CasOutcome::Applied { .. }) => {
                        result = Ok(());
                        break;
                    }
                    Ok(CasOutcome::Conflict(_)) => continue,
                    Err(e) => {
                        result = Err(e.into());
                        break;
                    }
                },
                Err(e) => {
                    result = Err(ClientError::Log {
                        log_id,
                        why: e.to_string(),
                    });
                    break;
                }
            }
        }
        let ok = result.is_ok();
        if let Some(closer) = self.closer.take() {
            let _ = closer.send(result);
        }
        if ok {
            self.m.handle_closed()
        } else {
            self.m.handle_fenced(self.m.epoch() + 1)
        }
    }
}
