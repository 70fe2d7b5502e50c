//! What a shard needs from the world besides its sockets: a disk, a clock,
//! timers and a way to run tasks. The server is generic over it, so the
//! very code that serves a shard on glommio ([`GlommioRuntime`]: io_uring,
//! `O_DIRECT`, glommio's timers and executor) runs unchanged in the
//! deterministic simulator (`trilog-sim`), on a simulated disk, a virtual
//! clock and a seeded executor.
//!
//! Tasks are local to the shard's thread (futures need not be `Send`): the
//! node is thread-per-core, and nothing a shard owns crosses cores.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::storage::{Disk, GlommioDisk};

/// A shard's disk, clock, timers and tasks (see the module doc).
pub trait ShardRuntime: Clone + 'static {
    type Disk: Disk;

    fn disk(&self) -> &Self::Disk;

    /// Milliseconds on a monotonic clock (the machines' `now`).
    fn now_ms(&self) -> u64;

    /// Runs `task` on the shard's executor until it ends.
    fn spawn(&self, task: impl Future<Output = ()> + 'static);

    /// Completes `after` from now.
    fn sleep(&self, after: Duration) -> impl Future<Output = ()> + 'static;
}

/// The real thing: the shard's glommio executor and the real disk.
#[derive(Debug, Clone)]
pub struct GlommioRuntime {
    started: Instant,
}

impl GlommioRuntime {
    pub fn new() -> GlommioRuntime {
        GlommioRuntime {
            started: Instant::now(),
        }
    }
}

impl Default for GlommioRuntime {
    fn default() -> Self {
        GlommioRuntime::new()
    }
}

impl ShardRuntime for GlommioRuntime {
    type Disk = GlommioDisk;

    fn disk(&self) -> &GlommioDisk {
        &GlommioDisk
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        glommio::spawn_local(task).detach();
    }

    fn sleep(&self, after: Duration) -> impl Future<Output = ()> + 'static {
        glommio::timer::sleep(after)
    }
}
