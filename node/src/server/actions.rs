//! Carrying out the shard machine's actions: answers into outboxes,
//! segment creation, group commits, control writes and disk reads, each
//! reporting back to the machine how it ended. The IO runs in tasks of
//! the shard's executor; everything else happens before `carry_out`
//! returns, in the machine's order.

use std::collections::VecDeque;
use std::rc::Rc;

use trilog_protocol::replica::Durable;
use trilog_protocol::shard::{Action, Actions, ConnId, SegmentKey};
use trilog_wire::message::ReadResponse;
use trilog_wire::{read_response_frame, Message, ReadResponseHead};

use crate::metrics::DiskOp;
use crate::runtime::ShardRuntime;
use crate::server::handlers;
use crate::server::shard::{durable_to_ctl, SegmentFile, Shard};
use crate::storage::{self, SegmentHeader, StorageError};

/// Carries out `actions` in order. An action that yields more (a parked
/// append offered again) has them carried out before the next one, so
/// answers leave in the order the machine decided them.
pub fn carry_out<R: ShardRuntime>(shard: &Rc<Shard<R>>, actions: Actions) {
    let mut queue: VecDeque<Action> = actions.into_iter().collect();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Send {
                conn,
                request_id,
                message,
            } => deliver(shard, conn, request_id, &message),
            Action::Create {
                key,
                first_seq,
                epoch,
            } => create(shard, key, first_seq, epoch),
            Action::Reoffer { conn, request_id } => {
                let more = handlers::reoffer(shard, conn, request_id);
                for action in more.into_iter().rev() {
                    queue.push_front(action);
                }
            }
            Action::Flush { key } => shard.mark_dirty(key),
            Action::PersistControl { key, state } => persist(shard, key, state),
            Action::ApplySeal { key, len } => shard.file(key).borrow_mut().seal_truncate(len),
            Action::LookupLog { log_id } => lookup_log(shard, log_id),
            Action::LearntSealRefused { key, len, refusal } => tracing::error!(
                "node {} {key:?}: the record seals it at {len}, and this replica, sealed \
                 at another length, refuses that seal ({refusal:?}); left as it is",
                shard.node_id
            ),
            Action::ServeRead {
                conn,
                request_id,
                key,
                from,
                end,
                max_bytes,
                watermark,
                sealed_len,
            } => {
                let header = ReadResponse {
                    log_id: key.log_id,
                    segment: key.segment,
                    from_offset: from,
                    count: 0,
                    watermark,
                    sealed_len,
                    records: Vec::new(),
                };
                serve_read(shard, conn, request_id, key, end, max_bytes, header);
            }
            Action::DeleteFiles { key } => delete_files(shard, key),
        }
    }
}

/// Asks the record source for `log_id`'s record and hands it to the
/// machine (which asks only if the shard has a source).
fn lookup_log<R: ShardRuntime>(shard: &Rc<Shard<R>>, log_id: u64) {
    let Some(records) = shard.records.clone() else {
        panic!("a record lookup of log {log_id} without a record source");
    };
    let s = shard.clone();
    shard.rt.spawn(async move {
        let answer = records.get_log(log_id).await;
        let actions = s.machine.borrow_mut().handle_log_record(
            log_id,
            answer.as_ref().map(Option::as_ref).map_err(Clone::clone),
        );
        carry_out(&s, actions);
    });
}

/// Queues the answer to `request_id` on its connection, if still open, and
/// gives back what the connection held for the request.
pub fn deliver<R: ShardRuntime>(
    shard: &Shard<R>,
    conn: ConnId,
    request_id: u64,
    message: &Message,
) {
    let Some(conn) = shard.conn(conn) else {
        return;
    };
    conn.finish(request_id);
    if let Message::ErrorMsg(e) = message {
        shard.metrics.error_answered(e.code);
    }
    conn.outbox.push(message.encode(request_id));
}

/// Queues a whole answer frame already built (a read's records, archived
/// from the buffer the disk filled) on its connection, if still open.
pub fn deliver_frame<R: ShardRuntime>(
    shard: &Shard<R>,
    conn: ConnId,
    request_id: u64,
    frame: Vec<u8>,
) {
    let Some(conn) = shard.conn(conn) else {
        return;
    };
    conn.finish(request_id);
    conn.outbox.push(frame);
}

fn create<R: ShardRuntime>(shard: &Rc<Shard<R>>, key: SegmentKey, first_seq: u64, epoch: u64) {
    let task_shard = shard.clone();
    shard.rt.spawn(async move {
        let shard = task_shard;
        let header = SegmentHeader {
            log_id: key.log_id,
            segment: key.segment,
            first_seq,
            epoch,
        };
        let started = std::time::Instant::now();
        let result = match SegmentFile::<R>::create(shard.rt.disk(), &shard.dir, header).await {
            Ok(file) => {
                tracing::debug!("{key:?}: created in {} us", started.elapsed().as_micros());
                shard.add_file(key, file);
                Ok(())
            }
            Err(e) => {
                tracing::error!("creating {key:?}: {e}");
                shard.metrics.disk_error(DiskOp::Create);
                if e.is_no_space() {
                    shard.report_no_space();
                }
                Err(e.remote_summary())
            }
        };
        let actions = shard.machine.borrow_mut().handle_created(key, result);
        carry_out(&shard, actions);
    });
}

/// Unlinks a deleted segment's files durably, then tells the machine.
fn delete_files<R: ShardRuntime>(shard: &Rc<Shard<R>>, key: SegmentKey) {
    let file = shard.take_file(key);
    let task_shard = shard.clone();
    shard.rt.spawn(async move {
        let shard = task_shard;
        let storage_key = storage::SegmentKey {
            log_id: key.log_id,
            segment: key.segment,
        };
        let result =
            match storage::remove_segment_files(shard.rt.disk(), &shard.dir, storage_key).await {
                Ok(removed) => {
                    tracing::info!("{key:?} deleted ({removed} files unlinked)");
                    shard.metrics.segments_deleted.inc();
                    Ok(())
                }
                Err(e) => {
                    tracing::error!("deleting {key:?}: {e}");
                    shard.metrics.disk_error(DiskOp::Delete);
                    Err(e.remote_summary())
                }
            };
        // Our handle goes now; jobs still running close theirs as they end.
        drop(file);
        let actions = shard.machine.borrow_mut().handle_deleted(key, result);
        carry_out(&shard, actions);
    });
}

fn persist<R: ShardRuntime>(shard: &Rc<Shard<R>>, key: SegmentKey, state: Durable) {
    let file = shard.file(key);
    let ctl = durable_to_ctl(state);
    let write = file.borrow_mut().begin_ctl_write(ctl);
    let task_shard = shard.clone();
    shard.rt.spawn(async move {
        let shard = task_shard;
        let actions = match write.run().await {
            Ok(()) => {
                file.borrow_mut().complete_ctl_write(ctl);
                shard.machine.borrow_mut().handle_control_durable(key)
            }
            Err(e) => {
                tracing::error!("segment {key:?} failed: control write: {e}");
                shard.metrics.disk_error(DiskOp::Control);
                if e.is_no_space() {
                    shard.report_no_space();
                }
                let why = e.remote_summary();
                shard.machine.borrow_mut().handle_control_failed(key, why)
            }
        };
        carry_out(&shard, actions);
    });
}

/// Plans the read now (the records `[from, end)` as they are at the
/// machine's decision), reads them in a task and answers.
fn serve_read<R: ShardRuntime>(
    shard: &Rc<Shard<R>>,
    conn: ConnId,
    request_id: u64,
    key: SegmentKey,
    end: u64,
    max_bytes: u32,
    mut response: ReadResponse,
) {
    let plan = shard
        .file(key)
        .borrow()
        .read_plan(response.from_offset, end, max_bytes);
    let Some(plan) = plan else {
        panic!("{key:?}: the machine asked for an empty read");
    };
    let task_shard = shard.clone();
    shard.rt.spawn(async move {
        let shard = task_shard;
        match plan.run().await {
            Ok((count, records)) => {
                shard.metrics.reads.inc();
                shard.metrics.read_entries.inc_by(u64::from(count));
                shard.metrics.read_bytes.inc_by(records.len() as u64);
                response.count = count;
                // Archived straight from the read buffer into the frame
                // sent: the records' bytes are copied once, and the
                // frame's crc is built from the one the check made.
                let head = ReadResponseHead::of(&response);
                let frame = read_response_frame(request_id, head, &records, records.crc());
                deliver_frame(&shard, conn, request_id, frame);
            }
            Err(StorageError::CorruptRecord { offset, source, .. }) => {
                shard.metrics.damage_found.inc();
                tracing::error!(
                    "{key:?}: DAMAGE found by a read at {}: {source}: entries from offset {offset} on are not served; they are dropped and healed from another replica if sealed",
                    response.from_offset
                );
                let actions = shard
                    .machine
                    .borrow_mut()
                    .handle_read_damaged(conn, request_id, key, offset);
                carry_out(&shard, actions);
            }
            Err(e) => {
                tracing::error!("read of {key:?} at {}: {e}", response.from_offset);
                shard.metrics.disk_error(DiskOp::Read);
                let actions = shard.machine.borrow_mut().handle_read_failed(
                    conn,
                    request_id,
                    key,
                    &e.remote_summary(),
                );
                carry_out(&shard, actions);
            }
        }
    });
}
