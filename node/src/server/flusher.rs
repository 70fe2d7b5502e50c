//! Group commit: one loop per shard writes everything staged since the last
//! round (one aligned write per segment) and fdatasyncs every touched file,
//! concurrently, then tells the machine what became durable; the machine
//! releases the acks that covers. While a round runs, new appends stage
//! for the next one.

use std::rc::Rc;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::metrics::DiskOp;
use crate::runtime::ShardRuntime;
use crate::server::actions::carry_out;
use crate::server::shard::Shard;

/// Runs forever on the shard's executor.
pub async fn run_flusher<R: ShardRuntime>(shard: Rc<Shard<R>>) {
    loop {
        let listener = shard.dirty_event.listen();
        if shard.dirty.borrow().is_empty() {
            listener.await;
            continue;
        }
        let keys = std::mem::take(&mut *shard.dirty.borrow_mut());
        let (appends, bytes) = shard.take_round();
        // Every touched file's write and fdatasync run at once; each is
        // reported to the machine as soon as it ends.
        let mut jobs = FuturesUnordered::new();
        for key in keys {
            let file = shard.file(key);
            // None once a flush failed or a seal dropped what was staged.
            let job = file.borrow_mut().begin_flush();
            if let Some(job) = job {
                jobs.push(async move { (key, file, job.run().await) });
            }
        }
        while let Some((key, file, outcome)) = jobs.next().await {
            let actions = match outcome {
                Ok(done) => {
                    shard.metrics.fsynced(done.sync_time());
                    let len = file.borrow_mut().complete_flush(done);
                    shard.machine.borrow_mut().handle_durable(key, len)
                }
                Err(e) => {
                    tracing::error!("segment {key:?} failed: flush: {e}");
                    shard.metrics.disk_error(DiskOp::Flush);
                    if e.is_no_space() {
                        shard.report_no_space();
                    }
                    let why = e.remote_summary();
                    shard.machine.borrow_mut().handle_flush_failed(key, why)
                }
            };
            carry_out(&shard, actions);
        }
        shard.metrics.group_commit(appends, bytes);
    }
}
