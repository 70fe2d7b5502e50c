//! A real node process and clients that send garbage, oversized frames,
//! frames of a forbidden kind and appends with bad crcs: each such
//! connection is closed with a logged reason, and the node keeps serving a
//! well-behaved client on another connection throughout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trilog_wire::message::{Append, AppendAck, Entry, Hello, Read as ReadMsg};
use trilog_wire::{decode_payload, encode, FrameDecoder, FrameHeader, Kind, Message};

struct Node {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node() -> Node {
    let dir = tempfile::Builder::new()
        .prefix("trilog-bad-input-")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    let log = dir.path().join("node.log");
    let stderr = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trilog-node"))
        .args(["--node-id", "1", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    // "trilog-node ready ports=[N]"
    let port = line
        .trim()
        .rsplit('[')
        .next()
        .and_then(|s| s.trim_end_matches(']').split(',').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad ready line {line:?}"));
    Node {
        child,
        port,
        log,
        _dir: dir,
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one whole frame with the wire's decoder; None once the node closed
/// the connection (or cut a frame short).
fn read_frame(s: &mut TcpStream) -> Option<Message> {
    let mut decoder = FrameDecoder::new();
    loop {
        let n = s.read(decoder.read_buf()).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(f) = decoder.advance(n).expect("node sends valid frames") {
            return Some(
                decode_payload(f.header.kind, &f.payload).expect("node sends valid payloads"),
            );
        }
    }
}

fn handshake(s: &mut TcpStream) {
    s.write_all(&encode(
        0,
        &Hello {
            client: "test".into(),
        },
    ))
    .expect("hello");
    assert!(matches!(read_frame(s), Some(Message::HelloOk(_))));
}

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

fn wait_for_log(node: &Node, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&node.log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
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
    wait_for_log(&node, "malformed frame");
    good_append(&mut good, 1);

    // A header announcing a payload over the limit: refused from the
    // header alone, without the node waiting for 4 GiB.
    let mut big = connect(node.port);
    handshake(&mut big);
    let mut head = FrameHeader::for_payload(Kind::Append, 1, b"").to_bytes();
    head[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    big.write_all(&head).expect("write");
    until_closed(&mut big);
    wait_for_log(&node, "exceeds the limit");
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
    wait_for_log(&node, "fails its crc");
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
    wait_for_log(&node, "not Hello");

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
