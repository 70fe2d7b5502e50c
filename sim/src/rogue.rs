//! A rogue sender: a client that is no producer of the log (a stale tool,
//! a bug) sends one replica a raw `Seal{len: 0}` below the commit
//! watermark that replica knows. The replica must refuse it
//! (`SealBelowCommit`); a replica that applied it would drop committed
//! entries, which the checker sees on the disk images.

use std::time::Duration;

use trilog_client::ConnPool;
use trilog_wire::message::{Read, Seal};
use trilog_wire::Message;

use crate::actors::{note, SharedWorld, LOG_ID};
use crate::executor::SimHandle;

/// How long the rogue waits for each answer.
const ROGUE_ANSWER_WAIT_MS: u64 = 1_000;

/// Asks replica `node` of `segment` for the watermark it knows and, if it
/// knows one above 0, sends it `Seal{len: 0}`. Asking first keeps the
/// fault to what a replica can refuse: a seal at or above what it knows
/// committed is one it cannot tell from a legitimate one.
pub async fn rogue_seal(
    pool: ConnPool,
    sim: SimHandle,
    world: SharedWorld,
    node: u64,
    segment: u64,
) {
    let wait = Duration::from_millis(ROGUE_ANSWER_WAIT_MS);
    let conn = match pool.for_segment(node, LOG_ID, segment).await {
        Ok(c) => c,
        Err(e) => {
            return note(
                &world,
                &sim,
                format!("rogue: no connection to node {node}: {e}"),
            )
        }
    };
    let read = Read {
        log_id: LOG_ID,
        segment,
        from_offset: 0,
        limit: u64::MAX,
        max_bytes: 1,
        wait_ms: 0,
    };
    let watermark = match conn.request(&read, wait).await {
        Ok(Message::ReadResponse(r)) => r.watermark,
        other => {
            return note(
                &world,
                &sim,
                format!("rogue: read of node {node} segment {segment}: {other:?}"),
            )
        }
    };
    if watermark == 0 {
        return note(
            &world,
            &sim,
            format!("rogue: node {node} segment {segment} knows no commit"),
        );
    }
    let seal = Seal {
        log_id: LOG_ID,
        segment,
        epoch: 0,
        len: 0,
    };
    let answer = conn.request(&seal, wait).await;
    note(
        &world,
        &sim,
        format!("rogue: Seal{{len: 0}} to node {node} segment {segment} (watermark {watermark}): {answer:?}"),
    );
}
