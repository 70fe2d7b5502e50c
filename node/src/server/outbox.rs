//! The frames waiting to be written to one connection.
//!
//! Handlers push encoded frames; one writer task per connection takes
//! everything queued at once and writes it with one flush, so acks released
//! by one group commit leave in one batch of syscalls.
//!
//! The outbox counts the bytes queued and not yet written
//! ([`Outbox::unsent_bytes`]): the connection's reader stops taking
//! requests while they are over `CONN_OUTBOX_BYTES_MAX`
//! ([`Outbox::wait_unsent_below`]), so a client that does not read its
//! answers stops itself, not the node.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use event_listener::Event;

use crate::limits::CONN_OUTBOX_FRAMES_MAX;

#[derive(Default)]
pub struct Outbox {
    frames: RefCell<VecDeque<Vec<u8>>>,
    closed: Cell<bool>,
    event: Event,
    /// Bytes pushed and not yet written (queued, or taken by the writer).
    unsent: Cell<usize>,
    /// Notified when bytes were written, and on close.
    written: Event,
}

impl Outbox {
    /// Queues a frame. Returns false if the connection is closed or its
    /// reader is so slow that the queue is full (the caller closes it).
    pub fn push(&self, frame: Vec<u8>) -> bool {
        if self.closed.get() {
            return false;
        }
        let mut frames = self.frames.borrow_mut();
        if frames.len() >= CONN_OUTBOX_FRAMES_MAX {
            drop(frames);
            tracing::warn!(
                "connection outbox full ({CONN_OUTBOX_FRAMES_MAX} frames): closing a slow reader"
            );
            self.close();
            return false;
        }
        self.unsent.set(self.unsent.get() + frame.len());
        frames.push_back(frame);
        drop(frames);
        self.event.notify(1);
        true
    }

    pub fn close(&self) {
        self.closed.set(true);
        self.event.notify(usize::MAX);
        self.written.notify(usize::MAX);
    }

    /// Bytes pushed and not yet written to the socket.
    pub fn unsent_bytes(&self) -> usize {
        self.unsent.get()
    }

    /// The writer wrote `bytes` of what it took.
    pub fn wrote(&self, bytes: usize) {
        let unsent = self.unsent.get();
        assert!(bytes <= unsent, "wrote {bytes} bytes of {unsent} unsent");
        self.unsent.set(unsent - bytes);
        self.written.notify(usize::MAX);
    }

    /// Waits until fewer than `limit` bytes are unsent, or the outbox is
    /// closed (then the caller stops anyway).
    pub async fn wait_unsent_below(&self, limit: usize) {
        // The common case, on every request: no listener to register.
        if self.unsent.get() < limit || self.closed.get() {
            return;
        }
        loop {
            let listener = self.written.listen();
            if self.unsent.get() < limit || self.closed.get() {
                return;
            }
            listener.await;
        }
    }

    /// Waits until the outbox is closed (the writer gave up, or the
    /// connection ended).
    pub async fn closed(&self) {
        loop {
            let listener = self.written.listen();
            if self.closed.get() {
                return;
            }
            listener.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Waits for frames and takes all of them; `None` once closed and
    /// empty, so a last error frame queued before the close still leaves.
    pub async fn take(&self) -> Option<Vec<Vec<u8>>> {
        loop {
            let listener = self.event.listen();
            let frames: Vec<Vec<u8>> = self.frames.borrow_mut().drain(..).collect();
            if !frames.is_empty() {
                return Some(frames);
            }
            if self.closed.get() {
                return None;
            }
            listener.await;
        }
    }
}
