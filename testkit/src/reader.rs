//! A consumer running beside the writers, for the fault tests and the
//! chaos run: it tails a log from a seq, records every entry it is given
//! (seq and payload id, in the order given), and stops once told where the
//! log ends. A consumer that gives up (too many failed reads in a row) is
//! reopened at its position, as an application would; each reopening is
//! counted and its reason kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use trilog_client::{ConnPool, Consumer, MetaStore};

use crate::payload::payload_id;
use crate::wait::{wait_for, TimedOut};

/// Long-poll of one `next_batch`.
const POLL_MS: u64 = 200;
/// Pause before reopening a consumer that gave up.
const REOPEN_PAUSE_MS: u64 = 100;

/// What a reader read.
#[derive(Debug, Clone, Default)]
pub struct Reads {
    /// (seq, payload id) in the order read.
    pub reads: Vec<(u64, Option<u64>)>,
    /// Times the consumer gave up and was reopened at its position.
    pub reopened: u32,
    pub errors: Vec<String>,
    /// The next seq it would have read.
    pub position: u64,
}

/// Unset end: read on.
const NO_END: u64 = u64::MAX;

struct Shared {
    end: AtomicU64,
    position: AtomicU64,
    /// Milliseconds after `started` at which to give up, once an end is set.
    deadline_ms: AtomicU64,
    started: Instant,
}

/// A consumer task.
pub struct Reader {
    shared: Arc<Shared>,
    task: JoinHandle<Reads>,
}

impl Reader {
    /// Opens a consumer of `log_id` at `from` and starts reading.
    pub async fn start(
        pool: ConnPool,
        log_id: u64,
        from: u64,
    ) -> Result<Reader, trilog_client::ClientError> {
        let consumer = Consumer::open(pool.clone(), log_id, from).await?;
        let shared = Arc::new(Shared {
            end: AtomicU64::new(NO_END),
            position: AtomicU64::new(from),
            deadline_ms: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        });
        let task = tokio::spawn(read_loop(pool, log_id, consumer, shared.clone()));
        Ok(Reader { shared, task })
    }

    /// The seq of the next entry it will read.
    pub fn position(&self) -> u64 {
        self.shared.position.load(Ordering::SeqCst)
    }

    /// Waits until the reader's position reaches `seq`.
    pub async fn wait_position(&self, seq: u64, timeout: Duration) -> Result<(), TimedOut> {
        let what = format!("the reader to reach seq {seq}");
        let position = &self.shared.position;
        let reached =
            move || std::future::ready((position.load(Ordering::SeqCst) >= seq).then_some(()));
        wait_for(&what, timeout, reached)
            .await
            .map_err(|e| TimedOut {
                what: format!("{} (at {})", e.what, self.position()),
                ..e
            })
    }

    /// Reads up to `end` (exclusive), at most `timeout` more, and returns
    /// what was read; an error if the end was not reached in time.
    pub async fn finish(self, end: u64, timeout: Duration) -> Result<Reads, (String, Reads)> {
        let at = self.shared.started.elapsed() + timeout;
        self.shared
            .deadline_ms
            .store(at.as_millis() as u64, Ordering::SeqCst);
        self.shared.end.store(end, Ordering::SeqCst);
        let reads = match self.task.await {
            Ok(r) => r,
            Err(e) => return Err((format!("reader task failed: {e}"), Reads::default())),
        };
        if reads.position < end {
            return Err((
                format!(
                    "reader stuck at {} of {end} after {} ms ({} reopenings; {:?})",
                    reads.position,
                    timeout.as_millis(),
                    reads.reopened,
                    reads.errors
                ),
                reads,
            ));
        }
        Ok(reads)
    }
}

async fn read_loop(
    pool: ConnPool,
    log_id: u64,
    mut consumer: Consumer,
    shared: Arc<Shared>,
) -> Reads {
    let mut out = Reads {
        position: consumer.position(),
        ..Reads::default()
    };
    loop {
        let end = shared.end.load(Ordering::SeqCst);
        if consumer.position() >= end {
            break;
        }
        let deadline_ms = shared.deadline_ms.load(Ordering::SeqCst);
        if shared.started.elapsed().as_millis() as u64 >= deadline_ms {
            break;
        }
        match consumer.next_batch(Duration::from_millis(POLL_MS)).await {
            Ok(batch) => {
                out.reads
                    .extend(batch.iter().map(|r| (r.seq, payload_id(&r.payload))));
                shared.position.store(consumer.position(), Ordering::SeqCst);
            }
            Err(e) => {
                let at = consumer.position();
                log::warn!("log {log_id}: consumer gave up at {at}: {e}; reopening it");
                out.errors.push(format!("at {at}: {e}"));
                out.reopened += 1;
                tokio::time::sleep(Duration::from_millis(REOPEN_PAUSE_MS)).await;
                match Consumer::open(pool.clone(), log_id, at).await {
                    Ok(c) => consumer = c,
                    Err(e) => out.errors.push(format!("reopen at {at}: {e}")),
                }
            }
        }
    }
    out.position = consumer.position();
    out
}

/// The number of entries in a log whose last segment is sealed (after its
/// producer closed), from the metadata; None while it is open.
pub async fn sealed_log_len(
    meta: &dyn MetaStore,
    log_id: u64,
) -> Result<Option<u64>, trilog_client::meta::MetaError> {
    let record = meta.get_log(log_id).await?.record;
    Ok(record.and_then(|r| {
        r.segments
            .last()
            .and_then(|s| s.sealed_len.map(|len| s.first_seq + len))
    }))
}

/// How long one read of [`read_segment_from`] may take.
const SEGMENT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads entries `[0, len)` of a segment from one node directly (not
/// through a consumer, which would pick a replica itself): the payloads,
/// each record's crc checked. An error says what went wrong: no
/// connection, a refusal, no progress, a bad record.
pub async fn read_segment_from(
    addr: std::net::SocketAddr,
    log_id: u64,
    segment: u64,
    len: u64,
) -> Result<Vec<Vec<u8>>, String> {
    use trilog_client::conn::NodeConn;
    use trilog_wire::message::Read;
    use trilog_wire::record::parse_records;
    use trilog_wire::Message;
    let conn = NodeConn::connect_tokio(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut out = Vec::new();
    while (out.len() as u64) < len {
        let req = Read {
            log_id,
            segment,
            from_offset: out.len() as u64,
            limit: len,
            max_bytes: 1 << 20,
            wait_ms: 0,
        };
        match conn.request(&req, SEGMENT_READ_TIMEOUT).await {
            Ok(Message::ReadResponse(r)) if r.count > 0 => {
                let parsed = parse_records(&r.records, r.from_offset, r.count)
                    .map_err(|e| format!("{addr}: {e}"))?;
                out.extend(parsed.into_iter().map(|(_, p)| p.to_vec()));
            }
            Ok(Message::ReadResponse(_)) => {
                return Err(format!("{addr}: no progress at {} of {len}", out.len()))
            }
            Ok(other) => return Err(format!("{addr}: read answered {other:?}")),
            Err(e) => return Err(format!("{addr}: read: {e}")),
        }
    }
    Ok(out)
}

/// [`read_segment_from`], as the payload ids of `crate::payload`.
pub async fn read_segment_ids_from(
    addr: std::net::SocketAddr,
    log_id: u64,
    segment: u64,
    len: u64,
) -> Result<Vec<u64>, String> {
    read_segment_from(addr, log_id, segment, len)
        .await?
        .iter()
        .map(|p| payload_id(p).ok_or_else(|| format!("{addr}: a payload without an id")))
        .collect()
}
