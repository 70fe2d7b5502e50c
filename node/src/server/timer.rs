//! The shard's one timer: sleeps until the machine's next deadline
//! (`ShardMachine::poll_timeout`, the earliest long-poll read), then lets
//! the machine answer what is due (`handle_timeout`). Woken early when a
//! read brings that deadline forward.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::FutureExt;

use crate::runtime::ShardRuntime;

use crate::server::actions::carry_out;
use crate::server::shard::Shard;

/// Runs forever on the shard's executor.
pub async fn run_timer<R: ShardRuntime>(shard: Rc<Shard<R>>) {
    loop {
        let listener = shard.timer_event.listen();
        let next_ms = shard.machine.borrow().poll_timeout();
        let Some(at_ms) = next_ms else {
            listener.await;
            continue;
        };
        let now_ms = shard.now_ms();
        if at_ms <= now_ms {
            let actions = shard.machine.borrow_mut().handle_timeout(now_ms);
            carry_out(&shard, actions);
            continue;
        }
        let sleep = shard.rt.sleep(Duration::from_millis(at_ms - now_ms));
        listener.or(sleep).await;
    }
}
