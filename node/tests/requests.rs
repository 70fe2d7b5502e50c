//! The shard machine's decisions, carried out by a real node process:
//! a read parked before its segment exists (served once the segment is
//! created and committed, or `NotFound` when its wait ends, through the
//! shard's timer task), a fence that creates a segment and then refuses an
//! older producer, and a conflicting seal with its own error code.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{connect, handshake, read_frame, send, start_node};
use trilog_wire::message::{
    Append, AppendAck, Entry, ErrorCode, ErrorMsg, Fence, FenceAck, Read, ReadResponse, Seal,
    Watermark,
};
use trilog_wire::record::parse_records;
use trilog_wire::Message;

fn client(port: u16) -> TcpStream {
    let mut s = connect(port);
    handshake(&mut s);
    s
}

fn read(segment: u64, wait_ms: u32) -> Message {
    Message::Read(Read {
        log_id: 1,
        segment,
        from_offset: 0,
        limit: u64::MAX,
        max_bytes: 4096,
        wait_ms,
    })
}

fn append(segment: u64, epoch: u64, offset: u64, payload: &[u8]) -> Message {
    Message::Append(Append {
        log_id: 1,
        segment,
        epoch,
        first_seq: 0,
        first_offset: offset,
        commit: 0,
        entries: vec![Entry::new(payload.to_vec())],
    })
}

fn error_code(m: Option<Message>) -> (ErrorCode, u64) {
    match m {
        Some(Message::ErrorMsg(ErrorMsg { code, value, .. })) => (code, value),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_read_parked_before_its_segment_is_served_once_committed() {
    let node = start_node();
    // One connection: the node takes its requests in order, so the read is
    // parked before the append creates the segment.
    let mut s = client(node.port);
    send(&mut s, 1, read(0, 10_000));
    send(&mut s, 2, append(0, 1, 0, b"first"));
    match read_frame(&mut s) {
        Some(Message::AppendAck(AppendAck { durable_len, .. })) => assert_eq!(durable_len, 1),
        other => panic!("append got {other:?}"),
    }
    // Durable but not known to be committed: the read still waits, until
    // the watermark says so.
    send(
        &mut s,
        3,
        Message::Watermark(Watermark {
            log_id: 1,
            segment: 0,
            epoch: 1,
            commit: 1,
        }),
    );
    match read_frame(&mut s) {
        Some(Message::ReadResponse(r)) => {
            assert_eq!((r.count, r.watermark), (1, 1));
            let records = parse_records(&r.records, 0, 1).expect("records");
            assert_eq!(records[0].1, b"first");
        }
        other => panic!("read got {other:?}"),
    }
}

#[test]
fn a_read_of_a_missing_segment_is_not_found_when_its_wait_ends() {
    let node = start_node();
    let mut reader = client(node.port);
    let started = Instant::now();
    send(&mut reader, 1, read(3, 300));
    assert_eq!(
        error_code(read_frame(&mut reader)),
        (ErrorCode::NotFound, 0)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before its wait ended: {:?}",
        started.elapsed()
    );
    // An existing segment with nothing to read gets an empty answer instead.
    send(&mut reader, 2, append(4, 1, 0, b"x"));
    assert!(matches!(
        read_frame(&mut reader),
        Some(Message::AppendAck(_))
    ));
    send(&mut reader, 3, read(4, 50));
    assert!(matches!(
        read_frame(&mut reader),
        Some(Message::ReadResponse(ReadResponse { count: 0, .. }))
    ));
}

#[test]
fn a_fence_creates_the_segment_and_refuses_older_producers() {
    let node = start_node();
    let mut s = client(node.port);
    send(
        &mut s,
        1,
        Message::Fence(Fence {
            log_id: 1,
            segment: 5,
            epoch: 3,
        }),
    );
    match read_frame(&mut s) {
        Some(Message::FenceAck(FenceAck {
            epoch, durable_len, ..
        })) => assert_eq!((epoch, durable_len), (3, 0)),
        other => panic!("fence got {other:?}"),
    }
    send(&mut s, 2, append(5, 2, 0, b"late"));
    assert_eq!(error_code(read_frame(&mut s)), (ErrorCode::Fenced, 3));
    send(&mut s, 3, append(5, 3, 0, b"new"));
    assert!(matches!(read_frame(&mut s), Some(Message::AppendAck(_))));
    // A seal past what the replica holds breaks the protocol: refused with
    // its own code and the replica's length.
    send(
        &mut s,
        4,
        Message::Seal(Seal {
            log_id: 1,
            segment: 5,
            epoch: 3,
            len: 4,
        }),
    );
    assert_eq!(error_code(read_frame(&mut s)), (ErrorCode::SealConflict, 1));
}
