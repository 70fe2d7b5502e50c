//! One shard: the segments of one core, their replica state machines, and
//! the connections waiting on them. Everything here lives on one glommio
//! executor; nothing is shared across cores.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use event_listener::Event;
use glommio::sync::{Semaphore, StaticPermit};
use trilog_protocol::replica::{Durable, Replica};

use crate::server::outbox::Outbox;
use crate::storage::{CtlState, GlommioDisk, SegmentHeader, SegmentKey, StorageError};

/// The node's segment replicas live on the real disk.
type SegmentFile = crate::storage::SegmentFile<GlommioDisk>;

/// An ack owed to a connection once a segment is durable far enough.
pub struct AckWaiter {
    pub end: u64,
    pub request_id: u64,
    pub outbox: Rc<Outbox>,
    /// The connection's in-flight bytes, given back with the ack.
    pub permit: Option<StaticPermit>,
}

/// One segment replica on this shard.
pub struct Slot {
    pub key: SegmentKey,
    pub file: RefCell<SegmentFile>,
    pub replica: RefCell<Replica>,
    /// Notified whenever what is durable, committed or sealed moves, so
    /// long-polling reads and fence answers can re-check.
    pub changed: Event,
    pub waiters: RefCell<Vec<AckWaiter>>,
    /// Serializes control writes (fence, seal) of this segment.
    pub ctl_lock: Rc<Semaphore>,
    /// A disk error makes the segment refuse everything from then on: its
    /// state in memory may no longer match the disk.
    pub failed: RefCell<Option<String>>,
}

impl Slot {
    pub fn new(file: SegmentFile, replica: Replica) -> Rc<Slot> {
        let key = file.key();
        Rc::new(Slot {
            key,
            file: RefCell::new(file),
            replica: RefCell::new(replica),
            changed: Event::new(),
            waiters: RefCell::new(Vec::new()),
            ctl_lock: Rc::new(Semaphore::new(1)),
            failed: RefCell::new(None),
        })
    }

    pub fn fail(&self, why: &StorageError) {
        log::error!("segment {:?} failed: {why}", self.key);
        *self.failed.borrow_mut() = Some(why.to_string());
        self.changed.notify(usize::MAX);
    }

    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
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

/// The shard's state.
pub struct Shard {
    pub node_id: u64,
    pub shard: u32,
    pub shard_ports: Vec<u16>,
    pub dir: PathBuf,
    pub slots: RefCell<HashMap<SegmentKey, Rc<Slot>>>,
    /// Segments being created, so two appends do not create one twice.
    creating: RefCell<HashMap<SegmentKey, Rc<Event>>>,
    /// Segments with staged entries, for the next group commit.
    pub dirty: RefCell<BTreeSet<SegmentKey>>,
    pub dirty_event: Event,
    /// Notified when a segment is created, for reads that arrived first.
    pub created: Event,
    pub connections: Cell<usize>,
}

impl Shard {
    pub fn new(node_id: u64, shard: u32, shard_ports: Vec<u16>, dir: PathBuf) -> Rc<Shard> {
        Rc::new(Shard {
            node_id,
            shard,
            shard_ports,
            dir,
            slots: RefCell::new(HashMap::new()),
            creating: RefCell::new(HashMap::new()),
            dirty: RefCell::new(BTreeSet::new()),
            dirty_event: Event::new(),
            created: Event::new(),
            connections: Cell::new(0),
        })
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_ports.len() as u32
    }

    pub fn get(&self, key: SegmentKey) -> Option<Rc<Slot>> {
        self.slots.borrow().get(&key).cloned()
    }

    /// The slot of `key`, created (files on disk, synced) if absent.
    pub async fn get_or_create(
        &self,
        key: SegmentKey,
        first_seq: u64,
        epoch: u64,
    ) -> Result<Rc<Slot>, StorageError> {
        loop {
            if let Some(slot) = self.get(key) {
                return Ok(slot);
            }
            let pending = self.creating.borrow().get(&key).cloned();
            match pending {
                Some(event) => {
                    let listener = event.listen();
                    if self.get(key).is_some() || !self.creating.borrow().contains_key(&key) {
                        continue;
                    }
                    listener.await;
                }
                None => break,
            }
        }
        let event = Rc::new(Event::new());
        self.creating.borrow_mut().insert(key, event.clone());
        let header = SegmentHeader {
            log_id: key.log_id,
            segment: key.segment,
            first_seq,
            epoch,
        };
        let created = SegmentFile::create(&GlommioDisk, &self.dir, header).await;
        self.creating.borrow_mut().remove(&key);
        event.notify(usize::MAX);
        let slot = Slot::new(created?, Replica::new());
        self.slots.borrow_mut().insert(key, slot.clone());
        self.created.notify(usize::MAX);
        Ok(slot)
    }

    pub fn mark_dirty(&self, key: SegmentKey) {
        self.dirty.borrow_mut().insert(key);
        self.dirty_event.notify(1);
    }
}
