//! Group commit: one loop per shard writes everything staged since the last
//! round (one aligned write per segment) and fdatasyncs every touched file,
//! concurrently, before a single ack of that round leaves.

use std::rc::Rc;

use trilog_wire::message::AppendAck;

use crate::server::handlers::send_error_internal;
use crate::server::shard::{Shard, Slot};
use crate::storage::FlushDone;

/// Runs forever on the shard's executor.
pub async fn run_flusher(shard: Rc<Shard>) {
    loop {
        let listener = shard.dirty_event.listen();
        if shard.dirty.borrow().is_empty() {
            listener.await;
            continue;
        }
        let keys: Vec<_> = std::mem::take(&mut *shard.dirty.borrow_mut())
            .into_iter()
            .collect();
        let mut jobs = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(slot) = shard.get(key) else { continue };
            if slot.failure().is_some() {
                continue;
            }
            let job = slot.file.borrow_mut().begin_flush();
            if let Some(job) = job {
                jobs.push((slot, glommio::spawn_local(job.run())));
            }
        }
        for (slot, task) in jobs {
            match task.await {
                Ok(done) => complete(&slot, done),
                Err(e) => {
                    slot.fail(&e);
                    for w in slot.waiters.borrow_mut().drain(..) {
                        send_error_internal(&w.outbox, w.request_id, slot.key, &e.to_string());
                    }
                }
            }
        }
    }
}

fn complete(slot: &Rc<Slot>, done: FlushDone) {
    let len = {
        let mut file = slot.file.borrow_mut();
        file.complete_flush(done);
        file.durable_len()
    };
    slot.replica.borrow_mut().on_durable(len);
    let ack = AppendAck {
        log_id: slot.key.log_id,
        segment: slot.key.segment,
        durable_len: len,
    };
    slot.waiters.borrow_mut().retain_mut(|w| {
        if w.end > len {
            return true;
        }
        w.outbox.push(trilog_wire::encode(w.request_id, &ack));
        // Dropping the permit gives the connection its bytes back.
        w.permit = None;
        false
    });
    slot.changed.notify(usize::MAX);
}
