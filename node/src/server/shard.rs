//! One shard's driver state: its [`ShardMachine`], which makes every
//! decision, and the resources the machine does not hold: the segment
//! files, the connections, the set of segments for the next group commit
//! and the runtime (disk, clock, tasks: glommio's, or the simulator's).
//! Everything here lives on one executor; nothing is shared across cores.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;
use trilog_protocol::replica::Durable;
use trilog_protocol::shard::{ConnId, SegmentKey, ShardMachine};

use crate::metrics::ShardMetrics;
use crate::repair_board::RepairBoard;
use crate::runtime::ShardRuntime;
use crate::server::conns::Conn;
use crate::server::outbox::Outbox;
use crate::server::records::RecordSource;
use crate::space::NodeSpace;
use crate::storage::{self, CtlState};

/// A segment replica on the runtime's disk.
pub type SegmentFile<R> = crate::storage::SegmentFile<<R as ShardRuntime>::Disk>;

/// A segment's files, shared by the tasks that run its IO (never borrowed
/// across an `.await`: see the storage module doc).
pub type File<R> = Rc<RefCell<SegmentFile<R>>>;

/// The shard's state.
pub struct Shard<R: ShardRuntime> {
    pub rt: R,
    pub node_id: u64,
    pub shard: u32,
    pub shard_ports: Vec<u16>,
    pub dir: PathBuf,
    /// Borrowed only for one call at a time, never across an `.await`.
    pub machine: RefCell<ShardMachine>,
    files: RefCell<BTreeMap<SegmentKey, File<R>>>,
    conns: RefCell<BTreeMap<ConnId, Rc<Conn>>>,
    next_conn: Cell<u64>,
    /// Segments with staged entries, for the next group commit.
    pub dirty: RefCell<BTreeSet<SegmentKey>>,
    pub dirty_event: Event,
    /// Notified when a read may have brought the machine's next deadline
    /// forward, so the timer task sleeps again.
    pub timer_event: Event,
    pub connections: Cell<usize>,
    /// Notified when a connection ends (`connections` went down).
    conn_ended: Event,
    /// The node is stopping: set once, never cleared (`crate::server::drain`).
    draining: Cell<bool>,
    drain_event: Event,
    /// Where the machine's record lookups go (none: it never asks).
    pub records: Option<Rc<dyn RecordSource>>,
    /// The scrub's rate; read before each step, so it may be set after
    /// the shard started.
    pub scrub_bytes_per_sec: Cell<u64>,
    /// The scrub's pause between passes, read the same way.
    pub scrub_pass_pause_ms: Cell<u64>,
    /// The bytes of requests in flight on all connections together
    /// (`crate::limits::SHARD_REQUEST_BYTES_MAX`).
    pub requests: Rc<crate::server::budget::Budget>,
    /// How long a connection that sends nothing and is owed nothing stays
    /// open (`crate::limits::CONN_IDLE_MS_DEFAULT` until set).
    pub conn_idle_ms: Cell<u64>,
    /// The node's disk space and read-only mode (`crate::space`), set
    /// before the shard serves; none (the simulator): never read-only.
    pub space: RefCell<Option<Arc<NodeSpace>>>,
    /// Where the shard reports its copies to heal (`crate::repair_board`), set
    /// before the shard serves; none (the simulator): healed by no one.
    pub board: RefCell<Option<Arc<RepairBoard>>>,
    /// What the shard counts (`crate::metrics`).
    pub metrics: ShardMetrics,
    /// Appends and payload bytes staged since the group commit last took
    /// its round: the size of the next round, for the metrics.
    round_appends: Cell<u64>,
    round_bytes: Cell<u64>,
}

impl<R: ShardRuntime> Shard<R> {
    pub fn new(
        rt: R,
        node_id: u64,
        shard: u32,
        shard_ports: Vec<u16>,
        dir: PathBuf,
        records: Option<Rc<dyn RecordSource>>,
        metrics: ShardMetrics,
    ) -> Rc<Shard<R>> {
        let shard_count = shard_ports.len() as u32;
        Rc::new(Shard {
            rt,
            node_id,
            shard,
            machine: RefCell::new(ShardMachine::new(shard, shard_count)),
            shard_ports,
            dir,
            files: RefCell::new(BTreeMap::new()),
            conns: RefCell::new(BTreeMap::new()),
            next_conn: Cell::new(1),
            dirty: RefCell::new(BTreeSet::new()),
            dirty_event: Event::new(),
            timer_event: Event::new(),
            connections: Cell::new(0),
            conn_ended: Event::new(),
            draining: Cell::new(false),
            drain_event: Event::new(),
            records,
            scrub_bytes_per_sec: Cell::new(crate::scrub::SCRUB_BYTES_PER_SEC_DEFAULT),
            conn_idle_ms: Cell::new(crate::limits::CONN_IDLE_MS_DEFAULT),
            requests: crate::server::budget::Budget::new(crate::limits::SHARD_REQUEST_BYTES_MAX),
            scrub_pass_pause_ms: Cell::new(crate::scrub::SCRUB_PASS_PAUSE_MS),
            space: RefCell::new(None),
            board: RefCell::new(None),
            metrics,
            round_appends: Cell::new(0),
            round_bytes: Cell::new(0),
        })
    }

    /// The node is stopping: every task waiting in [`Shard::drained`]
    /// wakes.
    pub fn start_draining(&self) {
        self.draining.set(true);
        self.drain_event.notify(usize::MAX);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once the node is stopping (at once if it is already).
    pub async fn drained(&self) {
        loop {
            if self.draining.get() {
                return;
            }
            let listener = self.drain_event.listen();
            if self.draining.get() {
                return;
            }
            listener.await;
        }
    }

    /// A connection began (the accept loop counts it).
    pub fn conn_began(&self) {
        self.connections.set(self.connections.get() + 1);
        self.metrics.connections.inc();
    }

    /// A connection ended, however.
    pub fn conn_done(&self) {
        let open = self.connections.get();
        assert!(open > 0, "shard {}: a connection ended twice", self.shard);
        self.connections.set(open - 1);
        self.metrics.connections.dec();
        self.conn_ended.notify(usize::MAX);
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            if self.connections.get() == 0 {
                return;
            }
            let listener = self.conn_ended.listen();
            if self.connections.get() == 0 {
                return;
            }
            listener.await;
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_ports.len() as u32
    }

    /// The shard's clock, in milliseconds (the runtime's).
    pub fn now_ms(&self) -> u64 {
        self.rt.now_ms()
    }

    /// Adds a segment's files, created or recovered.
    pub fn add_file(&self, key: SegmentKey, file: SegmentFile<R>) {
        let old = self
            .files
            .borrow_mut()
            .insert(key, Rc::new(RefCell::new(file)));
        assert!(old.is_none(), "{key:?}: files opened twice");
        self.metrics.segments.inc();
    }

    /// The files of a segment the machine named. The machine names only
    /// segments that exist, so a missing one is a bug.
    pub fn file(&self, key: SegmentKey) -> File<R> {
        match self.files.borrow().get(&key) {
            Some(file) => file.clone(),
            None => panic!("{key:?}: the machine named a segment without files"),
        }
    }

    /// Takes a deleted segment's files out of the shard (jobs still running
    /// keep their handles) and out of the next group commit.
    pub fn take_file(&self, key: SegmentKey) -> Option<File<R>> {
        self.dirty.borrow_mut().remove(&key);
        let file = self.files.borrow_mut().remove(&key);
        if file.is_some() {
            self.metrics.segments.dec();
        }
        file
    }

    /// Counts an append staged for the next group commit round.
    pub fn staged_append(&self, bytes: u64) {
        self.round_appends.set(self.round_appends.get() + 1);
        self.round_bytes.set(self.round_bytes.get() + bytes);
    }

    /// The appends and bytes staged since the last call: a round's size.
    pub fn take_round(&self) -> (u64, u64) {
        (self.round_appends.replace(0), self.round_bytes.replace(0))
    }

    /// Tells the machine whether the node's disk is read-only now, and
    /// whether the node is leaving.
    pub fn sync_space(&self) {
        if let Some(space) = self.space.borrow().as_ref() {
            let mut machine = self.machine.borrow_mut();
            machine.set_read_only(space.is_full());
            machine.set_leaving(space.is_leaving());
        }
    }

    /// An allocation failed for space (ENOSPC, EDQUOT): the node turns
    /// read-only at once, every shard from its next request.
    pub fn report_no_space(&self) {
        if let Some(space) = self.space.borrow().as_ref() {
            if !space.is_full() {
                tracing::warn!(
                    "node {} shard {}: an allocation failed for space: read-only",
                    self.node_id,
                    self.shard
                );
            }
            space.no_space();
            self.machine.borrow_mut().set_read_only(true);
        }
    }

    /// Registers a new connection and returns its id.
    pub fn open_conn(&self, outbox: Rc<Outbox>) -> (ConnId, Rc<Conn>) {
        let id = ConnId(self.next_conn.get());
        self.next_conn.set(id.0 + 1);
        let conn = Rc::new(Conn::new(outbox));
        self.conns.borrow_mut().insert(id, conn.clone());
        (id, conn)
    }

    /// Forgets a connection: what it held goes, and the machine owes it
    /// nothing more.
    pub fn close_conn(&self, id: ConnId) {
        self.conns.borrow_mut().remove(&id);
        self.machine.borrow_mut().handle_conn_closed(id);
    }

    /// The connection `id`, unless it closed.
    pub fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    pub fn mark_dirty(&self, key: SegmentKey) {
        self.dirty.borrow_mut().insert(key);
        self.dirty_event.notify(1);
    }
}

/// The machine's name of a segment the storage names.
pub fn machine_key(key: storage::SegmentKey) -> SegmentKey {
    SegmentKey {
        log_id: key.log_id,
        segment: key.segment,
    }
}

pub fn durable_to_ctl(d: Durable) -> CtlState {
    CtlState {
        fenced_epoch: d.fenced_epoch,
        sealed_len: d.sealed_len,
        watermark: d.watermark,
    }
}

pub fn ctl_to_durable(c: CtlState) -> Durable {
    Durable {
        fenced_epoch: c.fenced_epoch,
        sealed_len: c.sealed_len,
        watermark: c.watermark,
    }
}
