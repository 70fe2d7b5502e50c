//! A connection's allowance of bytes in flight: an append takes its bytes
//! before the connection reads on, and gives them back when it is
//! answered, so a fast producer is slowed by TCP instead of filling the
//! node's memory. A small semaphore on `event_listener`, so it runs on any
//! executor (glommio's or the simulator's).

use std::cell::Cell;
use std::rc::Rc;

use event_listener::Event;

/// Bytes a connection may have in flight.
pub struct Budget {
    available: Cell<u64>,
    max: u64,
    returned: Event,
}

/// Bytes taken from a [`Budget`], given back when dropped.
pub struct Permit {
    budget: Rc<Budget>,
    bytes: u64,
    /// A permit of another budget held and given back with this one (a
    /// connection's bytes are also the shard's).
    also: Option<Box<Permit>>,
}

impl Budget {
    pub fn new(max: u64) -> Rc<Budget> {
        assert!(max > 0, "a budget allows some bytes");
        Rc::new(Budget {
            available: Cell::new(max),
            max,
            returned: Event::new(),
        })
    }

    /// Waits until `bytes` are available and takes them. Asking for more
    /// than the whole budget is a caller's bug (the frame limit is below it).
    pub async fn acquire(self: &Rc<Budget>, bytes: u64) -> Permit {
        assert!(
            bytes <= self.max,
            "{bytes} bytes over a budget of {}",
            self.max
        );
        loop {
            let listener = self.returned.listen();
            let available = self.available.get();
            if available >= bytes {
                self.available.set(available - bytes);
                return Permit {
                    budget: self.clone(),
                    bytes,
                    also: None,
                };
            }
            listener.await;
        }
    }

    pub fn available(&self) -> u64 {
        self.available.get()
    }
}

impl Permit {
    /// This permit holding `other` too, until it drops.
    pub fn with(mut self, other: Permit) -> Permit {
        assert!(self.also.is_none(), "a permit holds one other");
        self.also = Some(Box::new(other));
        self
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let back = self.budget.available.get() + self.bytes;
        assert!(back <= self.budget.max, "more bytes given back than taken");
        self.budget.available.set(back);
        self.budget.returned.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn bytes_come_back_when_permits_drop() {
        block_on(async {
            let b = Budget::new(10);
            let p1 = b.acquire(6).await;
            let _p2 = b.acquire(4).await;
            assert_eq!(b.available(), 0);
            let mut waiting = Box::pin(b.acquire(5));
            assert!(poll_once(&mut waiting).await.is_none(), "over the budget");
            drop(p1);
            let p3 = poll_once(&mut waiting).await.expect("6 bytes came back");
            assert_eq!(b.available(), 1);
            drop(p3);
            assert_eq!(b.available(), 6);
            // A joined permit gives both budgets back at once.
            let shard = Budget::new(100);
            let joined = b.acquire(6).await.with(shard.acquire(6).await);
            assert_eq!((b.available(), shard.available()), (0, 94));
            drop(joined);
            assert_eq!((b.available(), shard.available()), (6, 100));
        });
    }
}
