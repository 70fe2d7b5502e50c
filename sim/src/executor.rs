//! A deterministic executor with a virtual clock, for one seeded thread.
//!
//! Every future of a simulated cluster (the nodes' shard loops, the clients'
//! drivers, the harness itself) is a task of one [`Sim`]. A step runs one
//! ready task, chosen by the seeded [`Rng`]; when no task is ready, the
//! virtual clock jumps to the earliest timer and fires every timer due then.
//! Nothing here reads the wall clock, spawns a thread or iterates a hash map,
//! so a seed replays exactly, step by step.
//!
//! Tasks belong to a [`ProcessId`]: killing a process drops every one of its
//! tasks at once, at whatever await point each was, the way `kill -9` stops
//! a real process (its sockets and unsynced writes are the network's and
//! the disk's business: see `net` and the harness).
//!
//! The [`SimHandle`] is `Send + Sync` because the client's runtime interface
//! asks for it, but it must only be used on the thread that owns its
//! [`Sim`]: spawning from another thread panics.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use crate::rng::Rng;

/// A simulated process (a node or a client); tasks belong to one.
pub type ProcessId = u32;

/// The harness's own process: never killed.
pub const HARNESS: ProcessId = 0;

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
type TaskId = u64;

/// Something the clock does at a given time.
enum Timer {
    /// Wake a task (a sleep ended).
    Wake(Waker),
    /// Run a closure (a message arrives, a disk write completes).
    Event(Box<dyn FnOnce() + Send>),
}

struct TimerEntry {
    at_ns: u64,
    /// Ties at one instant fire in the order they were set.
    seq: u64,
    timer: Timer,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.seq) == (other.at_ns, other.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.seq).cmp(&(other.at_ns, other.seq))
    }
}

struct Inner {
    now_ns: u64,
    ready: BTreeSet<TaskId>,
    timers: BinaryHeap<Reverse<TimerEntry>>,
    next_seq: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    thread: ThreadId,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock is held ends the run anyway; the state
        // it left is still the best account of what happened.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a spawn left for the executor to pick up after the poll that made
/// it (the task map is borrowed while a task runs).
struct Spawned {
    id: TaskId,
    process: ProcessId,
    future: LocalFuture,
}

thread_local! {
    /// Tasks spawned during the current step, not yet in the task map.
    static SPAWNED: RefCell<Vec<Spawned>> = const { RefCell::new(Vec::new()) };
    /// The process of the task being polled (spawns inherit it).
    static CURRENT: Cell<ProcessId> = const { Cell::new(HARNESS) };
    static NEXT_TASK: Cell<TaskId> = const { Cell::new(1) };
}

struct TaskWaker {
    id: TaskId,
    shared: Weak<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().ready.insert(self.id);
        }
    }
}

struct Task {
    process: ProcessId,
    future: LocalFuture,
    waker: Waker,
}

/// A handle on the simulation's clock and spawner; see the module doc for
/// the one-thread rule.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimHandle(t={:?})", self.now())
    }
}

impl SimHandle {
    /// The virtual time since the simulation began.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.shared.lock().now_ns)
    }

    fn now_ns(&self) -> u64 {
        self.shared.lock().now_ns
    }

    /// Spawns `future` into the process of the task that calls this (the
    /// harness's, outside any task).
    pub fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        self.spawn_in(CURRENT.with(Cell::get), future);
    }

    /// Spawns `future` into `process`.
    pub fn spawn_in(&self, process: ProcessId, future: impl Future<Output = ()> + 'static) {
        assert_eq!(
            std::thread::current().id(),
            self.shared.thread,
            "a simulation is driven from one thread"
        );
        let id = NEXT_TASK.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        SPAWNED.with(|s| {
            s.borrow_mut().push(Spawned {
                id,
                process,
                future: Box::pin(future),
            })
        });
    }

    /// A future that completes `after` from now (virtual time).
    pub fn sleep(&self, after: Duration) -> Sleep {
        let at_ns = self.now_ns().saturating_add(nanos(after));
        Sleep {
            shared: self.shared.clone(),
            at_ns,
            registered: None,
        }
    }

    /// Runs `event` `after` from now, from the executor's loop (not inside
    /// a task). Events set for one instant run in the order they were set.
    pub fn schedule(&self, after: Duration, event: impl FnOnce() + Send + 'static) {
        let mut inner = self.shared.lock();
        let at_ns = inner.now_ns.saturating_add(nanos(after));
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.timers.push(Reverse(TimerEntry {
            at_ns,
            seq,
            timer: Timer::Event(Box::new(event)),
        }));
    }

    /// The process of the task being polled now.
    pub fn current_process(&self) -> ProcessId {
        CURRENT.with(Cell::get)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The future of [`SimHandle::sleep`].
pub struct Sleep {
    shared: Arc<Shared>,
    at_ns: u64,
    /// The waker last registered with the clock.
    registered: Option<Waker>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.shared.lock();
        if inner.now_ns >= self.at_ns {
            return Poll::Ready(());
        }
        let fresh = !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if fresh {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let at_ns = self.at_ns;
            inner.timers.push(Reverse(TimerEntry {
                at_ns,
                seq,
                timer: Timer::Wake(cx.waker().clone()),
            }));
            drop(inner);
            self.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// What one [`Sim::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A task was polled.
    Ran { process: ProcessId },
    /// No task was ready: the clock moved to the next timer and fired it.
    Advanced,
    /// No task is ready and no timer is set: nothing will ever happen.
    Idle,
}

/// The executor (see the module doc). Only one runs per thread at a time.
pub struct Sim {
    handle: SimHandle,
    tasks: BTreeMap<TaskId, Task>,
    killed: BTreeSet<ProcessId>,
    rng: Rng,
    steps: u64,
}

thread_local! {
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

impl Sim {
    /// A simulation at time 0 whose scheduling choices come from `rng`.
    pub fn new(rng: Rng) -> Sim {
        assert!(
            !RUNNING.with(Cell::get),
            "one simulation per thread at a time"
        );
        RUNNING.with(|r| r.set(true));
        SPAWNED.with(|s| s.borrow_mut().clear());
        CURRENT.with(|c| c.set(HARNESS));
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                now_ns: 0,
                ready: BTreeSet::new(),
                timers: BinaryHeap::new(),
                next_seq: 0,
            }),
            thread: std::thread::current().id(),
        });
        Sim {
            handle: SimHandle { shared },
            tasks: BTreeMap::new(),
            killed: BTreeSet::new(),
            rng,
            steps: 0,
        }
    }

    pub fn handle(&self) -> &SimHandle {
        &self.handle
    }

    pub fn now(&self) -> Duration {
        self.handle.now()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Tasks alive in `process`.
    pub fn task_count(&self, process: ProcessId) -> usize {
        self.tasks.values().filter(|t| t.process == process).count()
    }

    /// Drops every task of `process` now; later spawns into it are
    /// dropped too. A restarted process takes a new id.
    pub fn kill(&mut self, process: ProcessId) {
        assert_ne!(process, HARNESS, "the harness is not killed");
        self.killed.insert(process);
        let doomed: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.process == process)
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            if let Some(task) = self.tasks.remove(&id) {
                // Destructors run as part of the dying process.
                let before = CURRENT.with(|c| c.replace(process));
                drop(task);
                CURRENT.with(|c| c.set(before));
            }
        }
        self.adopt_spawned();
    }

    fn adopt_spawned(&mut self) {
        let spawned = SPAWNED.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let mut inner = self.handle.shared.lock();
        for s in spawned {
            if self.killed.contains(&s.process) {
                continue;
            }
            let waker = Waker::from(Arc::new(TaskWaker {
                id: s.id,
                shared: Arc::downgrade(&self.handle.shared),
            }));
            inner.ready.insert(s.id);
            self.tasks.insert(
                s.id,
                Task {
                    process: s.process,
                    future: s.future,
                    waker,
                },
            );
        }
    }

    /// Runs one ready task, or moves the clock to the next timer.
    pub fn step(&mut self) -> Step {
        self.adopt_spawned();
        self.steps += 1;
        let picked = {
            let mut inner = self.handle.shared.lock();
            // Wakes of tasks that finished or were killed are dropped here.
            let tasks = &self.tasks;
            inner.ready.retain(|id| tasks.contains_key(id));
            let n = inner.ready.len();
            if n == 0 {
                None
            } else {
                let at = self.rng.index(n);
                let id = inner.ready.iter().nth(at).copied();
                if let Some(id) = id {
                    inner.ready.remove(&id);
                }
                id
            }
        };
        match picked {
            Some(id) => self.poll_task(id),
            None => self.advance(),
        }
    }

    fn poll_task(&mut self, id: TaskId) -> Step {
        let Some(task) = self.tasks.get_mut(&id) else {
            unreachable!("ready tasks were filtered against the task map");
        };
        let process = task.process;
        let waker = task.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let before = CURRENT.with(|c| c.replace(process));
        let done = task.future.as_mut().poll(&mut cx).is_ready();
        CURRENT.with(|c| c.set(before));
        if done {
            self.tasks.remove(&id);
        }
        self.adopt_spawned();
        Step::Ran { process }
    }

    fn advance(&mut self) -> Step {
        let due = {
            let mut inner = self.handle.shared.lock();
            let Some(Reverse(first)) = inner.timers.pop() else {
                return Step::Idle;
            };
            assert!(first.at_ns >= inner.now_ns, "the clock never goes back");
            inner.now_ns = first.at_ns;
            let mut due = vec![first.timer];
            while inner
                .timers
                .peek()
                .is_some_and(|Reverse(t)| t.at_ns == inner.now_ns)
            {
                if let Some(Reverse(t)) = inner.timers.pop() {
                    due.push(t.timer);
                }
            }
            due
        };
        // Outside the lock: wakes and events take it themselves.
        for timer in due {
            match timer {
                Timer::Wake(w) => w.wake(),
                Timer::Event(f) => f(),
            }
        }
        self.adopt_spawned();
        Step::Advanced
    }

    /// Steps until `done` holds, the clock passes `limit`, or nothing can
    /// happen any more. Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            self.adopt_spawned();
            if done(self) {
                return true;
            }
            if self.now() > limit {
                return false;
            }
            if self.step() == Step::Idle {
                return done(self);
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Futures may wake or spawn as they are dropped: drop them while
        // this simulation is still the thread's, then forget the leftovers.
        let tasks = std::mem::take(&mut self.tasks);
        drop(tasks);
        SPAWNED.with(|s| s.borrow_mut().clear());
        CURRENT.with(|c| c.set(HARNESS));
        RUNNING.with(|r| r.set(false));
    }
}

/// The output of a task spawned with [`spawn_with_output`], once it is done.
#[derive(Debug)]
pub struct Output<T> {
    slot: Arc<Mutex<Option<T>>>,
}

impl<T> Clone for Output<T> {
    fn clone(&self) -> Self {
        Output {
            slot: self.slot.clone(),
        }
    }
}

impl<T> Output<T> {
    /// Takes the output if the task finished.
    pub fn take(&self) -> Option<T> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn is_done(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// Spawns `future` into `process` and keeps its output for the harness.
pub fn spawn_with_output<T: 'static>(
    handle: &SimHandle,
    process: ProcessId,
    future: impl Future<Output = T> + 'static,
) -> Output<T> {
    let slot = Arc::new(Mutex::new(None));
    let out = slot.clone();
    handle.spawn_in(process, async move {
        let value = future.await;
        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    });
    Output { slot }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(seed: u64) -> Vec<(u64, u32)> {
        let mut sim = Sim::new(Rng::new(seed));
        let log = Arc::new(Mutex::new(Vec::new()));
        for t in 0..4u32 {
            let h = sim.handle().clone();
            let log = log.clone();
            sim.handle().spawn_in(1, async move {
                for i in 0..3u64 {
                    h.sleep(Duration::from_micros(10 * (i + u64::from(t))))
                        .await;
                    let now = h.now().as_micros() as u64;
                    log.lock().expect("log").push((now, t));
                }
            });
        }
        assert!(sim.run_until(Duration::from_secs(1), |s| s.task_count(1) == 0));
        let out = log.lock().expect("log").clone();
        out
    }

    #[test]
    fn time_moves_only_by_timers_and_a_seed_replays() {
        let a = trace(3);
        assert_eq!(a, trace(3), "same seed, same run");
        assert_eq!(a.len(), 12);
        // Task t sleeps 10(i + t) us before its i-th entry: it logs at 10t,
        // 20t + 10 and 30t + 30, in virtual time exactly.
        for t in 0..4u64 {
            let times: Vec<u64> = a
                .iter()
                .filter(|(_, who)| u64::from(*who) == t)
                .map(|(at, _)| *at)
                .collect();
            assert_eq!(times, vec![10 * t, 20 * t + 10, 30 * t + 30]);
        }
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0), "time is monotone");
    }

    #[test]
    fn killing_a_process_drops_its_tasks_and_later_spawns() {
        let mut sim = Sim::new(Rng::new(1));
        let h = sim.handle().clone();
        let ran = Arc::new(Mutex::new(0u32));
        for p in [1, 2] {
            let h2 = h.clone();
            let ran = ran.clone();
            h.spawn_in(p, async move {
                loop {
                    h2.sleep(Duration::from_millis(1)).await;
                    *ran.lock().expect("ran") += 1;
                }
            });
        }
        sim.run_until(Duration::from_millis(5), |_| false);
        assert_eq!(sim.task_count(1), 1);
        sim.kill(1);
        assert_eq!(sim.task_count(1), 0);
        h.spawn_in(1, async {});
        sim.step();
        assert_eq!(
            sim.task_count(1),
            0,
            "a spawn into a dead process is dropped"
        );
        let before = *ran.lock().expect("ran");
        sim.run_until(Duration::from_millis(10), |_| false);
        let after = *ran.lock().expect("ran");
        assert!(after > before, "process 2 lives on");
        assert_eq!(sim.task_count(2), 1);
    }

    #[test]
    fn events_run_at_their_time_and_outputs_are_kept() {
        let mut sim = Sim::new(Rng::new(9));
        let h = sim.handle().clone();
        let hit = Arc::new(Mutex::new(None));
        let hit2 = hit.clone();
        let h2 = h.clone();
        h.schedule(Duration::from_micros(250), move || {
            *hit2.lock().expect("hit") = Some(h2.now());
        });
        let h3 = h.clone();
        let out = spawn_with_output(&h, 3, async move {
            h3.sleep(Duration::from_millis(2)).await;
            7u8
        });
        assert!(sim.run_until(Duration::from_secs(1), |_| out.is_done()));
        assert_eq!(out.take(), Some(7));
        assert_eq!(*hit.lock().expect("hit"), Some(Duration::from_micros(250)));
        assert_eq!(sim.now(), Duration::from_millis(2));
        assert_eq!(sim.step(), Step::Idle);
    }
}
