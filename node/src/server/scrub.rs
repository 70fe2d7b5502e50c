//! The shard's background scrub: re-reads its sealed segments at the rate
//! [`ScrubPacer`] allows, checks every record (magic, offset, both crcs),
//! and marks a segment damaged from its first bad record, as recovery
//! would have: the machine then refuses reads from there with `Damaged`.

use std::rc::Rc;
use std::time::Duration;

use trilog_protocol::shard::SegmentKey;
use trilog_wire::record::{parse_record, Parsed};

use crate::runtime::ShardRuntime;
use crate::scrub::{ScrubPacer, ScrubStep, SCRUB_READ_BYTES};
use crate::server::actions::carry_out;
use crate::server::shard::Shard;

/// Runs forever on the shard's executor.
pub async fn run_scrub<R: ShardRuntime>(shard: Rc<Shard<R>>) {
    let mut pacer = ScrubPacer::new(shard.scrub_bytes_per_sec.get());
    loop {
        pacer.set_rate(shard.scrub_bytes_per_sec.get());
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
            Err(e) => {
                // An IO error is not proof of bad data; the next pass
                // tries again.
                log::warn!("{key:?}: scrub read at offset {from}: {e}");
                return;
            }
        };
        if let Some((bad, why)) = first_bad_record(&bytes, from, count) {
            log::error!(
                "{key:?}: DAMAGE found by the scrub: {why} at offset {bad}: entries from offset {bad} on are not served (the segment should hold {len}); the file is left as it is"
            );
            let actions = shard.machine.borrow_mut().mark_damaged(key, bad);
            carry_out(shard, actions);
            return;
        }
        from += u64::from(count);
        let until_ms = pacer.on_read(shard.now_ms(), bytes.len() as u64);
        sleep_until(shard, until_ms).await;
    }
}

/// The first of `count` records from offset `from` in `bytes` that does
/// not check out, with why.
fn first_bad_record(bytes: &[u8], from: u64, count: u32) -> Option<(u64, String)> {
    let mut pos = 0usize;
    for offset in from..from + u64::from(count) {
        match parse_record(&bytes[pos.min(bytes.len())..], offset) {
            Ok(Parsed::Record { header, .. }) => pos += header.encoded_len(),
            Ok(Parsed::End) => return Some((offset, "zeros where a record should be".into())),
            Err(e) => return Some((offset, e.to_string())),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use trilog_wire::record::encode_record;

    use super::*;

    #[test]
    fn the_first_bad_record_is_named() {
        let mut bytes = Vec::new();
        for offset in 10..14 {
            let payload = vec![offset as u8; 50];
            encode_record(&mut bytes, offset, 0, crc32c::crc32c(&payload), &payload);
        }
        assert_eq!(first_bad_record(&bytes, 10, 4), None);
        let second = 32 + 50;
        bytes[second + 32 + 7] ^= 1;
        assert!(matches!(first_bad_record(&bytes, 10, 4), Some((11, _))));
        bytes.truncate(second + 10);
        assert!(matches!(first_bad_record(&bytes, 10, 2), Some((11, _))));
    }
}
