//! The shard's side of healing (see `trilog_protocol::shard`'s `heal`):
//! every [`HEAL_CHECK_MS`] it drops the damaged entries of its sealed
//! replicas, from the machine and the index together, then reports the
//! replicas that miss entries below their seal to the node's
//! [`RepairBoard`](crate::repair_board::RepairBoard), where the repair
//! thread finds them and sends the heal appends.

use std::rc::Rc;
use std::time::Duration;

use trilog_protocol::repair::HEAL_CHECK_MS;
use trilog_protocol::shard::SegmentKey;

use crate::runtime::ShardRuntime;
use crate::server::actions::carry_out;
use crate::server::shard::Shard;

/// Runs forever on the shard's executor.
pub async fn run_heal<R: ShardRuntime>(shard: Rc<Shard<R>>) {
    loop {
        shard.rt.sleep(Duration::from_millis(HEAL_CHECK_MS)).await;
        let damaged = shard.machine.borrow().damaged_sealed();
        for (key, from) in damaged {
            rewind(&shard, key, from).await;
        }
        let board = shard.board.borrow().clone();
        if let Some(board) = board {
            board.report(shard.shard, shard.machine.borrow().healing());
            shard.machine.borrow_mut().set_repairing(board.repairing());
        }
    }
}

/// Drops entries `from` on of `key`, if the machine still says so once
/// the block before them is read.
async fn rewind<R: ShardRuntime>(shard: &Rc<Shard<R>>, key: SegmentKey, from: u64) {
    let still = shard
        .machine
        .borrow()
        .damaged_sealed()
        .contains(&(key, from));
    if !still {
        return;
    }
    let plan = shard.file(key).borrow_mut().rewind_plan(from);
    let rewind = match plan.run().await {
        Ok(rewind) => rewind,
        Err(e) => {
            // An IO error is not a reason to drop more; the next check
            // tries again.
            tracing::warn!("{key:?}: cannot read the block before the damage at {from}: {e}");
            return;
        }
    };
    // The machine decides again: the segment may have been deleted or
    // failed while the block was read. Machine and index change together.
    let Some(actions) = shard.machine.borrow_mut().rewind_damage(key, from) else {
        return;
    };
    shard.file(key).borrow_mut().rewind(rewind);
    tracing::warn!(
        "{key:?}: dropped the damaged entries from offset {from} on; the copy is healed from another replica"
    );
    carry_out(shard, actions);
}
