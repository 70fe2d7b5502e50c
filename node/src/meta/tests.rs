//! A real metadata server on 127.0.0.1:0, in process, driven by
//! [`BlockingMetaClient`]s and raw sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;
use trilog_wire::message::Seal;
use trilog_wire::meta::*;
use trilog_wire::{FrameHeader, Kind, Message, FRAME_HEADER_BYTES};

use super::*;

/// Generous: the tests must not fail on a slow machine, and nothing here
/// waits for a timeout to pass unless it says so.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

fn start(dir: &Path) -> MetaServerHandle {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    spawn_meta_server(listen, dir.to_path_buf()).expect("server starts")
}

fn client(addr: SocketAddr) -> BlockingMetaClient {
    BlockingMetaClient::connect(addr, TEST_TIMEOUT).expect("connects")
}

fn record(log_id: u64, segments: Vec<SegmentMeta>) -> LogMeta {
    LogMeta {
        log_id,
        epoch: 1,
        trim_seq: 0,
        segments,
    }
}

fn open_segment(id: u64, first_seq: u64) -> SegmentMeta {
    SegmentMeta {
        id,
        replicas: vec![1, 2, 3],
        first_seq,
        epoch: 1,
        sealed_len: None,
    }
}

fn cas(
    c: &mut BlockingMetaClient,
    log_id: u64,
    expected_version: u64,
    record: LogMeta,
) -> MetaCasResult {
    let request = Message::MetaCasLog(MetaCasLog {
        log_id,
        expected_version,
        record,
    });
    match c.call(&request, TEST_TIMEOUT).expect("answered") {
        Message::MetaCasResult(r) => r,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn watch(c: &mut BlockingMetaClient, log_id: u64, known_version: u64, wait_ms: u32) -> MetaLog {
    let request = Message::MetaGetLog(MetaGetLog {
        log_id,
        known_version,
        wait_ms,
    });
    match c.call(&request, TEST_TIMEOUT).expect("answered") {
        Message::MetaLog(r) => r,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn get(c: &mut BlockingMetaClient, log_id: u64) -> MetaLog {
    watch(c, log_id, 0, 0)
}

fn list_logs(c: &mut BlockingMetaClient) -> Vec<u64> {
    match c.call(
        &Message::MetaListLogs(MetaListLogs { reserved: 0 }),
        TEST_TIMEOUT,
    ) {
        Ok(Message::MetaLogs(l)) => l.logs,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn error_message(answer: Result<Message, CallError>) -> String {
    match answer {
        Ok(Message::MetaError(e)) => e.message,
        other => panic!("expected a MetaError, got {other:?}"),
    }
}

#[test]
fn cas_create_conflict_update_and_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut c = client(server.local_addr());
    assert_eq!(
        get(&mut c, 1),
        MetaLog {
            log_id: 1,
            version: 0,
            record: None
        }
    );

    let first = record(1, vec![open_segment(0, 0)]);
    let created = cas(&mut c, 1, 0, first.clone());
    assert_eq!(
        created,
        MetaCasResult {
            ok: true,
            version: 1,
            current: None
        }
    );
    assert_eq!(
        get(&mut c, 1),
        MetaLog {
            log_id: 1,
            version: 1,
            record: Some(first.clone())
        }
    );

    // Create again: conflict, with what is there.
    let again = cas(&mut c, 1, 0, first.clone());
    assert_eq!(
        again,
        MetaCasResult {
            ok: false,
            version: 1,
            current: Some(first.clone())
        }
    );

    let mut second = record(1, vec![open_segment(0, 0), open_segment(1, 4)]);
    second.segments[0].sealed_len = Some(4);
    assert_eq!(cas(&mut c, 1, 1, second.clone()).version, 2);
    // A stale version conflicts.
    let stale = cas(&mut c, 1, 1, first);
    assert!(!stale.ok);
    assert_eq!(stale.version, 2);
    assert_eq!(stale.current, Some(second.clone()));
    assert_eq!(get(&mut c, 1).record, Some(second));

    assert_eq!(cas(&mut c, 7, 0, record(7, vec![])).version, 3);
    assert_eq!(list_logs(&mut c), vec![1, 7]);
    server.stop().expect("stops");
}

#[test]
fn bad_requests_get_an_error_and_keep_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut c = client(server.local_addr());
    // A record that breaks the shape of a log.
    let broken = record(1, vec![open_segment(0, 0), open_segment(1, 0)]);
    let request = Message::MetaCasLog(MetaCasLog {
        log_id: 1,
        expected_version: 0,
        record: broken,
    });
    let message = error_message(c.call(&request, TEST_TIMEOUT));
    assert!(message.contains("open but is not the last"), "{message}");
    // A record filed under another log id.
    let request = Message::MetaCasLog(MetaCasLog {
        log_id: 2,
        expected_version: 0,
        record: record(3, vec![]),
    });
    assert!(error_message(c.call(&request, TEST_TIMEOUT)).contains("log 3"));
    // A message that is not a metadata request.
    let seal = Message::Seal(Seal {
        log_id: 1,
        segment: 0,
        epoch: 1,
        len: 0,
    });
    assert!(error_message(c.call(&seal, TEST_TIMEOUT)).contains("not a metadata request"));
    // A lease out of bounds.
    let node = NodeInfo {
        node_id: 1,
        host: "h".into(),
        shard_ports: vec![1],
        zone: "z".into(),
        capacity_bytes: 0,
    };
    let request = Message::MetaRegister(MetaRegister { node, lease_ms: 0 });
    assert!(error_message(c.call(&request, TEST_TIMEOUT)).contains("lease"));
    // The connection still works, and nothing was stored.
    assert_eq!(get(&mut c, 1).version, 0);
    assert!(list_logs(&mut c).is_empty());

    // A well-framed payload (right crc) that is not a valid archive.
    let mut raw = TcpStream::connect(server.local_addr()).expect("connects");
    raw.set_read_timeout(Some(TEST_TIMEOUT)).expect("timeout");
    let garbage = [0xA5u8; 40];
    let header = FrameHeader::for_payload(Kind::MetaGetLog, 77, &garbage);
    raw.write_all(&header.to_bytes()).expect("write");
    raw.write_all(&garbage).expect("write");
    let (request_id, answer) = read_answer(&mut raw);
    assert_eq!(request_id, 77);
    assert!(matches!(answer, Message::MetaError(_)), "{answer:?}");
    server.stop().expect("stops");
}

fn read_answer(stream: &mut TcpStream) -> (u64, Message) {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    stream.read_exact(&mut head).expect("header");
    let header = FrameHeader::parse(&head).expect("valid header");
    let mut payload = AlignedVec::<16>::new();
    payload.resize(header.payload_len as usize, 0);
    stream.read_exact(&mut payload).expect("payload");
    header.verify(&payload).expect("crc");
    let message = trilog_wire::codec::decode_payload(header.kind, &payload).expect("decodes");
    (header.request_id, message)
}

#[test]
fn watch_returns_when_another_connection_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let addr = server.local_addr();
    let mut c = client(addr);
    let v1 = cas(&mut c, 5, 0, record(5, vec![open_segment(0, 0)])).version;
    let watcher = std::thread::spawn(move || {
        let mut w = client(addr);
        let started = Instant::now();
        let seen = watch(&mut w, 5, v1, 20_000);
        (seen, started.elapsed())
    });
    // Whether the CAS lands before or after the watch starts waiting, the
    // watch must answer with the new version, and long before its wait ends.
    let mut next = record(5, vec![open_segment(0, 0), open_segment(1, 9)]);
    next.segments[0].sealed_len = Some(9);
    let v2 = cas(&mut c, 5, v1, next.clone()).version;
    let (seen, took) = watcher.join().expect("watcher thread");
    assert_eq!(seen.version, v2);
    assert_eq!(seen.record, Some(next));
    assert!(took < Duration::from_secs(15), "watch took {took:?}");
    server.stop().expect("stops");
}

#[test]
fn watch_timeout_returns_the_unchanged_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut c = client(server.local_addr());
    let v1 = cas(&mut c, 5, 0, record(5, vec![])).version;
    let started = Instant::now();
    let seen = watch(&mut c, 5, v1, 60);
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(seen.version, v1);
    // An absent log stays absent.
    let seen = watch(&mut c, 6, 0, 30);
    assert_eq!((seen.version, seen.record), (0, None));
    // A version that already differs answers at once (the wait is long).
    let started = Instant::now();
    assert_eq!(watch(&mut c, 5, 0, 20_000).version, v1);
    assert!(started.elapsed() < Duration::from_secs(15));
    server.stop().expect("stops");
}

#[test]
fn registration_then_list_nodes_shows_it_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let info = NodeInfo {
        node_id: 42,
        host: "127.0.0.1".into(),
        shard_ports: vec![7001, 7002],
        zone: "zone-a".into(),
        capacity_bytes: 1 << 30,
    };
    let registration =
        spawn_registration(server.local_addr(), info.clone(), Duration::from_secs(30));
    assert!(registration.registered_once(TEST_TIMEOUT));
    let mut c = client(server.local_addr());
    for include_dead in [false, true] {
        let nodes = match c.call(
            &Message::MetaListNodes(MetaListNodes { include_dead }),
            TEST_TIMEOUT,
        ) {
            Ok(Message::MetaNodes(n)) => n.nodes,
            other => panic!("unexpected answer {other:?}"),
        };
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].info, info);
        assert!(nodes[0].alive);
        assert!(nodes[0].lease_remaining_ms > 0 && nodes[0].lease_remaining_ms <= 30_000);
    }
    registration.stop();
    server.stop().expect("stops");
}

#[test]
fn registration_retries_until_the_store_is_up() {
    // Reserve a port, free it, and register there before the store starts.
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = start(dir.path());
    let addr = probe.local_addr();
    probe.stop().expect("stops");
    let info = NodeInfo {
        node_id: 9,
        host: "h".into(),
        shard_ports: vec![1],
        zone: "z".into(),
        capacity_bytes: 0,
    };
    let registration = spawn_registration(addr, info, Duration::from_secs(3));
    assert!(!registration.registered_once(Duration::from_millis(1)));
    let server =
        spawn_meta_server(addr, dir.path().to_path_buf()).expect("restarts on the same port");
    assert!(registration.registered_once(TEST_TIMEOUT));
    registration.stop();
    server.stop().expect("stops");
}

#[test]
fn restart_on_the_same_dir_keeps_logs_and_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut c = client(server.local_addr());
    let a = record(1, vec![open_segment(0, 0)]);
    let b = record(2, vec![]);
    cas(&mut c, 1, 0, a.clone());
    cas(&mut c, 2, 0, b.clone());
    let mut a2 = a.clone();
    a2.epoch = 2;
    let va = cas(&mut c, 1, 1, a2.clone()).version;
    assert_eq!(va, 3);
    drop(c);
    server.stop().expect("stops");

    let server = start(dir.path());
    let mut c = client(server.local_addr());
    assert_eq!(
        get(&mut c, 1),
        MetaLog {
            log_id: 1,
            version: 3,
            record: Some(a2)
        }
    );
    assert_eq!(
        get(&mut c, 2),
        MetaLog {
            log_id: 2,
            version: 2,
            record: Some(b)
        }
    );
    assert_eq!(list_logs(&mut c), vec![1, 2]);
    // The revision survived too: the next version is 4, never a reused one.
    assert_eq!(cas(&mut c, 3, 0, record(3, vec![])).version, 4);
    // A second store on the same directory is refused while this one runs.
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    assert!(matches!(
        spawn_meta_server(listen, dir.path().to_path_buf()),
        Err(MetaServerError::Persist(PersistError::Locked { .. }))
    ));
    server.stop().expect("stops");
}

#[test]
fn a_corrupt_file_stops_the_store_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(persist::META_FILE_NAME),
        b"not a metadata file at all, not at all",
    )
    .expect("write");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    assert!(matches!(
        spawn_meta_server(listen, dir.path().to_path_buf()),
        Err(MetaServerError::Persist(PersistError::Corrupt { .. }))
    ));
}

#[test]
fn garbage_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut good = client(server.local_addr());
    assert!(list_logs(&mut good).is_empty());

    let mut bad = TcpStream::connect(server.local_addr()).expect("connects");
    bad.set_read_timeout(Some(TEST_TIMEOUT)).expect("timeout");
    bad.write_all(&[0x42u8; 64]).expect("write");
    let mut buf = [0u8; 16];
    // Closed: end of stream, or a reset because unread bytes were pending.
    match bad.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "the server answered garbage"),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "not closed: {e}"),
    }

    assert_eq!(cas(&mut good, 1, 0, record(1, vec![])).version, 1);
    let mut fresh = client(server.local_addr());
    assert_eq!(get(&mut fresh, 1).version, 1);
    server.stop().expect("stops");
}

#[test]
fn connections_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    // Each call proves its connection was accepted and counted.
    let mut open: Vec<BlockingMetaClient> = (0..CONNECTIONS_MAX)
        .map(|_| client(server.local_addr()))
        .collect();
    for c in open.iter_mut() {
        assert!(list_logs(c).is_empty());
    }
    let mut refused = client(server.local_addr());
    let answer = refused.call(
        &Message::MetaListLogs(MetaListLogs { reserved: 0 }),
        TEST_TIMEOUT,
    );
    assert!(
        matches!(
            answer,
            Err(CallError::Closed { .. }) | Err(CallError::Io { .. })
        ),
        "{answer:?}"
    );
    // The open ones still work.
    assert!(list_logs(&mut open[0]).is_empty());
    drop(open);
    server.stop().expect("stops");
}

#[test]
fn stop_ends_pending_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let addr = server.local_addr();
    let mut w = client(addr);
    let watcher = std::thread::spawn(move || {
        let started = Instant::now();
        let request = Message::MetaGetLog(MetaGetLog {
            log_id: 1,
            known_version: 0,
            wait_ms: 25_000,
        });
        (w.call(&request, TEST_TIMEOUT * 2), started.elapsed())
    });
    server.stop().expect("stops");
    let (answer, took) = watcher.join().expect("watcher thread");
    assert!(answer.is_err(), "{answer:?}");
    assert!(
        took < Duration::from_secs(20),
        "stop waited for the watch: {took:?}"
    );
}
