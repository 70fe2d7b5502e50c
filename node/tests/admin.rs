//! The admin port of a real node process: `/metrics` counts what the node
//! did (appends, entries, bytes, fsyncs, group commits, reads, error
//! answers, segments, connections), `/readyz` says why a node is not ready,
//! a flood of silent connections neither grows the node nor keeps the port
//! shut past its timeout, and `--log-format json` writes one JSON object
//! per line.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{connect, handshake, read_frame, send, start_node_with, wait_for_log, Node};
use trilog_wire::message::{Append, Entry, ErrorCode, ErrorMsg, Read, Watermark};
use trilog_wire::Message;

/// The admin port's address, from the node's log line.
fn admin_addr(node: &Node) -> SocketAddr {
    wait_for_log(node, "admin port: http://", Duration::from_secs(10));
    let log = std::fs::read_to_string(&node.log).expect("node log");
    let at = log.find("admin port: http://").expect("admin line") + "admin port: http://".len();
    let rest = &log[at..];
    rest[..rest.find('/').expect("a path after the address")]
        .parse()
        .expect("an address")
}

/// One request, its status and body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}

/// The value of the sample `series` (name and labels, exactly as printed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

fn append(offset: u64, payload: &[u8]) -> Message {
    Message::Append(Append {
        log_id: 1,
        segment: 0,
        epoch: 1,
        first_seq: 0,
        first_offset: offset,
        commit: offset,
        entries: vec![Entry::new(payload.to_vec())],
    })
}

#[test]
fn metrics_count_what_the_node_did() {
    let node = start_node_with(&["--admin-addr", "127.0.0.1:0"]);
    let admin = admin_addr(&node);
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
    // No metadata store: nothing to register with, so ready.
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".to_string()));

    let mut s = connect(node.port);
    handshake(&mut s);
    const APPENDS: u64 = 10;
    for offset in 0..APPENDS {
        send(&mut s, offset + 1, append(offset, &[7u8; 100]));
        assert!(
            matches!(read_frame(&mut s), Some(Message::AppendAck(_))),
            "append {offset}"
        );
    }
    send(
        &mut s,
        100,
        Message::Watermark(Watermark {
            log_id: 1,
            segment: 0,
            epoch: 1,
            commit: APPENDS,
        }),
    );
    send(
        &mut s,
        101,
        Message::Read(Read {
            log_id: 1,
            segment: 0,
            from_offset: 0,
            limit: u64::MAX,
            max_bytes: 1 << 20,
            wait_ms: 5_000,
        }),
    );
    let read = match read_frame(&mut s) {
        Some(Message::ReadResponse(r)) => r,
        other => panic!("read got {other:?}"),
    };
    assert_eq!(u64::from(read.count), APPENDS);
    // A gap: refused, and counted by its code.
    send(&mut s, 102, append(APPENDS + 5, b"x"));
    assert!(matches!(
        read_frame(&mut s),
        Some(Message::ErrorMsg(ErrorMsg {
            code: ErrorCode::Gap,
            ..
        }))
    ));

    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let shard = |name: &str| sample(&text, &format!("{name}{{shard=\"0\"}}"));
    assert_eq!(shard("trilog_appends_total"), (APPENDS + 1) as f64);
    assert_eq!(shard("trilog_append_entries_total"), APPENDS as f64);
    assert_eq!(shard("trilog_append_bytes_total"), (APPENDS * 100) as f64);
    // One fdatasync per round at most per append (each waited for its ack).
    let fsyncs = shard("trilog_fsyncs_total");
    assert!((1.0..=APPENDS as f64).contains(&fsyncs), "{fsyncs}");
    assert_eq!(shard("trilog_fsync_duration_seconds_count"), fsyncs);
    assert!(shard("trilog_fsync_duration_seconds_sum") > 0.0);
    assert_eq!(shard("trilog_group_commit_appends_sum"), APPENDS as f64);
    assert_eq!(
        shard("trilog_group_commit_bytes_sum"),
        (APPENDS * 100) as f64
    );
    assert_eq!(shard("trilog_reads_total"), 1.0);
    assert_eq!(shard("trilog_read_entries_total"), APPENDS as f64);
    assert_eq!(shard("trilog_read_bytes_total"), read.records.len() as f64);
    assert_eq!(shard("trilog_segments"), 1.0);
    assert_eq!(shard("trilog_connections"), 1.0);
    let code = |c: &str| {
        sample(
            &text,
            &format!("trilog_error_answers_total{{shard=\"0\",code=\"{c}\"}}"),
        )
    };
    assert_eq!(code("gap"), 1.0);
    assert_eq!(code("fenced"), 0.0);
    assert!(sample(&text, "trilog_disk_free_bytes") > 0.0);
    assert_eq!(sample(&text, "trilog_read_only"), 0.0);
    assert_eq!(sample(&text, "trilog_shards_running"), 1.0);
    assert!(text.ends_with("# EOF\n"), "{text}");

    // The connection closes: counted by why.
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get(admin, "/metrics");
        let peer = "trilog_connections_closed_total{shard=\"0\",reason=\"peer\"}";
        if sample(&text, peer) == 1.0 && sample(&text, "trilog_connections{shard=\"0\"}") == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the close was never counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(get(admin, "/nope").0, 404);
    assert_eq!(http(admin, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    let head = http(admin, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(head, (200, String::new()));
}

#[test]
fn readyz_says_why_a_read_only_node_is_not_ready() {
    // A reserve no disk has: read-only from the start.
    let node = start_node_with(&[
        "--admin-addr",
        "127.0.0.1:0",
        "--disk-reserve-bytes",
        &u64::MAX.to_string(),
    ]);
    let admin = admin_addr(&node);
    let (status, body) = get(admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("read-only"), "{body}");
    // Alive all the same: it serves reads.
    assert_eq!(get(admin, "/healthz").0, 200);
    assert_eq!(sample(&get(admin, "/metrics").1, "trilog_read_only"), 1.0);
}

#[test]
fn a_flood_of_silent_connections_neither_grows_the_node_nor_outlasts_its_timeout() {
    let node = start_node_with(&["--admin-addr", "127.0.0.1:0"]);
    let admin = admin_addr(&node);
    let before = node.rss_bytes();
    // Far more than the port serves at once, each sending nothing.
    let silent: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(admin).ok())
        .collect();
    // And a head that never ends: cut at its limit with 431.
    let mut endless = TcpStream::connect(admin).expect("connect");
    let _ = endless.write_all(b"GET /metrics HTTP/1.1\r\nX: ");
    let _ = endless.write_all(&vec![b'a'; 64 * 1024]);
    // The shards serve through it all.
    let mut s = connect(node.port);
    handshake(&mut s);
    let grown = node.rss_bytes().saturating_sub(before);
    assert!(grown < 16 << 20, "the node grew by {grown} bytes");
    // The silent ones time out, and the port answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answered = TcpStream::connect(admin).ok().and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").ok()?;
            let mut a = String::new();
            c.read_to_string(&mut a).ok()?;
            Some(a)
        });
        if answered.is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the admin port never answered again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(silent);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let node = start_node_with(&["--log-format", "json", "--log-level", "debug"]);
    wait_for_log(&node, "serving shards", Duration::from_secs(10));
    let log = std::fs::read_to_string(&node.log).expect("node log");
    let mut serving = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "no {key} in {line}");
        }
        let message = v["message"].as_str().unwrap_or_default().to_string();
        if message.contains("serving shards") {
            serving = Some(message);
        }
    }
    let serving = serving.expect("the serving line");
    // Ids in decimal, as the CLI prints them.
    assert!(serving.starts_with("node 1 serving shards"), "{serving}");
}
