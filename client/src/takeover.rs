//! Taking over a log whose last segment is open: its producer may be dead
//! or only slow. A thin driver around [`trilog_protocol::takeover`]: it
//! carries out what the machine asks for (metadata calls, fences, tail
//! reads, tail writes to the next segment's replicas, seals), hands every
//! answer back, sleeps until the machine's timer, and starts a
//! [`Producer`] where the machine says. Every decision (what a newer
//! epoch means, when to resend, when to give up, how to chunk the tail,
//! where to place) is the machine's.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use trilog_protocol::actions::Actions;
use trilog_protocol::producer::OpenSegment;
use trilog_protocol::takeover::{
    FenceAnswer, Takeover, TakeoverAction, TakeoverConfig, TakeoverStop,
};
use trilog_wire::limits::READ_BYTES_MAX;
use trilog_wire::message::{Append, AppendAck, Entry, Fence, Read, ReadResponse, Seal};
use trilog_wire::record::parse_records;
use trilog_wire::Message;

use crate::clock::Clock;
use crate::conn::{NodeConn, Reply};
use crate::error::ClientError;
use crate::pool::ConnPool;
use crate::producer::{Producer, ProducerOptions};
use crate::record_calls::{self, MetaAnswer, MetaCallFuture};

/// Answers of fences and tail reads queued for the driver.
const EVENT_QUEUE_MAX: usize = 1_024;
/// Answers of tail writes queued for the driver.
const REPLY_QUEUE_MAX: usize = 1_024;
/// The longest a request the machine is timing itself may stay out: the
/// machine's own timeouts are far shorter; this only bounds the tasks.
const REQUEST_TIMEOUT_MS_MAX: u64 = 60_000;

/// What a fence or a tail read answered.
enum Event {
    Fenced {
        replica: usize,
        answer: FenceAnswer,
    },
    Tail {
        replica: usize,
        from: u64,
        entries: Vec<Entry>,
    },
    TailFailed {
        replica: usize,
    },
}

/// How a takeover ended.
enum End {
    Done {
        epoch: u64,
        segment: OpenSegment,
        held: u64,
    },
    NothingOpen,
    Stopped(TakeoverStop),
}

impl Producer {
    /// Becomes the producer of `log_id`, fencing off whichever producer it
    /// had: the old one can commit nothing more, every entry it ever
    /// reported committed stays in the log with its seq, and its entries
    /// whose outcome it had not seen may or may not be kept. A log whose
    /// last segment is sealed (or that does not exist) is simply opened.
    ///
    /// It is how a log goes on after its producer's process died (or was
    /// cut off): [`Producer::open`] refuses a log whose last segment is
    /// open, since its producer may still be alive. A producer that was
    /// only slow learns of the takeover at its next append, which fails
    /// with [`AppendError`](crate::AppendError)`::Indeterminate`.
    ///
    /// Which of the old producer's unacknowledged entries were kept is
    /// settled once the takeover returns: read the log to learn it, after
    /// a [`close`](Producer::close) if the reader must see the end (the
    /// example below), and write again only what is missing.
    ///
    /// # Errors
    ///
    /// [`ClientError::Log`] if the takeover gave up: a newer takeover owns
    /// the log (leave it to that one), no replica of the open segment
    /// answered its fence in time (the log waits: try again later), or the
    /// record changed under it (try again).
    ///
    /// # Example: take a log over after its producer died
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let cluster = trilog_testkit::in_process::InProcessCluster::start(3).await?;
    /// use std::time::Duration;
    ///
    /// use trilog_client::{Consumer, Producer, ProducerOptions};
    ///
    /// // A writer appends three entries and has a fourth in flight when its
    /// // process dies: no close, the log's segment stays open.
    /// let old = Producer::open(cluster.pool(), 9, ProducerOptions::default()).await?;
    /// for i in 0..3 {
    ///     old.append(format!("txn {i}").into_bytes()).await?;
    /// }
    /// let unheard = old.submit(b"txn 3".to_vec()).await?;
    /// let old_epoch = old.epoch();
    /// drop((old, unheard));
    ///
    /// // Its successor (another process: another pool) may not simply
    /// // open the log: the old producer might be alive.
    /// let pool = cluster.pool();
    /// let opts = ProducerOptions::default();
    /// assert!(Producer::open(pool.clone(), 9, opts.clone()).await.is_err());
    ///
    /// // It takes the log over. `txn 0..=2` were acknowledged: they stay,
    /// // at seqs 0..=2. Whether `txn 3` stays is decided now.
    /// let new = Producer::takeover(pool.clone(), 9, opts.clone()).await?;
    /// assert!(new.epoch() > old_epoch);
    /// // Closing seals the log, so a reader sees where it ends.
    /// new.close().await?;
    ///
    /// let mut reader = Consumer::open(pool.clone(), 9, 0).await?;
    /// let mut kept = Vec::new();
    /// loop {
    ///     // Every segment is sealed: an empty batch is the end of the log.
    ///     let batch = reader.next_batch(Duration::from_millis(500)).await?;
    ///     if batch.is_empty() {
    ///         break;
    ///     }
    ///     kept.extend(batch.into_iter().map(|r| r.payload.to_vec()));
    /// }
    /// assert_eq!(kept[..3], [b"txn 0".to_vec(), b"txn 1".to_vec(), b"txn 2".to_vec()]);
    ///
    /// // Writes again what the takeover did not keep. The log's last
    /// // segment is sealed: a plain open continues it.
    /// let producer = Producer::open(pool, 9, opts).await?;
    /// if !kept.contains(&b"txn 3".to_vec()) {
    ///     assert_eq!(producer.append(b"txn 3".to_vec()).await?, 3);
    /// }
    /// producer.append(b"txn 4".to_vec()).await?;
    /// producer.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn takeover(
        pool: ConnPool,
        log_id: u64,
        opts: ProducerOptions,
    ) -> Result<Producer, ClientError> {
        pool.require(trilog_wire::Kind::Fence, "take a log over")?;
        let cfg = TakeoverConfig::new(opts.machine_config()?);
        cfg.validate()?;
        let clock = Clock::new(pool.runtime().clone());
        let (t, first) = Takeover::start(log_id, cfg, clock.now_ms());
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE_MAX);
        let (replies_tx, replies) = mpsc::channel(REPLY_QUEUE_MAX);
        let mut driver = Driver {
            t,
            pool: pool.clone(),
            clock,
            events_tx,
            replies_tx,
            tail_tags: Vec::new(),
            tail_conns: Vec::new(),
            meta: None,
        };
        match driver.run(first, events, replies).await {
            End::Done {
                epoch,
                segment,
                held,
            } => {
                log::info!(
                    "log {log_id}: taken over at epoch {epoch}; {held} entries carried to segment {}",
                    segment.id
                );
                Ok(Producer::start(pool, log_id, epoch, segment, held, None, opts).await)
            }
            End::NothingOpen => Producer::open(pool, log_id, opts).await,
            End::Stopped(reason) => Err(ClientError::Log {
                log_id,
                why: reason.to_string(),
            }),
        }
    }
}

/// Waits for the metadata call under way, or forever without one.
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

struct Driver {
    t: Takeover,
    pool: ConnPool,
    clock: Clock,
    events_tx: mpsc::Sender<Event>,
    replies_tx: mpsc::Sender<(u64, Reply)>,
    /// Tags of tail writes: the index of (node, segment) here.
    tail_tags: Vec<(u64, u64)>,
    /// Connections for tail writes, by (node, segment): every chunk of a
    /// node goes on one connection, in order.
    tail_conns: Vec<((u64, u64), NodeConn)>,
    /// The metadata call the machine asked for, under way.
    meta: Option<MetaCallFuture>,
}

impl Driver {
    fn log_id(&self) -> u64 {
        self.t.log_id()
    }

    async fn run(
        &mut self,
        first: Actions<TakeoverAction>,
        mut events: mpsc::Receiver<Event>,
        mut replies: mpsc::Receiver<(u64, Reply)>,
    ) -> End {
        let mut queue: VecDeque<TakeoverAction> = first.into_iter().collect();
        loop {
            while let Some(action) = queue.pop_front() {
                match self.apply(action).await {
                    Ok(more) => queue.extend(more),
                    Err(end) => return end,
                }
            }
            let timer = self.t.poll_timeout();
            let clock = self.clock.clone();
            // In a fixed order, so a run replays: a due timer first.
            let more = tokio::select! {
                biased;
                () = clock.sleep_until(timer) => self.t.handle_timeout(self.clock.now_ms()),
                Some(event) = events.recv() => self.on_event(event),
                Some((tag, reply)) = replies.recv() => self.on_tail_reply(tag, reply),
                answer = meta_answer(&mut self.meta) => {
                    let now = self.clock.now_ms();
                    match answer {
                        MetaAnswer::Record(r) => self.t.handle_record(r, now),
                        MetaAnswer::Cas(c) => self.t.handle_cas(c, now),
                    }
                }
            };
            queue.extend(more);
        }
    }

    /// Carries out one action; `Err` when the takeover ended.
    async fn apply(&mut self, action: TakeoverAction) -> Result<Actions<TakeoverAction>, End> {
        match action {
            TakeoverAction::Meta(call) => {
                assert!(self.meta.is_none(), "one metadata call at a time");
                self.meta = Some(record_calls::start(&self.pool, self.log_id(), call));
            }
            TakeoverAction::Fence {
                replica,
                node,
                segment,
                epoch,
            } => self.fence(replica, node, segment, epoch),
            TakeoverAction::ReadTail {
                replica,
                node,
                segment,
                from,
                to,
            } => self.read_tail(replica, node, segment, from, to),
            TakeoverAction::WriteTail {
                node,
                segment,
                epoch,
                first_seq,
                first_offset,
                count,
            } => {
                let append = Append {
                    log_id: self.log_id(),
                    segment,
                    epoch,
                    first_seq,
                    first_offset,
                    commit: 0,
                    entries: self.t.tail_entries(first_offset, count).to_vec(),
                };
                return Ok(self.write_tail(node, append).await);
            }
            TakeoverAction::Seal {
                node,
                segment,
                epoch,
                len,
            } => self.tell_seal(node, segment, epoch, len),
            TakeoverAction::Done {
                epoch,
                segment,
                held,
            } => {
                return Err(End::Done {
                    epoch,
                    segment,
                    held,
                })
            }
            TakeoverAction::NothingOpen => return Err(End::NothingOpen),
            TakeoverAction::Stopped(reason) => return Err(End::Stopped(reason)),
        }
        Ok(Actions::new())
    }

    fn on_event(&mut self, event: Event) -> Actions<TakeoverAction> {
        let now = self.clock.now_ms();
        match event {
            Event::Fenced { replica, answer } => self.t.handle_fence_answer(replica, answer, now),
            Event::Tail {
                replica,
                from,
                entries,
            } => self.t.handle_tail(replica, from, entries, now),
            Event::TailFailed { replica } => self.t.handle_tail_failure(replica, now),
        }
    }

    /// Sends one fence; only an answer is an event (an error leaves the
    /// fence unanswered, and the machine resends it on its timer).
    fn fence(&self, replica: usize, node: u64, segment: u64, epoch: u64) {
        let (pool, events, log_id) = (self.pool.clone(), self.events_tx.clone(), self.log_id());
        self.pool.runtime().spawn(Box::pin(async move {
            let conn = match pool.for_segment(node, log_id, segment).await {
                Ok(c) => c,
                Err(e) => return log::warn!("log {log_id}: fence of node {node}: {e}"),
            };
            let fence = Fence {
                log_id,
                segment,
                epoch,
            };
            let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS_MAX);
            match conn.request(&fence, timeout).await {
                Ok(Message::FenceAck(a)) => {
                    let answer = FenceAnswer {
                        epoch: a.epoch,
                        durable_len: a.durable_len,
                        watermark: a.watermark,
                        sealed_len: a.sealed_len,
                    };
                    let _ = events.send(Event::Fenced { replica, answer }).await;
                }
                Ok(other) => log::warn!("log {log_id}: fence of node {node} answered {other:?}"),
                Err(e) => {
                    pool.forget(&conn).await;
                    log::warn!("log {log_id}: fence of node {node}: {e}");
                }
            }
        }));
    }

    /// Reads entries `[from, to)` of a segment from one replica; what it
    /// serves (checked against the producer's crcs) or its failure is an
    /// event.
    fn read_tail(&self, replica: usize, node: u64, segment: u64, from: u64, to: u64) {
        let (pool, events, log_id) = (self.pool.clone(), self.events_tx.clone(), self.log_id());
        self.pool.runtime().spawn(Box::pin(async move {
            let event = match read_entries(&pool, log_id, node, segment, from, to).await {
                Ok((from, entries)) => Event::Tail {
                    replica,
                    from,
                    entries,
                },
                Err(e) => {
                    log::warn!("log {log_id}: tail read from node {node}: {e}");
                    Event::TailFailed { replica }
                }
            };
            let _ = events.send(event).await;
        }));
    }

    /// Sends one chunk of the tail to `node`, on the one connection that
    /// carries that node's chunks in order; its answer comes back tagged.
    async fn write_tail(&mut self, node: u64, append: Append) -> Actions<TakeoverAction> {
        let segment = append.segment;
        let tag = self.tail_tag(node, segment);
        let sent = match self.tail_conn(node, segment).await {
            Ok(conn) => conn
                .send_tagged(&append, &self.replies_tx, tag)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => Actions::new(),
            Err(why) => {
                log::warn!(
                    "log {}: writing the tail to node {node}: {why}",
                    self.log_id()
                );
                let now = self.clock.now_ms();
                self.t.handle_tail_write_failure(node, segment, now)
            }
        }
    }

    fn tail_tag(&mut self, node: u64, segment: u64) -> u64 {
        let found = self.tail_tags.iter().position(|k| *k == (node, segment));
        let i = found.unwrap_or_else(|| {
            self.tail_tags.push((node, segment));
            self.tail_tags.len() - 1
        });
        i as u64
    }

    async fn tail_conn(&mut self, node: u64, segment: u64) -> Result<NodeConn, ClientError> {
        let key = (node, segment);
        if let Some((_, c)) = self
            .tail_conns
            .iter()
            .find(|(k, c)| *k == key && !c.is_closed())
        {
            return Ok(c.clone());
        }
        let conn = self.pool.for_segment(node, self.log_id(), segment).await?;
        self.tail_conns.retain(|(k, _)| *k != key);
        self.tail_conns.push((key, conn.clone()));
        Ok(conn)
    }

    /// The answer to a chunk of the tail.
    fn on_tail_reply(&mut self, tag: u64, reply: Reply) -> Actions<TakeoverAction> {
        let Some(&(node, segment)) = self.tail_tags.get(tag as usize) else {
            unreachable!("a tag this driver gave out");
        };
        let now = self.clock.now_ms();
        match reply {
            Reply::Msg(Message::AppendAck(AppendAck { durable_len, .. })) => {
                self.t.handle_tail_ack(node, segment, durable_len, now)
            }
            other => {
                log::warn!(
                    "log {}: writing the tail to node {node}: {other:?}",
                    self.log_id()
                );
                self.t.handle_tail_write_failure(node, segment, now)
            }
        }
    }

    /// Best effort: the old segment's replicas learn of the seal.
    fn tell_seal(&self, node: u64, segment: u64, epoch: u64, len: u64) {
        let (pool, log_id) = (self.pool.clone(), self.log_id());
        self.pool.runtime().spawn(Box::pin(async move {
            if let Ok(c) = pool.for_segment(node, log_id, segment).await {
                let seal = Seal {
                    log_id,
                    segment,
                    epoch,
                    len,
                };
                let _ = c
                    .request(&seal, Duration::from_millis(REQUEST_TIMEOUT_MS_MAX))
                    .await;
            }
        }));
    }
}

/// Reads entries of a segment from `from` up to `to` (a limit) from one
/// replica, as entries with the producer's crcs (checked); returns the
/// offset they start at.
async fn read_entries(
    pool: &ConnPool,
    log_id: u64,
    node: u64,
    segment: u64,
    from: u64,
    to: u64,
) -> Result<(u64, Vec<Entry>), ClientError> {
    let conn = pool.for_segment(node, log_id, segment).await?;
    let req = Read {
        log_id,
        segment,
        from_offset: from,
        limit: to,
        max_bytes: READ_BYTES_MAX,
        wait_ms: 0,
    };
    let bad = |why: String| ClientError::BadData { log_id, why };
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS_MAX);
    match conn.request(&req, timeout).await? {
        Message::ReadResponse(ReadResponse {
            from_offset,
            count,
            records,
            ..
        }) => {
            let parsed =
                parse_records(&records, from_offset, count).map_err(|e| bad(e.to_string()))?;
            let entries = parsed
                .into_iter()
                .map(|(_, p)| Entry::new(p.to_vec()))
                .collect();
            Ok((from_offset, entries))
        }
        Message::ErrorMsg(e) => Err(bad(format!("{:?}: {}", e.code, e.message))),
        other => Err(bad(format!("unexpected answer {:?}", other.kind()))),
    }
}
