//! Runs one repair job ([`RepairJob`], which decides every step): probes
//! this node's copy, reads the segment from a surviving replica, appends it
//! to the copy through this node's own listener (so the copy goes through
//! every check an append does: limits, crc, fdatasync before the ack),
//! seals it, and publishes it by CAS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trilog_meta::{CasOutcome, MetaStore};
use trilog_protocol::repair::{
    JobAction, JobState, RepairJob, REPAIR_LOST_NODE_CHECK_MS, REPAIR_PUBLISH_ATTEMPTS_MAX,
};
use trilog_protocol::NodeId;
use trilog_wire::limits::{APPEND_BYTES_MAX, APPEND_ENTRIES_MAX};
use trilog_wire::message::{shard_of, Append, Entry, ErrorCode, Fence, Read, ReadResponse, Seal};
use trilog_wire::record::parse_records;
use trilog_wire::Message;

use super::pace::Pacer;
use super::peer::{unexpected, Peer, PeerError};

/// Why a job stopped short of publishing.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("metadata: {0}")]
    Meta(#[from] trilog_meta::MetaError),
    #[error("no surviving replica could serve entries from {from}: {why}")]
    NoSource { from: u64, why: String },
    #[error("bad entries from {addr}: {why}")]
    BadData { addr: SocketAddr, why: String },
    #[error("node {node} has no address for shard {shard}")]
    NoAddress { node: NodeId, shard: u32 },
    #[error("the record kept changing: {attempts} publishes conflicted")]
    Contended { attempts: u32 },
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    Published {
        entries: u64,
        bytes: u64,
        elapsed: Duration,
    },
    /// A refill ([`RepairJob::refill`]) made this node's copy whole.
    Refilled {
        entries: u64,
        bytes: u64,
        elapsed: Duration,
    },
    Abandoned {
        why: String,
    },
}

/// What a job needs from its surroundings.
pub struct Env<'a> {
    pub me: NodeId,
    pub store: &'a Arc<dyn MetaStore>,
    /// Every registered node's host and shard ports.
    pub addrs: &'a BTreeMap<NodeId, (String, Vec<u16>)>,
    pub pacer: &'a mut Pacer,
    /// How many bytes one read asks for.
    pub chunk_bytes: u32,
    /// Peers serve mutual TLS: dial them with this identity.
    pub tls: Option<Arc<trilog_tls::TlsIdentity>>,
}

/// The address of the shard of `node` that owns the job's segment.
fn shard_addr(
    env: &Env<'_>,
    node: NodeId,
    log_id: u64,
    segment: u64,
) -> Result<SocketAddr, CopyError> {
    let Some((host, ports)) = env.addrs.get(&node) else {
        return Err(CopyError::NoAddress { node, shard: 0 });
    };
    let shard = shard_of(log_id, segment, ports.len() as u32);
    let port = ports
        .get(shard as usize)
        .ok_or(CopyError::NoAddress { node, shard })?;
    let ip = host
        .parse()
        .map_err(|_| CopyError::NoAddress { node, shard })?;
    Ok(SocketAddr::new(ip, *port))
}

/// Runs `job` to its end. `lost_is_back` is asked now and then whether the
/// lost node is alive again (the job is then abandoned).
pub async fn run(
    mut job: RepairJob,
    env: &mut Env<'_>,
    mut lost_is_back: impl AsyncFnMut() -> bool,
) -> Result<Outcome, CopyError> {
    let started = Instant::now();
    let task = job.task().clone();
    let (log_id, seg) = (task.log_id, task.segment.id);
    let mut own = Peer::connect(shard_addr(env, env.me, log_id, seg)?, env.tls.as_deref()).await?;
    let mut action = job.on_probed(probe(&mut own, &task).await?);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut checked = Instant::now();
    loop {
        action = match action {
            JobAction::Copy { from, limit } => {
                if checked.elapsed() >= Duration::from_millis(REPAIR_LOST_NODE_CHECK_MS) {
                    checked = Instant::now();
                    if lost_is_back().await {
                        let why = format!("node {} is alive again", task.lost);
                        let _ = job.abandon(why.clone());
                        return Ok(Outcome::Abandoned { why });
                    }
                }
                let chunk = read_chunk(env, &task, from, limit).await?;
                entries += chunk.len() as u64;
                let chunk_bytes: u64 = chunk.iter().map(|e| e.payload.len() as u64).sum();
                bytes += chunk_bytes;
                let next = append_chunk(&mut own, &mut job, from, chunk).await?;
                env.pacer.spend(chunk_bytes).await;
                next
            }
            JobAction::Seal { len } => {
                let seal = Seal {
                    log_id,
                    segment: seg,
                    epoch: task.segment.epoch,
                    len,
                };
                match own.request(Message::Seal(seal)).await? {
                    Message::SealAck(ack) => job.on_sealed(ack.len),
                    other => return Err(unexpected(own.addr(), "Seal", &other).into()),
                }
            }
            JobAction::Publish => {
                // Checked at once, whatever the last check: publishing while
                // the lost node is back would only leave it an extra copy,
                // but a cancelled repair should not cost one.
                if lost_is_back().await {
                    let why = format!("node {} is alive again", task.lost);
                    let _ = job.abandon(why.clone());
                    return Ok(Outcome::Abandoned { why });
                }
                publish(&mut job, env.store).await?;
                return Ok(match job.state() {
                    JobState::Done => Outcome::Published {
                        entries,
                        bytes,
                        elapsed: started.elapsed(),
                    },
                    JobState::Abandoned { why } => Outcome::Abandoned { why: why.clone() },
                    other => unreachable!("publish left the job {other:?}"),
                });
            }
            JobAction::Stop if *job.state() == JobState::Done => {
                return Ok(Outcome::Refilled {
                    entries,
                    bytes,
                    elapsed: started.elapsed(),
                })
            }
            JobAction::Stop => {
                let why = match job.state() {
                    JobState::Abandoned { why } => why.clone(),
                    other => format!("stopped while {other:?}"),
                };
                return Ok(Outcome::Abandoned { why });
            }
        };
    }
}

/// What this node's copy holds: nothing (`None`), or its durable length
/// and seal. A read at the start tells a missing copy apart without
/// creating one; a fence at the segment's epoch (it waits for everything
/// staged to be durable) then gives the durable length.
async fn probe(
    own: &mut Peer,
    task: &trilog_protocol::repair::RepairTask,
) -> Result<Option<(u64, Option<u64>)>, CopyError> {
    let (log_id, segment) = (task.log_id, task.segment.id);
    let read = Read {
        log_id,
        segment,
        from_offset: 0,
        limit: 0,
        max_bytes: 0,
        wait_ms: 0,
    };
    match own.request(Message::Read(read)).await {
        Ok(Message::ReadResponse(_)) => {}
        Err(PeerError::Refused { err, .. }) if err.code == ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
        Ok(other) => return Err(unexpected(own.addr(), "Read", &other).into()),
    }
    let fence = Fence {
        log_id,
        segment,
        epoch: task.segment.epoch,
    };
    match own.request(Message::Fence(fence)).await? {
        Message::FenceAck(ack) => Ok(Some((ack.durable_len, ack.sealed_len))),
        other => Err(unexpected(own.addr(), "Fence", &other).into()),
    }
}

/// Entries `[from, limit)` (as many as one read gives) from the first
/// surviving replica that serves them, each one's crc checked.
async fn read_chunk(
    env: &Env<'_>,
    task: &trilog_protocol::repair::RepairTask,
    from: u64,
    limit: u64,
) -> Result<Vec<Entry>, CopyError> {
    let mut why = String::from("no source");
    for source in &task.sources {
        let addr = shard_addr(env, *source, task.log_id, task.segment.id)?;
        match read_from(addr, env.tls.as_deref(), task, from, limit, env.chunk_bytes).await {
            Ok(entries) if !entries.is_empty() => return Ok(entries),
            Ok(_) => why = format!("{addr}: no entries at {from}"),
            Err(e) => why = e.to_string(),
        }
        tracing::warn!(
            "repair of log {} segment {}: source node {source}: {why}",
            task.log_id,
            task.segment.id
        );
    }
    Err(CopyError::NoSource { from, why })
}

async fn read_from(
    addr: SocketAddr,
    tls: Option<&trilog_tls::TlsIdentity>,
    task: &trilog_protocol::repair::RepairTask,
    from: u64,
    limit: u64,
    max_bytes: u32,
) -> Result<Vec<Entry>, CopyError> {
    let mut peer = Peer::connect(addr, tls).await?;
    let read = Read {
        log_id: task.log_id,
        segment: task.segment.id,
        from_offset: from,
        limit,
        max_bytes,
        wait_ms: 0,
    };
    let resp: ReadResponse = match peer.request(Message::Read(read)).await? {
        Message::ReadResponse(r) => r,
        other => return Err(unexpected(addr, "Read", &other).into()),
    };
    let bad = |why: String| CopyError::BadData { addr, why };
    if resp.from_offset != from || from + u64::from(resp.count) > limit {
        return Err(bad(format!(
            "{} entries from {} for a read of [{from}, {limit})",
            resp.count, resp.from_offset
        )));
    }
    let records = parse_records(&resp.records, from, resp.count).map_err(|e| bad(e.to_string()))?;
    // parse_records checked every payload against the crc it was stored
    // with; the append carries that crc on, and the copy checks it again.
    Ok(records
        .into_iter()
        .map(|(_, payload)| Entry::new(payload.to_vec()))
        .collect())
}

/// Appends `chunk` (entries from `from`) to the copy in appends within the
/// wire's limits, then returns the job's next action.
async fn append_chunk(
    own: &mut Peer,
    job: &mut RepairJob,
    from: u64,
    chunk: Vec<Entry>,
) -> Result<JobAction, CopyError> {
    let task = job.task().clone();
    let mut offset = from;
    let mut rest = chunk.into_iter().peekable();
    let mut durable = from;
    while rest.peek().is_some() {
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        while let Some(e) = rest.peek() {
            let len = e.payload.len() as u64;
            let full = entries.len() as u64 >= u64::from(APPEND_ENTRIES_MAX)
                || (!entries.is_empty() && bytes + len > u64::from(APPEND_BYTES_MAX));
            if full {
                break;
            }
            bytes += len;
            entries.extend(rest.next());
        }
        let end = offset + entries.len() as u64;
        let append = Append {
            log_id: task.log_id,
            segment: task.segment.id,
            epoch: task.segment.epoch,
            first_seq: task.segment.first_seq,
            first_offset: offset,
            // Entries below `from` are durable in the copy, and every entry
            // of a sealed segment is committed: an honest watermark.
            commit: from,
            entries,
        };
        let id = own.send(Message::Append(append)).await?;
        if let Some(action) = job.on_sent(end) {
            return Ok(action);
        }
        match own.answer(id).await? {
            Message::AppendAck(ack) => durable = ack.durable_len,
            other => return Err(unexpected(own.addr(), "Append", &other).into()),
        }
        offset = end;
    }
    Ok(job.on_durable(durable))
}

/// Reads the record and CASes in the job's change, again after a conflict.
async fn publish(job: &mut RepairJob, store: &Arc<dyn MetaStore>) -> Result<(), CopyError> {
    let log_id = job.task().log_id;
    for _ in 0..REPAIR_PUBLISH_ATTEMPTS_MAX {
        let current = store.get_log(log_id).await?;
        let Some(record) = current.record else {
            let _ = job.abandon(format!("log {log_id} has no record any more"));
            return Ok(());
        };
        let next = match job.publish(&record) {
            Ok(next) => next,
            Err(stale) => {
                let _ = job.abandon(stale.to_string());
                return Ok(());
            }
        };
        match store.cas_log(log_id, current.version, next).await? {
            CasOutcome::Applied { .. } => {
                job.on_published();
                return Ok(());
            }
            CasOutcome::Conflict(_) => continue,
        }
    }
    Err(CopyError::Contended {
        attempts: REPAIR_PUBLISH_ATTEMPTS_MAX,
    })
}
