//! The consumer: reads a log from a seq on, from any one replica of each
//! segment, following the chain of segments and failing over between
//! replicas. A thin driver around [`trilog_protocol::consumer::Cursor`].

use std::time::Duration;

use bytes::Bytes;
use trilog_protocol::consumer::{Cursor, Step};
use trilog_wire::message::{ErrorCode, ErrorMsg, Read};
use trilog_wire::record::index_checked_records;
use trilog_wire::{Message, ReadResponseHead};

use crate::conn::{ReadRecords, Reply};
use crate::error::ClientError;
use crate::meta::Versioned;
use crate::pool::ConnPool;

/// Bytes asked for per read.
const READ_BYTES: u32 = 1 << 20;
/// Longest single long-poll on a replica.
const READ_WAIT_MS_MAX: u64 = 1_000;
/// Extra time a read may take over its long-poll before it is given up.
const READ_SLACK_MS: u64 = 2_000;
/// Consecutive failed reads before the consumer gives up.
const READ_FAILURES_MAX: u32 = 100;

/// One entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The entry's place in the log: the seq its append returned.
    pub seq: u64,
    /// The bytes appended, checked against the producer's crc32c: a slice
    /// of the read answer it came in (the records of one answer share its
    /// buffer; none is copied out of it). Holding one record holds its
    /// whole answer (up to the read size, 1 MiB); a caller that keeps a
    /// few records of many answers for long copies them out
    /// (`payload.to_vec()`).
    pub payload: Bytes,
}

/// A reader of one log.
///
/// It reads from a position on, and every batch it returns continues the
/// last: committed entries only, dense, in seq order, whatever replica
/// served them. It never writes: any number of consumers read a log
/// beside its producer. A consumer has no notion of the log's end: it
/// reads what is committed and waits for more ([`next_batch`] below
/// follows a log as it grows).
///
/// # Example: consume a range
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let cluster = trilog_testkit::in_process::InProcessCluster::start(3).await?;
/// # let pool = cluster.pool();
/// # let producer = trilog_client::Producer::open(pool.clone(), 2, Default::default()).await?;
/// # for i in 0..10 {
/// #     producer.append(format!("entry {i}").into_bytes()).await?;
/// # }
/// use std::time::Duration;
///
/// use trilog_client::Consumer;
///
/// // Log 2 holds entries 0..10; read seqs 3..7.
/// let (from, to) = (3, 7);
/// let mut consumer = Consumer::open(pool, 2, from).await?;
/// let mut range = Vec::new();
/// while consumer.position() < to {
///     let batch = consumer.next_batch(Duration::from_secs(5)).await?;
///     if batch.is_empty() {
///         return Err(format!("nothing past seq {} within 5 s", consumer.position()).into());
///     }
///     range.extend(batch.into_iter().filter(|r| r.seq < to));
/// }
/// let seqs: Vec<u64> = range.iter().map(|r| r.seq).collect();
/// assert_eq!(seqs, [3, 4, 5, 6]);
/// assert_eq!(range[0].payload, &b"entry 3"[..]);
/// # Ok(())
/// # }
/// ```
///
/// [`next_batch`]: Consumer::next_batch
#[derive(Debug)]
pub struct Consumer {
    pool: ConnPool,
    log_id: u64,
    cursor: Cursor,
    meta: Versioned,
    failures: u32,
}

impl Consumer {
    /// A consumer of `log_id` positioned at `seq`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Meta`] if the metadata store cannot be read. A log
    /// that does not exist yet is no error: the consumer waits for it.
    pub async fn open(pool: ConnPool, log_id: u64, seq: u64) -> Result<Consumer, ClientError> {
        // Spreads readers over the replicas.
        let turn = pool.runtime().random() as usize;
        Consumer::open_at_turn(pool, log_id, seq, turn).await
    }

    /// A consumer that reads each segment first from its replica at index
    /// `turn` (modulo the replica count), then fails over in order: for
    /// tests that must read a given replica first.
    pub async fn open_at_turn(
        pool: ConnPool,
        log_id: u64,
        seq: u64,
        turn: usize,
    ) -> Result<Consumer, ClientError> {
        let meta = pool.meta().get_log(log_id).await?;
        Ok(Consumer {
            pool,
            log_id,
            cursor: Cursor::new(seq, turn),
            meta,
            failures: 0,
        })
    }

    /// The seq of the next entry `next_batch` returns.
    pub fn position(&self) -> u64 {
        self.cursor.next_seq()
    }

    async fn refresh(&mut self, wait: Duration) -> Result<(), ClientError> {
        self.meta = if wait.is_zero() {
            self.pool.meta().get_log(self.log_id).await?
        } else {
            self.pool
                .meta()
                .watch_log(self.log_id, self.meta.version, wait)
                .await?
        };
        Ok(())
    }

    /// The next committed entries from the position on, in seq order;
    /// waits up to `wait` for some and returns an empty batch if none came.
    ///
    /// The wait is a long poll: a batch returns as soon as an entry past
    /// the position commits, so a loop of calls follows a log as it grows.
    /// An empty batch says nothing new committed within `wait`, not that
    /// the log ended. A replica that fails or serves damaged data is left
    /// for another replica of its segment, without an error.
    ///
    /// # Errors
    ///
    /// - [`ClientError::Trimmed`]: the position is below the log's trim
    ///   point. Those entries are gone for good; reopen at
    ///   `first_readable` if skipping them is acceptable.
    /// - [`ClientError::LogDeleted`]: give up.
    /// - [`ClientError::Damaged`]: no replica holds a good copy of the
    ///   entry at the position. Retrying serves nothing until a repair
    ///   restores a copy; an operator must look.
    /// - [`ClientError::BadData`], [`ClientError::Conn`]: every replica
    ///   failed, many reads in a row. [`ClientError::Meta`]: the metadata
    ///   store could not be read. The consumer is still usable: call again
    ///   later.
    ///
    /// # Example: tail a log
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let cluster = trilog_testkit::in_process::InProcessCluster::start(3).await?;
    /// # let pool = cluster.pool();
    /// use std::time::Duration;
    ///
    /// use trilog_client::{Consumer, Producer, ProducerOptions};
    ///
    /// // A writer appends 20 entries, one every 10 ms, in a task of its own.
    /// let producer = Producer::open(pool.clone(), 4, ProducerOptions::default()).await?;
    /// let writer = tokio::spawn(async move {
    ///     for i in 0..20u32 {
    ///         producer.append(i.to_be_bytes().to_vec()).await?;
    ///         tokio::time::sleep(Duration::from_millis(10)).await;
    ///     }
    ///     producer.close().await?;
    ///     Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// });
    ///
    /// // The reader follows the log from its start, as it grows.
    /// let mut tail = Consumer::open(pool, 4, 0).await?;
    /// let mut next = 0u32;
    /// while next < 20 {
    ///     // Returns as soon as something commits; empty after 1 s of
    ///     // silence (then just ask again).
    ///     for record in tail.next_batch(Duration::from_secs(1)).await? {
    ///         assert_eq!(record.seq, u64::from(next));
    ///         assert_eq!(record.payload, &next.to_be_bytes()[..]);
    ///         next += 1;
    ///     }
    /// }
    /// writer.await??;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_batch(&mut self, wait: Duration) -> Result<Vec<Record>, ClientError> {
        let rt = self.pool.runtime().clone();
        let deadline = rt.now() + wait;
        loop {
            let remaining = deadline.saturating_sub(rt.now());
            let step = match &self.meta.record {
                Some(r) => self.cursor.next_step(r),
                None => Step::WaitForMetadata,
            };
            match step {
                Step::Trimmed {
                    first_readable,
                    deleted,
                } => {
                    let log_id = self.log_id;
                    let seq = self.cursor.next_seq();
                    return Err(if deleted {
                        ClientError::LogDeleted { log_id }
                    } else {
                        ClientError::Trimmed {
                            log_id,
                            seq,
                            first_readable,
                        }
                    });
                }
                Step::Damaged { seq } => {
                    return Err(ClientError::Damaged {
                        log_id: self.log_id,
                        seq,
                    })
                }
                Step::WaitForMetadata => {
                    if remaining.is_zero() {
                        return Ok(Vec::new());
                    }
                    self.refresh(remaining).await?;
                }
                Step::Read {
                    segment,
                    node,
                    from_offset,
                    limit,
                } => {
                    let wait_ms = (remaining.as_millis() as u64).min(READ_WAIT_MS_MAX);
                    match self.read(segment, node, from_offset, limit, wait_ms).await {
                        Ok(ReadOutcome::Records(records)) => {
                            self.failures = 0;
                            return Ok(records);
                        }
                        Ok(ReadOutcome::Empty { sealed }) => {
                            self.failures = 0;
                            // A replica sealed, or silent for the whole
                            // poll: the metadata may know of a seal or a
                            // next segment.
                            if sealed || remaining.is_zero() {
                                self.refresh(Duration::ZERO).await?;
                            }
                            if remaining.is_zero() {
                                return Ok(Vec::new());
                            }
                        }
                        Ok(ReadOutcome::Missing) if self.cursor.on_replica_missing() => {
                            // An open segment not created on that replica
                            // yet (no entry so far): nothing to read, no
                            // failure. The metadata may know more.
                            if remaining.is_zero() {
                                self.refresh(Duration::ZERO).await?;
                                return Ok(Vec::new());
                            }
                        }
                        Ok(ReadOutcome::Missing) => {
                            self.failures += 1;
                            log::warn!(
                                "log {} segment {segment}: node {node} does not hold it; trying another replica",
                                self.log_id
                            );
                            self.cursor.on_replica_failed();
                            if self.failures >= READ_FAILURES_MAX {
                                return Err(ClientError::BadData {
                                    log_id: self.log_id,
                                    why: format!("segment {segment}: no replica holds it"),
                                });
                            }
                        }
                        Ok(ReadOutcome::Damaged { from }) => {
                            // Not a failure to wait out: the replica will
                            // not heal by itself. The cursor moves on (or
                            // says no replica holds the entry).
                            log::warn!(
                                "log {} segment {segment}: node {node} holds no good copy from offset {from}; reading another replica",
                                self.log_id
                            );
                            if !self.cursor.on_replica_damaged(segment, from) {
                                self.failures += 1;
                                self.cursor.on_replica_failed();
                            }
                        }
                        Err(e) => {
                            self.failures += 1;
                            log::warn!(
                                "log {} segment {segment}: read from node {node} failed ({e}); trying another replica",
                                self.log_id
                            );
                            self.cursor.on_replica_failed();
                            if self.failures >= READ_FAILURES_MAX {
                                return Err(e);
                            }
                            self.refresh(Duration::ZERO).await?;
                            if self.failures.is_multiple_of(3) {
                                // Every replica failed in turn: give them
                                // a moment (a restart, a partition).
                                rt.sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn read(
        &mut self,
        segment: u64,
        node: u64,
        from_offset: u64,
        limit: u64,
        wait_ms: u64,
    ) -> Result<ReadOutcome, ClientError> {
        let conn = self.pool.for_segment(node, self.log_id, segment).await?;
        let req = Read {
            log_id: self.log_id,
            segment,
            from_offset,
            limit,
            max_bytes: READ_BYTES,
            wait_ms: wait_ms as u32,
        };
        let answer = conn
            .request_reply(&req, Duration::from_millis(wait_ms + READ_SLACK_MS))
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.pool.forget(&conn).await;
                return Err(e.into());
            }
        };
        let bad = |why: String| ClientError::BadData {
            log_id: self.log_id,
            why,
        };
        match answer {
            Reply::Records(ReadRecords {
                head:
                    ReadResponseHead {
                        segment: seg,
                        from_offset: from,
                        count,
                        sealed_len,
                        ..
                    },
                records,
            }) => {
                if count == 0 {
                    if seg != segment || from != from_offset {
                        return Err(bad(format!("answer for segment {seg} offset {from}")));
                    }
                    return Ok(ReadOutcome::Empty {
                        sealed: sealed_len.is_some(),
                    });
                }
                // The answer's records stay in the frame they came in;
                // each payload is a slice of it. The frame decoder
                // checked their crcs with the frame's.
                let parsed =
                    index_checked_records(&records, from, count).map_err(|e| bad(e.to_string()))?;
                let first_seq = self
                    .cursor
                    .on_read(seg, from, u64::from(count))
                    .map_err(|e| bad(e.to_string()))?;
                Ok(ReadOutcome::Records(
                    parsed
                        .into_iter()
                        .enumerate()
                        .map(|(i, (_, payload))| Record {
                            seq: first_seq + i as u64,
                            payload: records.slice_ref(payload),
                        })
                        .collect(),
                ))
            }
            Reply::Msg(Message::ErrorMsg(ErrorMsg {
                code: ErrorCode::Damaged,
                segment: seg,
                value,
                ..
            })) if seg == segment => Ok(ReadOutcome::Damaged { from: value }),
            Reply::Msg(Message::ErrorMsg(ErrorMsg {
                code: ErrorCode::NotFound,
                segment: seg,
                ..
            })) if seg == segment => Ok(ReadOutcome::Missing),
            Reply::Msg(Message::ErrorMsg(ErrorMsg { code, message, .. })) => {
                Err(bad(format!("{code:?}: {message}")))
            }
            Reply::Msg(other) => Err(bad(format!("unexpected answer {:?}", other.kind()))),
            Reply::Lost(e) => Err(e.into()),
        }
    }
}

enum ReadOutcome {
    Records(Vec<Record>),
    /// The replica does not know the segment (`NotFound`).
    Missing,
    Empty {
        sealed: bool,
    },
    /// The replica does not hold the entries from `from` on.
    Damaged {
        from: u64,
    },
}
