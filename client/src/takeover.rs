//! Taking over a log whose last segment is open: its producer may be dead
//! or only slow. A thin driver around [`trilog_protocol::takeover`]: it
//! bumps the epoch, sends the fences, reads the tail, writes the tail to
//! the next segment's replicas, runs the sealing CAS that publishes that
//! segment, and starts a [`Producer`] on it after the tail.

use std::time::Duration;

use tokio::sync::mpsc;
use trilog_protocol::metadata::{bump_epoch, switch_segment, MetaRefusal};
use trilog_protocol::placement::choose_replicas;
use trilog_protocol::takeover::{FenceAnswer, Takeover, TakeoverAction};
use trilog_wire::limits::{APPEND_BYTES_MAX, APPEND_ENTRIES_MAX};
use trilog_wire::message::{
    Append, AppendAck, Entry, ErrorMsg, Fence, FenceAck, Read, ReadResponse, Seal,
};
use trilog_wire::meta::LogMeta;
use trilog_wire::record::parse_records;
use trilog_wire::Message;

use crate::error::ClientError;
use crate::meta::CasOutcome;
use crate::pool::ConnPool;
use crate::producer::{alive_nodes, Producer, ProducerOptions};

/// How long one fence or tail read may take before it is sent again.
const FENCE_TIMEOUT_MS: u64 = 2_000;
/// How long a takeover waits, in all, for a fence answer: with none, the
/// entries of the open segment may be committed and nothing else holds
/// them, so the log must wait (and the caller may try again).
const FENCE_WAIT_MS_MAX: u64 = 60_000;
/// Bytes per tail read.
const TAIL_READ_BYTES: u32 = 4 << 20;
/// Metadata CAS attempts.
const CAS_ATTEMPTS_MAX: u32 = 50;
/// How long writing the tail to one new replica may take.
const TAIL_WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause between attempts to find enough healthy nodes for the next
/// segment, and how many attempts.
const PLACEMENT_RETRY_MS: u64 = 100;
const PLACEMENT_ATTEMPTS_MAX: u32 = 300;

/// What a new replica said about the tail written to it.
enum TailWrite {
    Durable { node: u64, segment: u64, len: u64 },
    Failed { node: u64, segment: u64 },
}

impl Producer {
    /// Becomes the producer of `log_id`, fencing off whichever producer it
    /// had: the old one can commit nothing more, every entry it ever
    /// reported committed stays in the log with its seq, and its entries
    /// whose outcome it had not seen may or may not be kept. A log whose
    /// last segment is sealed (or that does not exist) is simply opened.
    pub async fn takeover(
        pool: ConnPool,
        log_id: u64,
        opts: ProducerOptions,
    ) -> Result<Producer, ClientError> {
        let log_err = |why: String| ClientError::Log { log_id, why };
        // 1. The epoch bump.
        let mut bumped = None;
        for _ in 0..CAS_ATTEMPTS_MAX {
            let current = pool.meta().get_log(log_id).await?;
            let Some(record) = current.record else {
                return Producer::open(pool, log_id, opts).await;
            };
            if record
                .segments
                .last()
                .is_none_or(|s| s.sealed_len.is_some())
            {
                return Producer::open(pool, log_id, opts).await;
            }
            let next = bump_epoch(&record);
            if let CasOutcome::Applied { .. } = pool
                .meta()
                .cas_log(log_id, current.version, next.clone())
                .await?
            {
                bumped = Some(next);
                break;
            }
        }
        let Some(record) = bumped else {
            return Err(log_err(
                "metadata kept changing during the epoch bump".into(),
            ));
        };
        let Some(segment) = record.segments.last().cloned() else {
            return Err(log_err("no segment after the epoch bump".into()));
        };
        log::info!(
            "log {log_id}: epoch {} taking over open segment {} on {:?}",
            record.epoch,
            segment.id,
            segment.replicas
        );
        let (mut t, fences) = Takeover::start(log_id, record.epoch, segment);
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Option<FenceAck>)>();
        let (tail_tx, mut tail_rx) = mpsc::unbounded_channel::<TailWrite>();
        send_fences(&pool, log_id, fences, &tx);
        let mut seed = opts.seed;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(FENCE_WAIT_MS_MAX);
        let mut pending: Vec<TakeoverAction> = Vec::new();
        // 2. Fences, until the machine has a seal point and a tail source.
        loop {
            if let Some(action) = pending.pop() {
                match action {
                    TakeoverAction::Fence { .. } => send_fences(&pool, log_id, vec![action], &tx),
                    TakeoverAction::ReadTail {
                        replica,
                        node,
                        segment,
                        from,
                        to,
                    } => match read_tail(&pool, log_id, node, segment, from, to).await {
                        Ok(entries) => pending.extend(t.handle_tail(from, entries)),
                        Err(e) => {
                            log::warn!("log {log_id}: tail read from node {node}: {e}");
                            pending.extend(t.handle_tail_failure(replica));
                        }
                    },
                    TakeoverAction::PlaceNext { exclude } => {
                        // 3. The next segment's replicas, which get the
                        // tail before the metadata names them.
                        let nodes =
                            place_next(&pool, log_id, &exclude, opts.replicas, &mut seed).await?;
                        pending.extend(t.placed(nodes));
                    }
                    TakeoverAction::WriteTail {
                        node,
                        segment,
                        first_seq,
                        ..
                    } => {
                        let append = Append {
                            log_id,
                            segment,
                            epoch: record.epoch,
                            first_seq,
                            first_offset: 0,
                            commit: 0,
                            entries: Vec::new(),
                        };
                        write_tail(&pool, node, append, t.tail().to_vec(), &tail_tx);
                    }
                    TakeoverAction::SealAndOpen {
                        segment,
                        seal_len,
                        replicas,
                    } => {
                        // 4. The seal and the next segment, one CAS.
                        let next_id = t.next_id();
                        let next = seal_and_open(
                            &pool,
                            log_id,
                            record.epoch,
                            segment,
                            seal_len,
                            &replicas,
                            next_id,
                        )
                        .await?;
                        let (_, tail) = t.finish();
                        log::info!(
                            "log {log_id}: segment {segment} sealed at {seal_len}; {} entries carried to segment {next_id}",
                            tail.len(),
                        );
                        tell_seal(
                            &pool,
                            log_id,
                            record.epoch,
                            t.segment().replicas.clone(),
                            segment,
                            seal_len,
                        );
                        return Ok(Producer::start(pool, next, tail.len() as u64, opts).await);
                    }
                }
                continue;
            }
            let timeout = tokio::time::sleep(Duration::from_millis(FENCE_TIMEOUT_MS));
            tokio::select! {
                Some(w) = tail_rx.recv() => match w {
                    TailWrite::Durable { node, segment, len } => {
                        pending.extend(t.handle_tail_ack(node, segment, len));
                    }
                    TailWrite::Failed { node, segment } => {
                        pending.extend(t.handle_tail_write_failure(node, segment));
                    }
                },
                Some((replica, answer)) = rx.recv() => {
                    if let Some(a) = answer {
                        if a.epoch > record.epoch {
                            return Err(log_err(format!("a newer takeover (epoch {}) is under way", a.epoch)));
                        }
                        pending.extend(t.handle_fence_answer(replica, FenceAnswer {
                            durable_len: a.durable_len,
                            watermark: a.watermark,
                            sealed_len: a.sealed_len,
                        }));
                    }
                }
                _ = timeout => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(log_err(format!(
                            "no replica of segment {} answered the fence within {FENCE_WAIT_MS_MAX} ms; the log waits",
                            t.segment().id
                        )));
                    }
                    pending.extend(t.fences());
                }
            }
        }
    }
}

fn send_fences(
    pool: &ConnPool,
    log_id: u64,
    fences: Vec<TakeoverAction>,
    tx: &mpsc::UnboundedSender<(usize, Option<FenceAck>)>,
) {
    for f in fences {
        let TakeoverAction::Fence {
            replica,
            node,
            segment,
            epoch,
        } = f
        else {
            continue;
        };
        let pool = pool.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let answer = async {
                let conn = pool.for_segment(node, log_id, segment).await.ok()?;
                let fence = Fence {
                    log_id,
                    segment,
                    epoch,
                };
                match conn
                    .request(&fence, Duration::from_millis(FENCE_TIMEOUT_MS))
                    .await
                {
                    Ok(Message::FenceAck(a)) => Some(a),
                    Ok(other) => {
                        log::warn!("log {log_id}: fence of node {node} answered {other:?}");
                        None
                    }
                    Err(e) => {
                        pool.forget(&conn).await;
                        log::warn!("log {log_id}: fence of node {node}: {e}");
                        None
                    }
                }
            }
            .await;
            let _ = tx.send((replica, answer));
        });
    }
}

/// Reads entries `[from, to)` of a segment from one replica, as entries
/// with the producer's crcs (checked).
async fn read_tail(
    pool: &ConnPool,
    log_id: u64,
    node: u64,
    segment: u64,
    from: u64,
    to: u64,
) -> Result<Vec<Entry>, ClientError> {
    let conn = pool.for_segment(node, log_id, segment).await?;
    let req = Read {
        log_id,
        segment,
        from_offset: from,
        limit: to,
        max_bytes: TAIL_READ_BYTES,
        wait_ms: 0,
    };
    let bad = |why: String| ClientError::BadData { log_id, why };
    match conn
        .request(&req, Duration::from_millis(FENCE_TIMEOUT_MS))
        .await?
    {
        Message::ReadResponse(ReadResponse {
            from_offset,
            count,
            records,
            ..
        }) => {
            if from_offset != from || count == 0 {
                return Err(bad(format!(
                    "tail read at {from} answered {count} entries at {from_offset}"
                )));
            }
            let parsed =
                parse_records(&records, from_offset, count).map_err(|e| bad(e.to_string()))?;
            Ok(parsed
                .into_iter()
                .map(|(_, p)| Entry::new(p.to_vec()))
                .collect())
        }
        Message::ErrorMsg(ErrorMsg { code, message, .. }) => {
            Err(bad(format!("{code:?}: {message}")))
        }
        other => Err(bad(format!("unexpected answer {:?}", other.kind()))),
    }
}

/// Chooses the next segment's replicas among the live nodes, leaving out
/// `exclude`, waiting a while for enough of them.
async fn place_next(
    pool: &ConnPool,
    log_id: u64,
    exclude: &[u64],
    replicas: usize,
    seed: &mut u64,
) -> Result<Vec<u64>, ClientError> {
    let mut last_err = None;
    for _ in 0..PLACEMENT_ATTEMPTS_MAX {
        let alive = alive_nodes(pool).await?;
        *seed = seed.wrapping_add(1);
        match choose_replicas(&alive, exclude, replicas, *seed) {
            Ok(nodes) => return Ok(nodes),
            Err(e) => {
                log::warn!("log {log_id}: takeover: {e}; waiting for healthy nodes");
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(PLACEMENT_RETRY_MS)).await;
            }
        }
    }
    Err(match last_err {
        Some(e) => e.into(),
        None => ClientError::Log {
            log_id,
            why: "no placement for the next segment".into(),
        },
    })
}

/// Writes `tail` at offset 0 of the (unpublished) segment of `template`
/// on `node`, in appends that fit a frame, and reports the outcome.
fn write_tail(
    pool: &ConnPool,
    node: u64,
    template: Append,
    tail: Vec<Entry>,
    done: &mpsc::UnboundedSender<TailWrite>,
) {
    let pool = pool.clone();
    let done = done.clone();
    tokio::spawn(async move {
        let (log_id, segment) = (template.log_id, template.segment);
        let outcome = async {
            let conn = pool
                .for_segment(node, log_id, segment)
                .await
                .map_err(|e| e.to_string())?;
            let mut offset = 0usize;
            let mut durable = 0;
            while offset < tail.len() {
                let mut end = offset;
                let mut bytes = 0usize;
                // Half the append limit leaves room for the entries' own
                // framing; one entry always fits (ENTRY_BYTES_MAX is lower).
                while end < tail.len()
                    && end - offset < APPEND_ENTRIES_MAX as usize
                    && (end == offset
                        || bytes + tail[end].payload.len() <= APPEND_BYTES_MAX as usize / 2)
                {
                    bytes += tail[end].payload.len();
                    end += 1;
                }
                let append = Append {
                    first_seq: template.first_seq + offset as u64,
                    first_offset: offset as u64,
                    entries: tail[offset..end].to_vec(),
                    ..template.clone()
                };
                match conn
                    .request(&append, Duration::from_millis(TAIL_WRITE_TIMEOUT_MS))
                    .await
                {
                    Ok(Message::AppendAck(AppendAck { durable_len, .. })) => {
                        durable = durable_len;
                    }
                    Ok(other) => {
                        pool.forget(&conn).await;
                        return Err(format!("answered {other:?}"));
                    }
                    Err(e) => {
                        pool.forget(&conn).await;
                        return Err(e.to_string());
                    }
                }
                offset = end;
            }
            Ok::<u64, String>(durable)
        }
        .await;
        let _ = done.send(match outcome {
            Ok(len) => TailWrite::Durable { node, segment, len },
            Err(why) => {
                log::warn!("log {log_id}: writing the tail to node {node}: {why}");
                TailWrite::Failed { node, segment }
            }
        });
    });
}

/// Seals `segment` at `seal_len` and publishes segment `next_id` on
/// `nodes`, which hold the tail, by one CAS. The record is checked before
/// the CAS to name that very segment: published under another id, the
/// tail written there would not be found.
#[allow(clippy::too_many_arguments)]
async fn seal_and_open(
    pool: &ConnPool,
    log_id: u64,
    epoch: u64,
    segment: u64,
    seal_len: u64,
    nodes: &[u64],
    next_id: u64,
) -> Result<LogMeta, ClientError> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        let current = pool.meta().get_log(log_id).await?;
        let Some(record) = current.record else {
            return Err(ClientError::Log {
                log_id,
                why: "the log disappeared during the takeover".into(),
            });
        };
        let next =
            switch_segment(&record, epoch, segment, seal_len, nodes).map_err(|e| match e {
                MetaRefusal::NotOwner { current, .. } => ClientError::Log {
                    log_id,
                    why: format!("taken over again by epoch {current}"),
                },
                other => ClientError::Log {
                    log_id,
                    why: other.to_string(),
                },
            })?;
        let placed = next.segments.last().map(|s| s.id);
        if placed != Some(next_id) {
            return Err(ClientError::Log {
                log_id,
                why: format!("the sealing CAS would create segment {placed:?}, not {next_id}"),
            });
        }
        if let CasOutcome::Applied { .. } = pool
            .meta()
            .cas_log(log_id, current.version, next.clone())
            .await?
        {
            return Ok(next);
        }
    }
    Err(ClientError::Log {
        log_id,
        why: "metadata kept changing while sealing".into(),
    })
}

/// Best effort: tell the old segment's replicas about the seal.
fn tell_seal(pool: &ConnPool, log_id: u64, epoch: u64, nodes: Vec<u64>, segment: u64, len: u64) {
    for node in nodes {
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Ok(c) = pool.for_segment(node, log_id, segment).await {
                let _ = c
                    .request(
                        &Seal {
                            log_id,
                            segment,
                            epoch,
                            len,
                        },
                        Duration::from_secs(5),
                    )
                    .await;
            }
        });
    }
}
