//! How many times the payload bytes are copied, counted by the bytes the
//! allocator hands out: serializing an append from the producer's borrowed
//! entries allocates the payload once (the buffer the replicas are sent,
//! sized up front), where cloning the entries into an owned `Append` first
//! allocated it once for the clone and up to twice more for a buffer grown
//! by doubling. (A test binary of its own: the counting allocator is
//! process-wide; it counts per thread.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;

use trilog_wire::message::{Append, Entry};
use trilog_wire::{encode_append, encode_payload, AppendHead};

struct Counting;

thread_local! {
    /// Bytes allocated by this thread (tests run on threads of their own).
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: a thread being torn down has no counter any more.
    let _ = ALLOCATED.try_with(|a| a.set(a.get() + bytes as u64));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter only adds up the sizes asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Bytes this thread allocated while `f` ran.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (ALLOCATED.with(Cell::get) - before, out)
}

const ENTRIES: usize = 64;
const PAYLOAD: usize = 16 * 1024;

fn held() -> VecDeque<Entry> {
    (0..ENTRIES)
        .map(|i| Entry::new(vec![i as u8; PAYLOAD]))
        .collect()
}

fn head() -> AppendHead {
    AppendHead {
        log_id: 1,
        segment: 2,
        epoch: 3,
        first_seq: 0,
        first_offset: 0,
        commit: 0,
    }
}

#[test]
fn an_append_from_borrowed_entries_copies_the_payload_once() {
    let held = held();
    let payload = (ENTRIES * PAYLOAD) as u64;
    // Warm the serializer's thread-local arena, so neither side pays for it.
    let _ = encode_append(head(), held.range(..1));

    let (borrowed, append) = allocated_by(|| encode_append(head(), held.iter()));
    let (owned, owned_bytes) = allocated_by(|| {
        let h = head();
        let append = Append {
            log_id: h.log_id,
            segment: h.segment,
            epoch: h.epoch,
            first_seq: h.first_seq,
            first_offset: h.first_offset,
            commit: h.commit,
            entries: held.iter().cloned().collect(),
        };
        encode_payload(&append)
    });
    assert_eq!(
        &append.payload[..],
        &owned_bytes[..],
        "the same bytes either way"
    );
    println!(
        "copies: {payload} payload bytes; from borrowed entries {borrowed} bytes allocated ({:.2}x), cloned first {owned} ({:.2}x)",
        borrowed as f64 / payload as f64,
        owned as f64 / payload as f64
    );
    // One buffer, sized up front: the payload and a little framing.
    assert!(
        borrowed <= payload + payload / 16,
        "{borrowed} bytes allocated for {payload}"
    );
    assert!(
        owned >= borrowed + payload,
        "cloning copies every payload once more: {owned} against {borrowed}"
    );
}

#[test]
fn a_read_answer_framed_from_the_read_buffer_copies_the_records_once() {
    use trilog_wire::{read_response_frame, ReadResponseHead};
    let records = vec![0x33u8; 1 << 20];
    let head = ReadResponseHead {
        log_id: 1,
        segment: 2,
        from_offset: 0,
        count: 64,
        watermark: 64,
        sealed_len: None,
    };
    let _ = read_response_frame(1, head, &records[..16], 0);
    let (allocated, frame) = allocated_by(|| read_response_frame(1, head, &records, 0));
    let n = records.len() as u64;
    println!(
        "copies: {n} record bytes; answer framed from the read buffer: {allocated} bytes allocated ({:.2}x)",
        allocated as f64 / n as f64
    );
    assert!(frame.len() as u64 >= n);
    assert!(
        allocated <= n + n / 16,
        "{allocated} bytes allocated for {n}"
    );
}
