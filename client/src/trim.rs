//! Trim and delete, driven: the three steps of `trilog_protocol::trim`
//! (mark by CAS, unlink on every replica, drop by CAS) against the
//! metadata store and the nodes. Every decision is the protocol crate's;
//! this only carries them out and retries a CAS that lost a race.

use std::collections::BTreeSet;
use std::time::Duration;

use trilog_protocol::trim::{
    delete_record, drop_deleted, first_readable, pending, trim_record, DeletionRound, TrimRefusal,
};
use trilog_wire::message::{DeleteSegment, ErrorMsg};
use trilog_wire::meta::{LogMeta, NodeMode, SegmentMeta};
use trilog_wire::Message;

use crate::error::ClientError;
use crate::meta::CasOutcome;
use crate::pool::ConnPool;

/// How long one replica may take to answer a `DeleteSegment` (an unlink and
/// a directory sync) before its segment is left pending.
pub const DELETE_TIMEOUT_MS: u64 = 5_000;
/// CASes of one step that may lose a race (producers switching segments)
/// before the step gives up.
pub const CAS_ATTEMPTS_MAX: u32 = 32;

/// What a trim or delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrimReport {
    pub log_id: u64,
    /// The trim point now.
    pub trim_seq: u64,
    /// The first seq a reader can read now.
    pub first_readable: u64,
    /// Segments whose every replica confirmed the unlink, dropped from the
    /// record.
    pub deleted: Vec<SegmentMeta>,
    /// Segments still pending, with the replicas that did not confirm (a
    /// node down): the next trim, or `trilog trim --resume`, retries them.
    pub pending: Vec<(u64, Vec<u64>)>,
    /// The log is deleted.
    pub log_deleted: bool,
}

/// Trims `log_id` before `before_seq` (or, with `None`, only finishes the
/// deletions pending from earlier trims): entries below it become
/// unreadable, and every whole sealed segment below it is deleted from its
/// replicas.
pub async fn trim(
    pool: &ConnPool,
    log_id: u64,
    before_seq: Option<u64>,
) -> Result<TrimReport, ClientError> {
    pool.require(trilog_wire::Kind::DeleteSegment, "trim")?;
    mark(pool, log_id, |r| match before_seq {
        Some(seq) => trim_record(r, seq),
        None => Ok(r.clone()),
    })
    .await?;
    finish(pool, log_id).await
}

/// Deletes `log_id`: every segment is deleted from its replicas and the
/// record stays as a tombstone marked deleted (no producer opens it again;
/// its id is never reused with other data).
pub async fn delete_log(pool: &ConnPool, log_id: u64) -> Result<TrimReport, ClientError> {
    pool.require(trilog_wire::Kind::DeleteSegment, "delete a log")?;
    mark(pool, log_id, delete_record).await?;
    finish(pool, log_id).await
}

fn refused(log_id: u64, e: TrimRefusal) -> ClientError {
    ClientError::Trim {
        log_id,
        why: e.to_string(),
    }
}

async fn read(pool: &ConnPool, log_id: u64) -> Result<(u64, LogMeta), ClientError> {
    let v = pool.meta().get_log(log_id).await?;
    match v.record {
        Some(r) => Ok((v.version, r)),
        None => Err(ClientError::Trim {
            log_id,
            why: "no such log".into(),
        }),
    }
}

/// Step 1: CAS `change(record)` in, retried on a lost race.
async fn mark(
    pool: &ConnPool,
    log_id: u64,
    change: impl Fn(&LogMeta) -> Result<LogMeta, TrimRefusal>,
) -> Result<(), ClientError> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        let (version, record) = read(pool, log_id).await?;
        let next = change(&record).map_err(|e| refused(log_id, e))?;
        if next == record {
            return Ok(());
        }
        match pool.meta().cas_log(log_id, version, next).await? {
            CasOutcome::Applied { .. } => return Ok(()),
            CasOutcome::Conflict(_) => continue,
        }
    }
    Err(ClientError::Trim {
        log_id,
        why: format!("the record kept changing ({CAS_ATTEMPTS_MAX} attempts)"),
    })
}

/// Steps 2 and 3 for every segment the record lists as deleting.
async fn finish(pool: &ConnPool, log_id: u64) -> Result<TrimReport, ClientError> {
    let (_, record) = read(pool, log_id).await?;
    let deleting = pending(&record).to_vec();
    let mut round = DeletionRound::new(&deleting);
    if !deleting.is_empty() {
        let removed = pool
            .meta()
            .node_modes()
            .await?
            .into_iter()
            .filter(|m| m.mode == NodeMode::Removed)
            .map(|m| m.node_id)
            .collect();
        round.forget(&removed);
    }
    for (segment, node) in round.requests() {
        match delete_on(pool, log_id, segment, node).await {
            Ok(()) => round.confirmed(segment, node),
            Err(why) => log::warn!("log {log_id} segment {segment} on node {node}: {why}"),
        }
    }
    let done = round.done();
    let record = drop_confirmed(pool, log_id, &done).await?;
    Ok(TrimReport {
        log_id,
        trim_seq: record.trim_seq,
        first_readable: first_readable(&record),
        deleted: deleting
            .into_iter()
            .filter(|s| done.contains(&s.id))
            .collect(),
        pending: round.left(),
        log_deleted: record.deleted,
    })
}

/// Step 3: the confirmed segments out of `deleting`, retried on a lost race.
async fn drop_confirmed(
    pool: &ConnPool,
    log_id: u64,
    done: &BTreeSet<u64>,
) -> Result<LogMeta, ClientError> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        let (version, record) = read(pool, log_id).await?;
        let next = drop_deleted(&record, done);
        if next == record {
            return Ok(record);
        }
        match pool.meta().cas_log(log_id, version, next.clone()).await? {
            CasOutcome::Applied { .. } => return Ok(next),
            CasOutcome::Conflict(_) => continue,
        }
    }
    Err(ClientError::Trim {
        log_id,
        why: format!("the record kept changing ({CAS_ATTEMPTS_MAX} attempts)"),
    })
}

/// Asks `node` to delete its replica of `segment`; `Ok` once it confirmed.
async fn delete_on(pool: &ConnPool, log_id: u64, segment: u64, node: u64) -> Result<(), String> {
    let conn = pool
        .for_segment(node, log_id, segment)
        .await
        .map_err(|e| e.to_string())?;
    let req = DeleteSegment { log_id, segment };
    let timeout = Duration::from_millis(DELETE_TIMEOUT_MS);
    match conn.request(&req, timeout).await {
        Ok(Message::DeleteSegmentAck(a)) if a.log_id == log_id && a.segment == segment => Ok(()),
        Ok(Message::ErrorMsg(ErrorMsg { code, message, .. })) => {
            Err(format!("refused {code:?}: {message}"))
        }
        Ok(other) => Err(format!("unexpected answer {:?}", other.kind())),
        Err(e) => {
            pool.forget(&conn).await;
            Err(e.to_string())
        }
    }
}
