//! The producer: appends to a log, pipelined to the replicas of its open
//! segment. A thin driver around [`trilog_protocol::producer`]: it moves
//! entries from callers into the machine, carries out what the machine
//! asks for (frames to replicas, connections, metadata calls, its timer)
//! and hands every answer back. It decides nothing about the protocol:
//! when to switch, what an unknown metadata outcome means, when to stop
//! and why are the machine's.

mod driver;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use trilog_protocol::opener::{OpenAction, OpenedView, Opener};
use trilog_protocol::producer::{OpenSegment, Producer as Machine, ProducerConfig, StopReason};
use trilog_wire::limits::ENTRY_BYTES_MAX;
use trilog_wire::message::Entry;

use crate::clock::Clock;
use crate::error::{AppendError, ClientError};
use crate::pool::ConnPool;
use crate::record_calls::{self, MetaAnswer};
use driver::Driver;

/// Queued commands between callers and the driver.
const COMMAND_QUEUE_MAX: usize = 65_536;
/// Replica answers queued for the driver; past it the connections' readers
/// wait (back-pressure on the sockets), never the driver.
const REPLY_QUEUE_MAX: usize = 4_096;

/// How a producer behaves.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// The machine's limits and timers (its `replicas` and `seed` are
    /// taken from the fields below).
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

impl ProducerOptions {
    /// The machine's configuration, checked against the wire's limits.
    pub(crate) fn machine_config(&self) -> Result<ProducerConfig, ClientError> {
        let cfg = ProducerConfig {
            replicas: self.replicas,
            seed: self.seed,
            ..self.config
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

type Completion = oneshot::Sender<Result<u64, AppendError>>;

enum Cmd {
    /// An entry, who waits for it, its share of the budget, and when it
    /// was submitted (for the append latency, `crate::metrics`).
    Append(Entry, Completion, OwnedSemaphorePermit, std::time::Instant),
    Close(oneshot::Sender<Result<(), ClientError>>),
}

/// An append in flight: resolves to the entry's seq once it is committed
/// on every replica, or to [`AppendError::Indeterminate`] if the producer
/// stopped first (the entry may or may not be in the log).
///
/// Dropping it does not withdraw the entry: it is written all the same,
/// and only its outcome goes unheard.
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
///
/// A log has one producer at a time, at an epoch of its own: a producer
/// opened later on the same log ([`Producer::open`] of a log left sealed,
/// or [`Producer::takeover`]) fences every earlier one off. Entries are
/// pipelined: [`submit`](Producer::submit) takes an entry and returns at
/// once with a future of its outcome, so many appends are in flight
/// (batched onto the replicas, in order); [`append`](Producer::append) is
/// `submit` and the wait in one call. Seqs are dense and given in the
/// order entries were taken.
///
/// Share it between tasks behind an `Arc`: every method but
/// [`close`](Producer::close) takes `&self`.
///
/// # Example: produce
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let cluster = trilog_testkit::in_process::InProcessCluster::start(3).await?;
/// # let pool = cluster.pool();
/// use trilog_client::{Producer, ProducerOptions};
///
/// // Creates log 7 on 3 of the cluster's nodes (or continues it at a new
/// // epoch, had an earlier producer closed it).
/// let producer = Producer::open(pool, 7, ProducerOptions::default()).await?;
///
/// // One entry, waiting for its commit: durable on every replica.
/// let seq = producer.append(b"row 0".to_vec()).await?;
/// assert_eq!(seq, 0);
///
/// // Many in flight: `submit` waits only while too many bytes are
/// // uncommitted (`ProducerOptions::in_flight_bytes_max`), and each
/// // future resolves once its entry is committed.
/// let mut pending = Vec::new();
/// for i in 1..=100 {
///     pending.push(producer.submit(format!("row {i}").into_bytes()).await?);
/// }
/// for (i, committed) in (1..).zip(pending) {
///     assert_eq!(committed.await?, i, "seqs follow the order of submit");
/// }
///
/// // Seals the log's open segment once everything is committed, so the
/// // next producer opens it without a takeover.
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Producer {
    log_id: u64,
    epoch: u64,
    cmds: mpsc::Sender<Cmd>,
    budget: Arc<Semaphore>,
    budget_max: usize,
    /// Set by the driver when the machine stopped for another reason than
    /// a close, before the driver ends: a later `submit` then fails the way
    /// an append taken while the driver still ran does (`Indeterminate`,
    /// with the machine's reason), not with `Closed`.
    stopped: Arc<OnceLock<StopReason>>,
}

impl Producer {
    /// Opens `log_id` for writing: creates it, or continues it with a new
    /// epoch and a new segment if its last segment is sealed.
    ///
    /// # Errors
    ///
    /// - [`ClientError::Log`], with the reason in its message:
    ///   - the log's last segment is open: its producer did not close it,
    ///     and may be alive. If it is known dead (or must be stopped),
    ///     [`Producer::takeover`] is the way on; the same if the open's
    ///     own outcome became unknown;
    ///   - the open did not go through within the producer's patience
    ///     (`ProducerConfig::meta_patience_ms`): the metadata store did
    ///     not answer, or fewer writable nodes than replicas were alive.
    ///     Worth another try later;
    ///   - the log was deleted: it is never written again.
    /// - [`ClientError::Config`] if `opts` are invalid; nothing was sent.
    pub async fn open(
        pool: ConnPool,
        log_id: u64,
        opts: ProducerOptions,
    ) -> Result<Producer, ClientError> {
        pool.require(trilog_wire::Kind::Append, "append")?;
        crate::metrics::describe();
        let cfg = opts.machine_config()?;
        let clock = Clock::new(pool.runtime().clone());
        let (mut opener, first) = Opener::start(log_id, cfg, clock.now_ms());
        let mut queue: VecDeque<OpenAction> = first.into_iter().collect();
        loop {
            while let Some(action) = queue.pop_front() {
                let call = match action {
                    OpenAction::Meta(call) => call,
                    OpenAction::Opened {
                        epoch,
                        segment,
                        view,
                    } => {
                        return Ok(
                            Self::start(pool, log_id, epoch, segment, 0, Some(view), opts).await,
                        );
                    }
                    OpenAction::Failed(f) => {
                        return Err(ClientError::Log {
                            log_id,
                            why: f.to_string(),
                        })
                    }
                };
                let more = match record_calls::start(&pool, log_id, call).await {
                    MetaAnswer::Record(r) => opener.handle_record(r, clock.now_ms()),
                    MetaAnswer::Cas(c) => opener.handle_cas(c, clock.now_ms()),
                };
                queue.extend(more);
            }
            // Nothing out: the opener waits for its next round.
            let Some(at) = opener.poll_timeout() else {
                unreachable!("an opener with no call out waits for its timer");
            };
            clock.sleep_until(Some(at)).await;
            queue.extend(opener.handle_timeout(clock.now_ms()));
        }
    }

    /// Starts the driver of a producer at `epoch` on `segment` (published
    /// by this producer's CAS), whose first `held` entries are already
    /// durable on every replica (a takeover's tail). `view` is the record
    /// as the CAS stored it and the nodes alive then, if the caller has
    /// them: the producer then does not read the record again at once.
    pub(crate) async fn start(
        pool: ConnPool,
        log_id: u64,
        epoch: u64,
        segment: OpenSegment,
        held: u64,
        view: Option<OpenedView>,
        opts: ProducerOptions,
    ) -> Producer {
        let cfg = match opts.machine_config() {
            Ok(cfg) => cfg,
            Err(e) => panic!("the options were checked before the open: {e}"),
        };
        let mut machine = Machine::new(log_id, epoch, segment, held, cfg);
        let clock = Clock::new(pool.runtime().clone());
        if let Some(v) = view {
            machine.set_view(v.version, v.record, v.alive, clock.now_ms());
        }
        let (cmds, cmd_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE_MAX);
        let (reconnected_tx, reconnected_rx) = mpsc::channel(driver::RECONNECT_QUEUE_MAX);
        let stopped = Arc::new(OnceLock::new());
        let mut driver = Driver {
            m: machine,
            clock,
            pool,
            conns: Vec::new(),
            generations: Vec::new(),
            unreachable: Vec::new(),
            reconnected_tx,
            conns_segment: None,
            replies_tx,
            waiters: VecDeque::new(),
            connected_once: false,
            closer: None,
            last_append: None,
            stopped: stopped.clone(),
            meta: None,
            seals_told: Vec::new(),
            standby_for: None,
        };
        let first = driver.m.begin(driver.clock.now_ms());
        driver.apply(first).await;
        let rt = driver.pool.runtime().clone();
        rt.spawn(Box::pin(driver.run(cmd_rx, replies_rx, reconnected_rx)));
        Producer {
            log_id,
            epoch,
            cmds,
            budget: Arc::new(Semaphore::new(opts.in_flight_bytes_max)),
            budget_max: opts.in_flight_bytes_max,
            stopped,
        }
    }

    /// Why a command could not reach the driver: it stopped or closed.
    fn gone(&self) -> AppendError {
        match self.stopped.get() {
            Some(why) => AppendError::Indeterminate {
                why: why.to_string(),
            },
            None => AppendError::Closed,
        }
    }

    /// Why the producer stopped, if it stopped for another reason than a
    /// close: the machine's own account ([`StopReason`]), which says
    /// whether the log was really taken over.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stopped.get().cloned()
    }

    /// The log this producer writes.
    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    /// This producer's epoch: higher than that of every producer the log
    /// had before it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Takes an entry, waiting while too many bytes are in flight
    /// (back-pressure). The returned future resolves once it is committed.
    ///
    /// # Errors
    ///
    /// [`AppendError::TooLarge`] for an entry over the wire's limit
    /// (nothing sent; the producer goes on), and the producer's end:
    /// [`AppendError::Indeterminate`] once it stopped (see
    /// [`stop_reason`](Producer::stop_reason)).
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
            .map_err(|_| self.gone())?;
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Append(
                Entry::new(payload),
                tx,
                permit,
                std::time::Instant::now(),
            ))
            .await
            .map_err(|_| self.gone())?;
        Ok(AppendFuture(rx))
    }

    /// Appends one entry and waits until it is committed; returns its seq.
    ///
    /// # Errors
    ///
    /// As [`submit`](Producer::submit), and
    /// [`AppendError::Indeterminate`] if the producer stopped while the
    /// entry was in flight.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, AppendError> {
        self.submit(payload).await?.await
    }

    /// Waits for every entry to commit, then seals the segment so the next
    /// producer starts cleanly.
    ///
    /// # Errors
    ///
    /// [`ClientError::Log`] if the producer stopped before or while
    /// closing (taken over, or the seal did not go through within its
    /// patience): the log's last segment may still be open, and the next
    /// writer must take it over.
    pub async fn close(self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close(tx)).await.is_err() {
            return Err(ClientError::Log {
                log_id: self.log_id,
                why: match self.stopped.get() {
                    Some(why) => why.to_string(),
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

/// The nodes a new segment may be placed on, with their zones: alive and
/// not read-only for a full disk ([`writable_nodes`]), fresh from the store.
pub(crate) async fn alive_nodes(
    pool: &ConnPool,
) -> Result<Vec<trilog_protocol::placement::Candidate>, ClientError> {
    Ok(writable_nodes(&pool.refresh_nodes().await?))
}

/// The registered nodes a new segment or a new replica may go to: alive,
/// and not full (`trilog_protocol::placement::writable_candidates`).
pub fn writable_nodes(
    nodes: &[trilog_wire::meta::NodeStatus],
) -> Vec<trilog_protocol::placement::Candidate> {
    trilog_protocol::placement::writable_candidates(nodes)
}

#[cfg(test)]
mod tests {
    use trilog_wire::limits::APPEND_BYTES_MAX;

    use super::*;

    #[test]
    fn options_past_the_wire_limits_are_refused_before_anything_is_sent() {
        let opts = ProducerOptions {
            replicas: 5,
            seed: 9,
            ..ProducerOptions::default()
        };
        let cfg = opts.machine_config().expect("the defaults are valid");
        assert_eq!(
            (cfg.replicas, cfg.seed),
            (5, 9),
            "the options' own fields win"
        );
        let mut big = ProducerOptions::default();
        big.config.batch_bytes_max = APPEND_BYTES_MAX + 1;
        assert!(
            matches!(big.machine_config(), Err(ClientError::Config(_))),
            "a batch no frame can carry"
        );
        let none = ProducerOptions {
            replicas: 0,
            ..ProducerOptions::default()
        };
        assert!(matches!(none.machine_config(), Err(ClientError::Config(_))));
    }
}
