//! A real node process and clients that send garbage, oversized frames,
//! frames of a forbidden kind and appends with bad crcs: each such
//! connection is closed with a logged reason, and the node keeps serving a
//! well-behaved client on another connection throughout.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{connect, handshake, read_frame, start_node, wait_for_log};
use trilog_wire::message::{Append, AppendAck, Entry, Read as ReadMsg};
use trilog_wire::{encode, FrameHeader, Kind, Message};

/// Reads until the node closes the connection; returns the frames seen.
fn until_closed(s: &mut TcpStream) -> Vec<Message> {
    let mut seen = Vec::new();
    while let Some(m) = read_frame(s) {
        seen.push(m);
    }
    seen
}

fn append(offset: u64, payload: &[u8]) -> Append {
    Append {
        log_id: 1,
        segment: 0,
        epoch: 1,
        first_seq: 0,
        first_offset: offset,
        commit: offset,
        entries: vec![Entry::new(payload.to_vec())],
    }
}

/// The good client appends one more entry and must get its ack.
fn good_append(s: &mut TcpStream, offset: u64) {
    s.write_all(&encode(offset + 1, &append(offset, b"good")))
        .expect("append");
    match read_frame(s) {
        Some(Message::AppendAck(AppendAck { durable_len, .. })) => {
            assert_eq!(durable_len, offset + 1)
        }
        other => panic!("good client got {other:?}"),
    }
}

#[test]
fn bad_clients_are_cut_off_and_the_node_keeps_serving() {
    let node = start_node();
    let mut good = connect(node.port);
    handshake(&mut good);
    good_append(&mut good, 0);

    // Garbage instead of a frame.
    let mut bad = connect(node.port);
    handshake(&mut bad);
    bad.write_all(b"this is not a trilog frame at all, just bytes")
        .expect("write");
    let seen = until_closed(&mut bad);
    assert!(
        seen.iter().any(|m| matches!(m, Message::ErrorMsg(_))),
        "{seen:?}"
    );
    wait_for_log(&node, "malformed frame", Duration::from_secs(10));
    good_append(&mut good, 1);

    // A header announcing a payload over the limit: refused from the
    // header alone, without the node waiting for 4 GiB.
    let mut big = connect(node.port);
    handshake(&mut big);
    let mut head = FrameHeader::for_payload(Kind::Append, 1, b"").to_bytes();
    head[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    big.write_all(&head).expect("write");
    until_closed(&mut big);
    wait_for_log(&node, "exceeds the limit", Duration::from_secs(10));
    good_append(&mut good, 2);

    // A valid crc over a payload that is no archive.
    let mut forged = connect(node.port);
    handshake(&mut forged);
    let junk = vec![0xA5u8; 64];
    let mut frame = FrameHeader::for_payload(Kind::Append, 1, &junk)
        .to_bytes()
        .to_vec();
    frame.extend_from_slice(&junk);
    forged.write_all(&frame).expect("write");
    until_closed(&mut forged);
    good_append(&mut good, 3);

    // An entry whose payload does not match its crc.
    let mut liar = connect(node.port);
    handshake(&mut liar);
    let mut a = append(4, b"payload");
    a.entries[0].crc ^= 1;
    liar.write_all(&encode(1, &a)).expect("write");
    until_closed(&mut liar);
    wait_for_log(&node, "fails its crc", Duration::from_secs(10));
    good_append(&mut good, 4);

    // A frame a client may not send, and a first frame that is not Hello.
    let mut rude = connect(node.port);
    handshake(&mut rude);
    rude.write_all(&encode(
        1,
        &AppendAck {
            log_id: 1,
            segment: 0,
            durable_len: 9,
        },
    ))
    .expect("write");
    until_closed(&mut rude);
    let mut hasty = connect(node.port);
    hasty
        .write_all(&encode(
            1,
            &ReadMsg {
                log_id: 1,
                segment: 0,
                from_offset: 0,
                limit: u64::MAX,
                max_bytes: 10,
                wait_ms: 0,
            },
        ))
        .expect("write");
    until_closed(&mut hasty);
    wait_for_log(&node, "not Hello", Duration::from_secs(10));

    good_append(&mut good, 5);
    // The bad appends stored nothing: the segment holds exactly the good ones.
    good.write_all(&encode(
        99,
        &ReadMsg {
            log_id: 1,
            segment: 0,
            from_offset: 0,
            limit: 6,
            max_bytes: 4096,
            wait_ms: 0,
        },
    ))
    .expect("read");
    match read_frame(&mut good) {
        Some(Message::ReadResponse(r)) => {
            assert_eq!(r.count, 6);
            let recs = trilog_wire::record::parse_records(&r.records, 0, 6).expect("records");
            assert!(recs.iter().all(|(_, p)| *p == b"good"));
        }
        other => panic!("read got {other:?}"),
    }
}
