//! The shard's background scrub: re-reads its sealed segments at the rate
//! [`ScrubPacer`] allows, checks every record (magic, offset, both crcs),
//! and marks a segment damaged from its first bad record, as recovery
//! would have: the machine then refuses reads from there with `Damaged`.

use std::rc::Rc;
use std::time::Duration;

use trilog_protocol::shard::SegmentKey;

use crate::runtime::ShardRuntime;
use crate::scrub::{ScrubPacer, ScrubStep, SCRUB_READ_BYTES};
use crate::server::actions::carry_out;
use crate::server::shard::Shard;
use crate::storage::StorageError;

/// Runs forever on the shard's executor.
pub async fn run_scrub<R: ShardRuntime>(shard: Rc<Shard<R>>) {
    let mut pacer = ScrubPacer::new(shard.scrub_bytes_per_sec.get());
    loop {
        pacer.set_rate(shard.scrub_bytes_per_sec.get());
        pacer.set_pass_pause(shard.scrub_pass_pause_ms.get());
        let segments = shard.machine.borrow().scrubbable();
        match pacer.next(shard.now_ms(), &segments) {
            ScrubStep::Wait { until_ms } => sleep_until(&shard, until_ms).await,
            ScrubStep::Scrub { key, len } => scrub_segment(&shard, &mut pacer, key, len).await,
        }
    }
}

async fn sleep_until<R: ShardRuntime>(shard: &Shard<R>, until_ms: u64) {
    let now_ms = shard.now_ms();
    if until_ms > now_ms {
        shard
            .rt
            .sleep(Duration::from_millis(until_ms - now_ms))
            .await;
    }
}

/// Re-reads entries `[0, len)` of `key`, a read at a time, each when the
/// pacer allows it.
async fn scrub_segment<R: ShardRuntime>(
    shard: &Rc<Shard<R>>,
    pacer: &mut ScrubPacer,
    key: SegmentKey,
    len: u64,
) {
    let mut from = 0;
    while from < len {
        // The segment may have been removed or found damaged meanwhile.
        let still = shard
            .machine
            .borrow()
            .scrubbable()
            .iter()
            .any(|(k, l)| *k == key && *l == len);
        if !still {
            return;
        }
        let plan = shard
            .file(key)
            .borrow()
            .read_plan(from, len, SCRUB_READ_BYTES);
        let Some(plan) = plan else { return };
        let (count, bytes) = match plan.run().await {
            Ok(read) => read,
            // The read checks every record (magic, offset, both crcs).
            Err(StorageError::CorruptRecord { offset, source, .. }) => {
                shard.metrics.damage_found.inc();
                tracing::error!(
                    "{key:?}: DAMAGE found by the scrub: {source}: entries from offset {offset} on are not served (the segment should hold {len}); they are dropped and healed from another replica"
                );
                let actions = shard.machine.borrow_mut().mark_damaged(key, offset);
                carry_out(shard, actions);
                return;
            }
            Err(e) => {
                // An IO error is not proof of bad data; the next pass
                // tries again.
                tracing::warn!("{key:?}: scrub read at offset {from}: {e}");
                return;
            }
        };
        from += u64::from(count);
        shard.metrics.scrub_bytes.inc_by(bytes.len() as u64);
        let until_ms = pacer.on_read(shard.now_ms(), bytes.len() as u64);
        sleep_until(shard, until_ms).await;
    }
}
