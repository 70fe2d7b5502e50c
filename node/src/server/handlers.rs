//! The requests of a connection, one function each: each turns a frame
//! into a call of the shard machine, stages an append's entries where the
//! machine says, and carries out what it returns. The decisions are all
//! the machine's.

use std::rc::Rc;

use trilog_protocol::shard::{self, Actions, AppendRequest, ConnId, SegmentKey, Stage};
use trilog_wire::access;
use trilog_wire::limits::ENTRY_BYTES_MAX;
use trilog_wire::message::{Append, ArchivedAppend, DeleteSegment, Fence, Read, Seal, Watermark};

use crate::framing::Frame;
use crate::runtime::ShardRuntime;
use crate::server::actions::{carry_out, deliver};
use crate::server::budget::Permit;
use crate::server::conns::Held;
use crate::server::shard::Shard;

/// An append, read in place from the receive buffer. An error closes the
/// connection (a malformed request), after answering it `BadRequest`.
pub fn append<R: ShardRuntime>(
    shard: &Rc<Shard<R>>,
    conn: ConnId,
    request_id: u64,
    frame: Frame,
    permit: Permit,
) -> Result<(), String> {
    shard.metrics.appends.inc();
    let a = access::<Append>(&frame.payload).map_err(|e| e.to_string())?;
    if let Err((index, why)) = check_entries(a) {
        let key = key_of(a);
        tracing::warn!("append to {key:?}: entry {index} {why}; closing the connection");
        let answer = shard::bad_request(key, index, format!("entry {index} {why}"));
        deliver(shard, conn, request_id, &answer);
        return Err("bad append".into());
    }
    if let Some(c) = shard.conn(conn) {
        c.hold_permit(request_id, Held::Append, permit)?;
    }
    let actions = offer(shard, conn, request_id, frame);
    carry_out(shard, actions);
    Ok(())
}

/// Every entry's size, checked before anything is staged: an append is
/// taken whole or not at all. Its crc was checked by the frame decoder,
/// with the frame's (`trilog_wire::check`), reading each payload once.
fn check_entries(a: &ArchivedAppend) -> Result<(), (u64, &'static str)> {
    for (i, e) in a.entries.iter().enumerate() {
        if e.payload.len() > ENTRY_BYTES_MAX as usize {
            return Err((i as u64, "is over the entry limit"));
        }
    }
    Ok(())
}

fn key_of(a: &ArchivedAppend) -> SegmentKey {
    SegmentKey {
        log_id: a.log_id.to_native(),
        segment: a.segment.to_native(),
    }
}

/// Offers a checked append to the machine and stages, drops or parks its
/// entries as it decides. Returns the actions to carry out after that.
fn offer<R: ShardRuntime>(
    shard: &Rc<Shard<R>>,
    conn: ConnId,
    request_id: u64,
    frame: Frame,
) -> Actions {
    let a = match access::<Append>(&frame.payload) {
        Ok(a) => a,
        Err(e) => unreachable!("an append checked once fails its check again: {e}"),
    };
    let req = AppendRequest {
        key: key_of(a),
        epoch: a.epoch.to_native(),
        first_seq: a.first_seq.to_native(),
        first_offset: a.first_offset.to_native(),
        count: a.entries.len() as u64,
        commit: a.commit.to_native(),
    };
    let step = shard
        .machine
        .borrow_mut()
        .handle_append(conn, request_id, req);
    match step.stage {
        Stage::Entries { skip, end } => stage(shard, req.key, a, skip, end),
        Stage::Nothing => {}
        Stage::Park => match shard.conn(conn) {
            Some(c) => c.park(request_id, frame),
            None => tracing::warn!("append {request_id} parked for a closed connection"),
        },
    }
    step.actions
}

/// Offers again an append the machine parked.
pub fn reoffer<R: ShardRuntime>(shard: &Rc<Shard<R>>, conn: ConnId, request_id: u64) -> Actions {
    match shard.conn(conn).and_then(|c| c.unpark(request_id)) {
        Some(frame) => offer(shard, conn, request_id, frame),
        None => {
            tracing::warn!("append {request_id} to re-offer is gone (request id reused?)");
            Actions::new()
        }
    }
}

/// Copies entries `[skip, ..)` of `a` into the segment's staging buffer:
/// the one copy out of the receive buffer.
fn stage<R: ShardRuntime>(
    shard: &Shard<R>,
    key: SegmentKey,
    a: &ArchivedAppend,
    skip: u64,
    end: u64,
) {
    let file = shard.file(key);
    let mut file = file.borrow_mut();
    let first_offset = a.first_offset.to_native();
    let commit = a.commit.to_native();
    let (mut entries, mut bytes) = (0u64, 0u64);
    for (i, e) in a.entries.iter().enumerate().skip(skip as usize) {
        entries += 1;
        bytes += e.payload.len() as u64;
        file.stage(
            first_offset + i as u64,
            commit,
            e.crc.to_native(),
            e.payload.as_slice(),
        );
    }
    shard.metrics.append_entries.inc_by(entries);
    shard.metrics.append_bytes.inc_by(bytes);
    shard.staged_append(bytes);
    // A flush that failed makes staging a no-op until the machine hears
    // of it and fails the segment, acks and all.
    assert!(
        file.staged_len() == end || file.failure().is_some(),
        "{key:?}: staged to {} where the machine said {end}",
        file.staged_len()
    );
}

pub fn watermark<R: ShardRuntime>(shard: &Rc<Shard<R>>, w: &Watermark) {
    let actions = shard.machine.borrow_mut().handle_watermark(w);
    carry_out(shard, actions);
}

/// A read: answered now or parked in the machine until it can be, or until
/// its wait ends (then the timer task answers it).
pub fn read<R: ShardRuntime>(shard: &Rc<Shard<R>>, conn: ConnId, request_id: u64, r: &Read) {
    let now_ms = shard.now_ms();
    let (actions, sooner) = {
        let mut machine = shard.machine.borrow_mut();
        let before = machine.poll_timeout();
        let actions = machine.handle_read(now_ms, conn, request_id, r);
        let after = machine.poll_timeout();
        (
            actions,
            after.is_some() && (before.is_none() || after < before),
        )
    };
    if sooner {
        shard.timer_event.notify(1);
    }
    carry_out(shard, actions);
}

pub fn fence<R: ShardRuntime>(shard: &Rc<Shard<R>>, conn: ConnId, request_id: u64, f: &Fence) {
    let actions = shard.machine.borrow_mut().handle_fence(conn, request_id, f);
    carry_out(shard, actions);
}

pub fn seal<R: ShardRuntime>(shard: &Rc<Shard<R>>, conn: ConnId, request_id: u64, s: &Seal) {
    let actions = shard.machine.borrow_mut().handle_seal(conn, request_id, s);
    carry_out(shard, actions);
}

pub fn delete<R: ShardRuntime>(
    shard: &Rc<Shard<R>>,
    conn: ConnId,
    request_id: u64,
    d: &DeleteSegment,
) {
    let key = SegmentKey {
        log_id: d.log_id,
        segment: d.segment,
    };
    let actions = shard
        .machine
        .borrow_mut()
        .handle_delete(conn, request_id, key);
    carry_out(shard, actions);
}
