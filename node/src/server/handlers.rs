//! The requests of a connection, one function each. The decisions are the
//! replica state machine's; these functions only apply them to the files
//! and answer.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::FutureExt;
use glommio::sync::StaticPermit;
use trilog_protocol::replica::{AppendDecision, ControlDecision, Refusal};
use trilog_wire::limits::ENTRY_BYTES_MAX;
use trilog_wire::message::{
    shard_of, ArchivedAppend, ErrorCode, ErrorMsg, Fence, FenceAck, Read, ReadResponse, Seal,
    SealAck, Watermark,
};

use crate::server::outbox::Outbox;
use crate::server::shard::{durable_to_ctl, AckWaiter, Shard, Slot};
use crate::storage::SegmentKey;

fn error_frame(
    request_id: u64,
    code: ErrorCode,
    key: SegmentKey,
    value: u64,
    message: String,
) -> Vec<u8> {
    let mut message = message;
    message.truncate(trilog_wire::limits::ERROR_MESSAGE_BYTES_MAX);
    trilog_wire::encode(
        request_id,
        &ErrorMsg {
            code,
            log_id: key.log_id,
            segment: key.segment,
            value,
            message,
        },
    )
}

pub fn send_error(
    outbox: &Outbox,
    request_id: u64,
    code: ErrorCode,
    key: SegmentKey,
    value: u64,
    message: String,
) {
    outbox.push(error_frame(request_id, code, key, value, message));
}

pub fn send_error_internal(outbox: &Outbox, request_id: u64, key: SegmentKey, why: &str) {
    send_error(
        outbox,
        request_id,
        ErrorCode::Internal,
        key,
        0,
        format!("node error: {why}"),
    );
}

fn send_refusal(outbox: &Outbox, request_id: u64, key: SegmentKey, refusal: Refusal) {
    let (code, value) = match refusal {
        Refusal::Sealed { len } => (ErrorCode::Sealed, len),
        Refusal::Fenced { epoch } => (ErrorCode::Fenced, epoch),
        Refusal::Gap { len } => (ErrorCode::Gap, len),
        Refusal::SealConflict { held, .. } => (ErrorCode::BadRequest, held),
    };
    send_error(outbox, request_id, code, key, value, format!("{refusal:?}"));
}

/// Checks that the segment belongs to this shard; answers if not.
fn owned_here(shard: &Shard, outbox: &Outbox, request_id: u64, key: SegmentKey) -> bool {
    let owner = shard_of(key.log_id, key.segment, shard.shard_count());
    if owner == shard.shard {
        return true;
    }
    send_error(
        outbox,
        request_id,
        ErrorCode::WrongShard,
        key,
        u64::from(owner),
        format!("segment belongs to shard {owner}"),
    );
    false
}

/// An append, read in place from the receive buffer. Returns false if the
/// connection must be closed (a malformed request).
pub async fn append(
    shard: &Rc<Shard>,
    outbox: &Rc<Outbox>,
    request_id: u64,
    a: &ArchivedAppend,
    permit: StaticPermit,
) -> bool {
    let key = SegmentKey {
        log_id: a.log_id.to_native(),
        segment: a.segment.to_native(),
    };
    if !owned_here(shard, outbox, request_id, key) {
        return true;
    }
    // Check every entry before anything is staged: an append is taken
    // whole or not at all.
    for (i, e) in a.entries.iter().enumerate() {
        if e.payload.len() > ENTRY_BYTES_MAX as usize
            || crc32c::crc32c(e.payload.as_slice()) != e.crc.to_native()
        {
            log::warn!("append to {key:?}: entry {i} fails its crc; closing the connection");
            send_error(
                outbox,
                request_id,
                ErrorCode::BadRequest,
                key,
                i as u64,
                "entry crc mismatch".into(),
            );
            return false;
        }
    }
    let first_offset = a.first_offset.to_native();
    let count = a.entries.len() as u64;
    let slot = match shard.get(key) {
        Some(slot) => slot,
        None if first_offset == 0 => {
            match shard
                .get_or_create(key, a.first_seq.to_native(), a.epoch.to_native())
                .await
            {
                Ok(slot) => slot,
                Err(e) => {
                    send_error_internal(outbox, request_id, key, &e.to_string());
                    return true;
                }
            }
        }
        None => {
            send_refusal(outbox, request_id, key, Refusal::Gap { len: 0 });
            return true;
        }
    };
    if let Some(why) = slot.failure() {
        send_error_internal(outbox, request_id, key, &why);
        return true;
    }
    let commit = a.commit.to_native();
    let decision =
        slot.replica
            .borrow_mut()
            .on_append(a.epoch.to_native(), first_offset, count, commit);
    let end = match decision {
        AppendDecision::Refuse(r) => {
            send_refusal(outbox, request_id, key, r);
            return true;
        }
        AppendDecision::Held { end } => end,
        AppendDecision::Accept { skip, end } => {
            let mut file = slot.file.borrow_mut();
            for (i, e) in a.entries.iter().enumerate().skip(skip as usize) {
                file.stage(
                    first_offset + i as u64,
                    commit,
                    e.crc.to_native(),
                    e.payload.as_slice(),
                );
            }
            drop(file);
            shard.mark_dirty(key);
            end
        }
    };
    let durable = slot.replica.borrow().durable_len();
    if end <= durable {
        let ack = trilog_wire::message::AppendAck {
            log_id: key.log_id,
            segment: key.segment,
            durable_len: durable,
        };
        outbox.push(trilog_wire::encode(request_id, &ack));
    } else {
        slot.waiters.borrow_mut().push(AckWaiter {
            end,
            request_id,
            outbox: outbox.clone(),
            permit: Some(permit),
        });
    }
    slot.changed.notify(usize::MAX);
    true
}

pub fn watermark(shard: &Shard, w: &Watermark) {
    let key = SegmentKey {
        log_id: w.log_id,
        segment: w.segment,
    };
    if let Some(slot) = shard.get(key) {
        // Not written down on its own: the next record carries it, and a
        // lower watermark after a crash only delays reads from this replica.
        if slot.replica.borrow_mut().on_watermark(w.epoch, w.commit) {
            slot.changed.notify(usize::MAX);
        }
    }
}

/// Waits for `listener` unless `deadline` passes first; true if woken.
async fn woken_before(
    listener: event_listener::EventListener,
    deadline: &mut std::pin::Pin<Box<glommio::timer::Timer>>,
) -> bool {
    async {
        listener.await;
        true
    }
    .or(async {
        deadline.as_mut().await;
        false
    })
    .await
}

/// A read, long-polling up to `wait_ms` when nothing is readable.
pub async fn read(shard: Rc<Shard>, outbox: Rc<Outbox>, request_id: u64, r: Read) {
    let key = SegmentKey {
        log_id: r.log_id,
        segment: r.segment,
    };
    if !owned_here(&shard, &outbox, request_id, key) {
        return;
    }
    let mut deadline = Box::pin(glommio::timer::Timer::new(Duration::from_millis(
        u64::from(r.wait_ms),
    )));
    // A reader may come before the segment's first append: wait for it
    // like for any other data.
    let slot = loop {
        let listener = shard.created.listen();
        if let Some(slot) = shard.get(key) {
            break slot;
        }
        let woke = woken_before(listener, &mut deadline).await;
        if !woke {
            send_error(
                &outbox,
                request_id,
                ErrorCode::NotFound,
                key,
                0,
                "no such segment here".into(),
            );
            return;
        }
    };
    loop {
        let listener = slot.changed.listen();
        if let Some(why) = slot.failure() {
            send_error_internal(&outbox, request_id, key, &why);
            return;
        }
        let (end, watermark, sealed_len) = {
            let rep = slot.replica.borrow();
            (rep.readable_end(r.limit), rep.watermark(), rep.sealed_len())
        };
        let ended = r.from_offset >= r.limit || sealed_len.is_some_and(|s| r.from_offset >= s);
        if r.from_offset < end || ended {
            respond_read(&slot, &outbox, request_id, &r, end, watermark, sealed_len).await;
            return;
        }
        let woke = woken_before(listener, &mut deadline).await;
        if !woke {
            respond_read(&slot, &outbox, request_id, &r, end, watermark, sealed_len).await;
            return;
        }
    }
}

async fn respond_read(
    slot: &Rc<Slot>,
    outbox: &Outbox,
    request_id: u64,
    r: &Read,
    end: u64,
    watermark: u64,
    sealed_len: Option<u64>,
) {
    let mut resp = ReadResponse {
        log_id: r.log_id,
        segment: r.segment,
        from_offset: r.from_offset,
        count: 0,
        watermark,
        sealed_len,
        records: Vec::new(),
    };
    if r.from_offset < end {
        let plan = slot
            .file
            .borrow()
            .read_plan(r.from_offset, end, r.max_bytes);
        if let Some(plan) = plan {
            match plan.run().await {
                Ok((count, records)) => {
                    resp.count = count;
                    resp.records = records;
                }
                Err(e) => {
                    log::error!("read of {:?} at {}: {e}", slot.key, r.from_offset);
                    send_error_internal(outbox, request_id, slot.key, &e.to_string());
                    return;
                }
            }
        }
    }
    outbox.push(trilog_wire::encode(request_id, &resp));
}

/// Waits until every staged entry is durable: a fence or a seal must answer
/// with a length that no later ack to an older producer can pass.
async fn drain_staged(slot: &Slot) -> Result<(), String> {
    loop {
        let listener = slot.changed.listen();
        if let Some(why) = slot.failure() {
            return Err(why);
        }
        let drained = slot.replica.borrow().control_answerable();
        if drained {
            return Ok(());
        }
        listener.await;
    }
}

/// Writes the slot's control state if `decision` asks for it.
async fn persist(slot: &Rc<Slot>, decision: ControlDecision) -> Result<(), String> {
    if let ControlDecision::Persist(d) = decision {
        let state = durable_to_ctl(d);
        let write = slot.file.borrow_mut().begin_ctl_write(state);
        if let Err(e) = write.run().await {
            slot.fail(&e);
            return Err(e.to_string());
        }
        slot.file.borrow_mut().complete_ctl_write(state);
        if let Some(len) = d.sealed_len {
            slot.file.borrow_mut().seal_truncate(len);
        }
        slot.changed.notify(usize::MAX);
    }
    Ok(())
}

pub async fn fence(shard: Rc<Shard>, outbox: Rc<Outbox>, request_id: u64, f: Fence) {
    let key = SegmentKey {
        log_id: f.log_id,
        segment: f.segment,
    };
    if !owned_here(&shard, &outbox, request_id, key) {
        return;
    }
    // A fence of a segment this node never saw is still recorded: an old
    // producer's first append must find it.
    let slot = match shard.get_or_create(key, 0, f.epoch).await {
        Ok(slot) => slot,
        Err(e) => return send_error_internal(&outbox, request_id, key, &e.to_string()),
    };
    let Ok(_lock) = slot.ctl_lock.acquire_static_permit(1).await else {
        return send_error_internal(&outbox, request_id, key, "control lock closed");
    };
    let decision = slot.replica.borrow_mut().on_fence(f.epoch);
    if let Err(why) = persist(&slot, decision).await {
        return send_error_internal(&outbox, request_id, key, &why);
    }
    if let Err(why) = drain_staged(&slot).await {
        return send_error_internal(&outbox, request_id, key, &why);
    }
    let rep = slot.replica.borrow();
    let ack = FenceAck {
        log_id: key.log_id,
        segment: key.segment,
        epoch: rep.durable().fenced_epoch,
        durable_len: rep.durable_len(),
        watermark: rep.watermark(),
        sealed_len: rep.sealed_len(),
    };
    outbox.push(trilog_wire::encode(request_id, &ack));
}

pub async fn seal(shard: Rc<Shard>, outbox: Rc<Outbox>, request_id: u64, s: Seal) {
    let key = SegmentKey {
        log_id: s.log_id,
        segment: s.segment,
    };
    if !owned_here(&shard, &outbox, request_id, key) {
        return;
    }
    let slot = match shard.get(key) {
        Some(slot) => slot,
        None if s.len == 0 => match shard.get_or_create(key, 0, s.epoch).await {
            Ok(slot) => slot,
            Err(e) => return send_error_internal(&outbox, request_id, key, &e.to_string()),
        },
        None => {
            return send_error(
                &outbox,
                request_id,
                ErrorCode::NotFound,
                key,
                0,
                "no such segment here".into(),
            );
        }
    };
    let Ok(_lock) = slot.ctl_lock.acquire_static_permit(1).await else {
        return send_error_internal(&outbox, request_id, key, "control lock closed");
    };
    if let Err(why) = drain_staged(&slot).await {
        return send_error_internal(&outbox, request_id, key, &why);
    }
    let decision = slot.replica.borrow_mut().on_seal(s.epoch, s.len);
    if let ControlDecision::Refuse(r) = decision {
        log::warn!("seal of {key:?} at {} refused: {r:?}", s.len);
        return send_refusal(&outbox, request_id, key, r);
    }
    if let Err(why) = persist(&slot, decision).await {
        return send_error_internal(&outbox, request_id, key, &why);
    }
    let ack = SealAck {
        log_id: key.log_id,
        segment: key.segment,
        len: s.len,
    };
    outbox.push(trilog_wire::encode(request_id, &ack));
}
