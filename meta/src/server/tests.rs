//! A real metadata server on 127.0.0.1:0, in process, driven by
//! [`EmbeddedMeta`] and by raw sockets where a test needs one connection
//! or bytes no client would send.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trilog_wire::limits::READ_WAIT_MS_MAX;
use trilog_wire::message::Seal;
use trilog_wire::meta::*;
use trilog_wire::{FrameHeader, Kind, Message};

use super::*;
use crate::embedded::EmbeddedMeta;
use crate::frame_io::read_message;
use crate::persist::META_FILE_NAME;
use crate::store::{CasOutcome, MetaStore, Versioned};

/// Generous: the tests must not fail on a slow machine, and nothing here
/// waits for a timeout to pass unless it says so.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

fn start(dir: &Path) -> MetaServerHandle {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    spawn_meta_server(listen, dir.to_path_buf()).expect("server starts")
}

fn record(log_id: u64, segments: Vec<SegmentMeta>) -> LogMeta {
    LogMeta {
        log_id,
        epoch: 1,
        trim_seq: 0,
        segments,
        deleting: Vec::new(),
        deleted: false,
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

async fn applied(meta: &EmbeddedMeta, log_id: u64, expected: u64, record: LogMeta) -> u64 {
    match meta.cas_log(log_id, expected, record).await.expect("cas") {
        CasOutcome::Applied { version } => version,
        other => panic!("cas of log {log_id} at {expected} did not apply: {other:?}"),
    }
}

/// One request on a raw connection; the answer must carry its id.
async fn call(stream: &mut TcpStream, request_id: u64, request: &Message) -> Message {
    stream
        .write_all(&request.encode(request_id))
        .await
        .expect("write");
    let (answer_id, answer) = tokio::time::timeout(TEST_TIMEOUT, read_message(stream))
        .await
        .expect("answered in time")
        .expect("answered");
    assert_eq!(answer_id, request_id);
    answer
}

fn error_message(answer: Message) -> String {
    match answer {
        Message::MetaError(e) => e.message,
        other => panic!("expected a MetaError, got {other:?}"),
    }
}

async fn raw_list_logs(stream: &mut TcpStream, request_id: u64) -> Vec<u64> {
    match call(
        stream,
        request_id,
        &Message::MetaListLogs(MetaListLogs { reserved: 0 }),
    )
    .await
    {
        Message::MetaLogs(l) => l.logs,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn versions_come_from_one_global_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    let absent = Versioned {
        version: 0,
        record: None,
    };
    assert_eq!(meta.get_log(1).await.expect("get"), absent);

    let first = record(1, vec![open_segment(0, 0)]);
    assert_eq!(applied(&meta, 1, 0, first.clone()).await, 1);
    // Create again: conflict, with what is there.
    let again = meta.cas_log(1, 0, first.clone()).await.expect("cas");
    assert_eq!(
        again,
        CasOutcome::Conflict(Versioned {
            version: 1,
            record: Some(first.clone())
        })
    );
    let mut second = record(1, vec![open_segment(0, 0), open_segment(1, 4)]);
    second.segments[0].sealed_len = Some(4);
    assert_eq!(applied(&meta, 1, 1, second.clone()).await, 2);
    // Another log takes the next revision, not a version of its own.
    assert_eq!(applied(&meta, 7, 0, record(7, vec![])).await, 3);
    assert_eq!(meta.list_logs().await.expect("list"), vec![1, 7]);
    server.stop().expect("stops");
}

#[tokio::test]
async fn bad_requests_get_an_error_and_keep_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut c = TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    // A record that breaks the shape of a log.
    let broken = record(1, vec![open_segment(0, 0), open_segment(1, 0)]);
    let request = Message::MetaCasLog(MetaCasLog {
        log_id: 1,
        expected_version: 0,
        record: broken,
    });
    let message = error_message(call(&mut c, 1, &request).await);
    assert!(message.contains("open but is not the last"), "{message}");
    // A record filed under another log id.
    let request = Message::MetaCasLog(MetaCasLog {
        log_id: 2,
        expected_version: 0,
        record: record(3, vec![]),
    });
    assert!(error_message(call(&mut c, 2, &request).await).contains("log 3"));
    // A message that is not a metadata request.
    let seal = Message::Seal(Seal {
        log_id: 1,
        segment: 0,
        epoch: 1,
        len: 0,
    });
    assert!(error_message(call(&mut c, 3, &seal).await).contains("not a metadata request"));
    // A lease out of bounds.
    let node = NodeInfo {
        node_id: 1,
        host: "h".into(),
        shard_ports: vec![1],
        zone: "z".into(),
        capacity_bytes: 0,
        incarnation: 1,
        bytes_used: 0,
        bytes_free: 0,
        full: false,
    };
    let request = Message::MetaRegister(MetaRegister { node, lease_ms: 0 });
    assert!(error_message(call(&mut c, 4, &request).await).contains("lease"));
    // A well-framed payload (right crc) that is not a valid archive.
    let garbage = [0xA5u8; 40];
    let header = FrameHeader::for_payload(Kind::MetaGetLog, 77, &garbage);
    c.write_all(&header.to_bytes()).await.expect("write");
    c.write_all(&garbage).await.expect("write");
    let (request_id, answer) = read_message(&mut c).await.expect("answered");
    assert_eq!(request_id, 77);
    assert!(matches!(answer, Message::MetaError(_)), "{answer:?}");
    // The connection still works, and nothing was stored.
    assert!(raw_list_logs(&mut c, 5).await.is_empty());
    server.stop().expect("stops");
}

#[tokio::test]
async fn watch_returns_when_another_connection_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let addr = server.local_addr();
    let meta = EmbeddedMeta::new(addr);
    let v1 = applied(&meta, 5, 0, record(5, vec![open_segment(0, 0)])).await;
    let watcher = tokio::spawn(async move {
        let started = Instant::now();
        let seen = EmbeddedMeta::new(addr)
            .watch_log(5, v1, Duration::from_secs(20))
            .await
            .expect("watch");
        (seen, started.elapsed())
    });
    // Whether the CAS lands before or after the watch starts waiting, the
    // watch must answer with the new version, and long before its wait ends.
    let mut next = record(5, vec![open_segment(0, 0), open_segment(1, 9)]);
    next.segments[0].sealed_len = Some(9);
    let v2 = applied(&meta, 5, v1, next.clone()).await;
    let (seen, took) = watcher.await.expect("watcher task");
    assert_eq!(seen.version, v2);
    assert_eq!(seen.record, Some(next));
    assert!(took < Duration::from_secs(15), "watch took {took:?}");
    server.stop().expect("stops");
}

#[tokio::test]
async fn watch_timeout_returns_the_unchanged_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut c = TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    let meta = EmbeddedMeta::new(server.local_addr());
    let v1 = applied(&meta, 5, 0, record(5, vec![])).await;
    let watch = |log_id, known_version, wait_ms| {
        Message::MetaGetLog(MetaGetLog {
            log_id,
            known_version,
            wait_ms,
        })
    };
    let seen = |answer: Message| match answer {
        Message::MetaLog(l) => (l.version, l.record),
        other => panic!("unexpected answer {other:?}"),
    };
    let started = Instant::now();
    let (version, _) = seen(call(&mut c, 1, &watch(5, v1, 60)).await);
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(version, v1);
    // An absent log stays absent.
    assert_eq!(seen(call(&mut c, 2, &watch(6, 0, 30)).await), (0, None));
    // A version that already differs answers at once (the wait is long).
    let started = Instant::now();
    assert_eq!(seen(call(&mut c, 3, &watch(5, 0, 20_000)).await).0, v1);
    assert!(started.elapsed() < Duration::from_secs(15));
    server.stop().expect("stops");
}

#[tokio::test]
async fn restart_on_the_same_dir_keeps_logs_and_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    let a = record(1, vec![open_segment(0, 0)]);
    let b = record(2, vec![]);
    applied(&meta, 1, 0, a.clone()).await;
    applied(&meta, 2, 0, b.clone()).await;
    let mut a2 = a.clone();
    a2.epoch = 2;
    assert_eq!(applied(&meta, 1, 1, a2.clone()).await, 3);
    drop(meta);
    server.stop().expect("stops");

    let server = start(dir.path());
    let meta = EmbeddedMeta::new(server.local_addr());
    assert_eq!(
        meta.get_log(1).await.expect("get"),
        Versioned {
            version: 3,
            record: Some(a2)
        }
    );
    assert_eq!(
        meta.get_log(2).await.expect("get"),
        Versioned {
            version: 2,
            record: Some(b)
        }
    );
    assert_eq!(meta.list_logs().await.expect("list"), vec![1, 2]);
    // The revision survived too: the next version is 4, never a reused one.
    assert_eq!(applied(&meta, 3, 0, record(3, vec![])).await, 4);
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
        dir.path().join(META_FILE_NAME),
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
fn an_address_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = taken.local_addr().expect("addr");
    assert!(matches!(
        spawn_meta_server(listen, dir.path().to_path_buf()),
        Err(MetaServerError::Io { what: "bind", .. })
    ));
}

/// True once the peer closed `stream`: end of stream, or a reset because
/// unread bytes were pending. False if it answered something.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(TEST_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(n)) => n == 0,
        Ok(Err(_)) => true,
        Err(_) => panic!("the connection stayed open"),
    }
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut good = TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    assert!(raw_list_logs(&mut good, 1).await.is_empty());

    let mut bad = TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    bad.write_all(&[0x42u8; 64]).await.expect("write");
    assert!(
        closed_by_peer(&mut bad).await,
        "the server answered garbage"
    );

    let meta = EmbeddedMeta::new(server.local_addr());
    assert_eq!(applied(&meta, 1, 0, record(1, vec![])).await, 1);
    assert_eq!(raw_list_logs(&mut good, 2).await, vec![1]);
    server.stop().expect("stops");
}

#[tokio::test]
async fn a_frame_cut_short_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut cut = TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    let request = Message::MetaListLogs(MetaListLogs { reserved: 0 }).encode(1);
    cut.write_all(&request[..request.len() - 1])
        .await
        .expect("write");
    cut.shutdown().await.expect("half close");
    assert!(closed_by_peer(&mut cut).await, "answered half a frame");
    let meta = EmbeddedMeta::new(server.local_addr());
    assert!(meta.list_logs().await.expect("list").is_empty());
    server.stop().expect("stops");
}

#[tokio::test]
async fn a_connection_over_the_limit_closes_the_idlest_never_a_busy_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    // The oldest connection is busy: in a watch of log 9.
    let mut watching = TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    assert!(raw_list_logs(&mut watching, 0).await.is_empty());
    let watch = Message::MetaGetLog(MetaGetLog {
        log_id: 9,
        known_version: 0,
        wait_ms: READ_WAIT_MS_MAX,
    })
    .encode(1);
    watching.write_all(&watch).await.expect("watch");
    // Then a full house of idle connections (clients that connected and
    // said nothing more, say): each call proves it was accepted and
    // counted.
    let mut open = Vec::with_capacity(CONNECTIONS_MAX - 1);
    for i in 1..CONNECTIONS_MAX {
        let mut c = TcpStream::connect(server.local_addr())
            .await
            .expect("connects");
        assert!(raw_list_logs(&mut c, i as u64).await.is_empty());
        open.push(c);
    }
    // A new caller is served at once: the connection idle the longest
    // (the first idle one, not the older busy one) is closed for it.
    let meta = EmbeddedMeta::with_call_timeout(server.local_addr(), TEST_TIMEOUT);
    assert_eq!(applied(&meta, 9, 0, record(9, vec![])).await, 1);
    assert!(closed_by_peer(&mut open[0]).await, "the idlest was kept");
    assert_eq!(raw_list_logs(&mut open[1], 2).await, vec![9]);
    // The busy one was not closed: its watch sees the CAS.
    match read_message(&mut watching).await {
        Ok((1, Message::MetaLog(m))) => assert_eq!(m.version, 1),
        other => panic!("the watch got {other:?}"),
    }
    drop(open);
    server.stop().expect("stops");
}

#[tokio::test]
async fn stop_ends_pending_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let addr = server.local_addr();
    let mut w = TcpStream::connect(addr).await.expect("connects");
    let request = Message::MetaGetLog(MetaGetLog {
        log_id: 1,
        known_version: 0,
        wait_ms: 25_000,
    });
    w.write_all(&request.encode(1)).await.expect("write");
    // Whether the server has read the watch yet or not, stop must close the
    // connection without an answer, and not wait the watch out.
    let started = Instant::now();
    tokio::task::spawn_blocking(move || server.stop().expect("stops"))
        .await
        .expect("join");
    assert!(closed_by_peer(&mut w).await, "the watch was answered");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "stop waited for the watch: {took:?}"
    );
}
