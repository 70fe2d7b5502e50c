//! What the driver holds for one connection beside the machine: its
//! outbox, the in-flight bytes of its unanswered appends (back-pressure),
//! and the frames of its appends parked until their segment exists.
//! Resources, not decisions: an answer to a request (the machine's
//! `Send`) ends whatever is held for it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use event_listener::Event;

use crate::framing::Frame;
use crate::server::budget::Permit;
use crate::server::outbox::Outbox;

/// What a request in flight is, for what a drain waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Append,
    Read,
}

pub struct Conn {
    pub outbox: Rc<Outbox>,
    /// By request id: the bytes of an append or a read, given back to the
    /// connection's allowance when the request is answered.
    permits: RefCell<BTreeMap<u64, (Held, Permit)>>,
    /// Notified whenever a request is answered.
    answered: Event,
    /// By request id: appends the machine parked (their segment is being
    /// created), until it asks for them again.
    parked: RefCell<BTreeMap<u64, Frame>>,
}

impl Conn {
    pub fn new(outbox: Rc<Outbox>) -> Conn {
        Conn {
            outbox,
            permits: RefCell::new(BTreeMap::new()),
            answered: Event::new(),
            parked: RefCell::new(BTreeMap::new()),
        }
    }

    /// Holds a request's in-flight bytes (an append's, a read's) until it
    /// is answered. The id of a request still unanswered is refused: each
    /// reuse would give the earlier request's bytes back while it still
    /// holds them, and a client reusing one id could then have any number
    /// of requests in flight.
    pub fn hold_permit(&self, request_id: u64, held: Held, permit: Permit) -> Result<(), String> {
        let mut permits = self.permits.borrow_mut();
        if permits.contains_key(&request_id) {
            return Err(format!(
                "request id {request_id} reused while that request is unanswered"
            ));
        }
        permits.insert(request_id, (held, permit));
        Ok(())
    }

    pub fn park(&self, request_id: u64, frame: Frame) {
        self.parked.borrow_mut().insert(request_id, frame);
    }

    pub fn unpark(&self, request_id: u64) -> Option<Frame> {
        self.parked.borrow_mut().remove(&request_id)
    }

    /// Whether a request of this connection is still unanswered (an
    /// append or a read in flight, an append parked).
    pub fn owes_answers(&self) -> bool {
        !self.permits.borrow().is_empty() || !self.parked.borrow().is_empty()
    }

    /// Whether an append of this connection is still unanswered (in
    /// flight or parked): what a drain waits for.
    pub fn owes_appends(&self) -> bool {
        !self.parked.borrow().is_empty()
            || self
                .permits
                .borrow()
                .values()
                .any(|(held, _)| *held == Held::Append)
    }

    /// Resolves once no append of this connection is unanswered.
    pub async fn appends_answered(&self) {
        loop {
            if !self.owes_appends() {
                return;
            }
            let listener = self.answered.listen();
            if !self.owes_appends() {
                return;
            }
            listener.await;
        }
    }

    /// The request is answered: what was held for it goes.
    pub fn finish(&self, request_id: u64) {
        self.permits.borrow_mut().remove(&request_id);
        self.parked.borrow_mut().remove(&request_id);
        self.answered.notify(usize::MAX);
    }
}
