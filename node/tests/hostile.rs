//! Hostile and stalled clients against a real node process: pipelined
//! reads whose answers are never collected, and a reused request id. The
//! node's memory stays within a stated bound, a well-behaved client is
//! served throughout, and the stalled connection is cut off.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{connect, handshake, read_frame, send, start_node, start_node_with, wait_for_log};
use trilog_wire::limits::FRAME_PAYLOAD_BYTES_MAX;
use trilog_wire::message::{Append, Entry, ErrorCode, ErrorMsg, Read};
use trilog_wire::{FrameHeader, Kind, Message};

/// Entries of the segment the hostile client reads, and their size: 8 MiB.
const ENTRIES: u64 = 64;
const ENTRY_BYTES: usize = 128 * 1024;
/// Reads the hostile client pipelines, each asking for 4 MiB (the whole
/// segment, 8 MiB, is there to answer them): far more requests (about 16
/// MB of them) than the sockets' buffers hold, so the client's writes
/// block once the node stops reading it.
const HOSTILE_READS: u64 = 200_000;
/// What the node may grow by while the hostile client stalls: the
/// per-connection bounds (16 MiB of reads in flight, 16 MiB of answers
/// unsent) with room for the allocator and the socket buffers.
const RSS_GROWTH_BOUND_BYTES: u64 = 160 * 1024 * 1024;
/// Connections that announce an 8 MiB frame and send 1 KiB of it: 800 MiB
/// if the node trusted the headers.
const ANNOUNCERS: usize = 100;

fn client(port: u16) -> TcpStream {
    let mut s = connect(port);
    handshake(&mut s);
    s
}

fn read_msg(from_offset: u64, max_bytes: u32, wait_ms: u32) -> Message {
    Message::Read(Read {
        log_id: 1,
        segment: 0,
        from_offset,
        limit: u64::MAX,
        max_bytes,
        wait_ms,
    })
}

/// Appends `ENTRIES` entries, all committed, with acks.
fn fill(s: &mut TcpStream) {
    for offset in 0..ENTRIES {
        let append = Message::Append(Append {
            log_id: 1,
            segment: 0,
            epoch: 1,
            first_seq: 0,
            first_offset: offset,
            commit: offset,
            entries: vec![Entry::new(vec![offset as u8; ENTRY_BYTES])],
        });
        send(s, offset + 1, append);
        assert!(matches!(read_frame(s), Some(Message::AppendAck(_))));
    }
    let w = Message::Watermark(trilog_wire::message::Watermark {
        log_id: 1,
        segment: 0,
        epoch: 1,
        commit: ENTRIES,
    });
    send(s, 0, w);
}

/// Reads the whole segment on `s`, as a consumer would.
fn read_all(s: &mut TcpStream, request_id: u64) -> u64 {
    let mut at = 0;
    let mut id = request_id;
    while at < ENTRIES {
        send(s, id, read_msg(at, 1 << 20, 1_000));
        id += 1;
        match read_frame(s) {
            Some(Message::ReadResponse(r)) => at += u64::from(r.count),
            other => panic!("the good client's read got {other:?}"),
        }
    }
    at
}

#[test]
fn pipelined_reads_never_collected_hold_bounded_memory_and_are_cut_off() {
    let node = start_node();
    let mut good = client(node.port);
    fill(&mut good);
    assert_eq!(read_all(&mut good, 1_000), ENTRIES);
    let before = node.rss_bytes();

    // Announcers: after their Hello, each announces an 8 MiB frame, sends
    // 1 KiB of it and goes silent. The node's buffers grow with what
    // arrives, and a frame begun must be whole in 30 s.
    let mut announcers = Vec::new();
    for _ in 0..ANNOUNCERS {
        let mut a = client(node.port);
        let mut header = FrameHeader::for_payload(Kind::Append, 1, b"");
        header.payload_len = FRAME_PAYLOAD_BYTES_MAX;
        let mut frame = header.to_bytes().to_vec();
        frame.extend_from_slice(&[7u8; 1024]);
        a.write_all(&frame).expect("announce");
        announcers.push(a);
    }

    // The hostile client asks for 4 MiB answers as fast as the node takes
    // requests, and never reads one. Its writes block once the node stops
    // reading from it; it gives up when a write stays blocked.
    let mut hostile = client(node.port);
    hostile
        .set_write_timeout(Some(Duration::from_secs(3)))
        .expect("write timeout");
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        for id in 0..HOSTILE_READS {
            let frame = read_msg(0, 4 << 20, 0).encode(10_000 + id);
            if hostile.write_all(&frame).is_err() {
                break;
            }
            sent += 1;
        }
        (hostile, sent)
    });
    let (hostile, sent) = writer.join().expect("the hostile writer");
    assert!(
        sent < HOSTILE_READS,
        "the node took all {sent} reads: it never stopped reading the connection"
    );
    // Served throughout: the good client reads everything again.
    assert_eq!(read_all(&mut good, 2_000), ENTRIES);
    let after = node.rss_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "hostile reader: {sent} of {HOSTILE_READS} pipelined 4 MiB reads taken before the node stopped reading it, and {ANNOUNCERS} connections announcing 8 MiB frames: node RSS {before} -> {after} bytes (+{growth})"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_BYTES,
        "the node grew by {growth} bytes under a stalled reader"
    );
    // The node cuts the stalled connection off once a write makes no
    // progress for its stall limit (30 s), and the announcers once their
    // frames are not whole 30 s after they began.
    wait_for_log(&node, "made no progress", Duration::from_secs(90));
    wait_for_log(&node, "not whole in time", Duration::from_secs(90));
    for mut a in announcers {
        assert!(read_frame(&mut a).is_none(), "an announcer was kept");
    }
    drop(hostile);
    // And goes on serving.
    assert_eq!(read_all(&mut good, 3_000), ENTRIES);
}

#[test]
fn a_request_id_reused_while_unanswered_closes_the_connection() {
    let node = start_node();
    let mut s = client(node.port);
    // Two reads with one id, both parked on a segment that does not exist.
    send(&mut s, 7, read_msg(0, 4096, 10_000));
    send(&mut s, 7, read_msg(0, 4096, 10_000));
    let mut seen = Vec::new();
    while let Some(m) = read_frame(&mut s) {
        seen.push(m);
    }
    assert!(
        seen.iter().any(|m| matches!(
            m,
            Message::ErrorMsg(ErrorMsg {
                code: ErrorCode::BadRequest,
                message,
                ..
            }) if message.contains("reused")
        )),
        "{seen:?}"
    );
    wait_for_log(&node, "request id 7 reused", Duration::from_secs(10));
    // Another connection is served.
    let mut other = client(node.port);
    send(&mut other, 1, read_msg(0, 4096, 0));
    assert!(read_frame(&mut other).is_some());
}

/// A connection that sends nothing and is owed nothing is closed after the
/// node's idle period; one that keeps asking, or waits on a long-poll
/// read, is not.
#[test]
fn idle_connections_are_reaped_and_busy_ones_are_not() {
    let node = start_node_with(&["--idle-connection-secs", "1"]);
    let mut silent = client(node.port);
    let mut busy = client(node.port);
    let mut waiting = client(node.port);
    fill(&mut busy);
    // A long poll past the end of the segment: parked, owed an answer.
    let end = ENTRIES;
    send(&mut waiting, 1, read_msg(end, 4096, 4_000));

    let started = std::time::Instant::now();
    // The busy connection asks for something every 300 ms for 2.5 s.
    let mut id = 10_000;
    while started.elapsed() < Duration::from_millis(2_500) {
        id += 1;
        send(&mut busy, id, read_msg(0, 4096, 0));
        assert!(
            matches!(read_frame(&mut busy), Some(Message::ReadResponse(_))),
            "the busy connection was cut"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The silent one was closed (end of stream).
    assert!(
        read_frame(&mut silent).is_none(),
        "the silent connection is open"
    );
    // The waiting one got its long poll's answer (empty, at the end of its
    // wait) rather than a close.
    assert!(
        matches!(read_frame(&mut waiting), Some(Message::ReadResponse(_))),
        "the long poll was cut off"
    );
    wait_for_log(
        &node,
        "idle for 1000 ms; closing it",
        Duration::from_secs(5),
    );
}
