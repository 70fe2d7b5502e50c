//! Mutual TLS end to end, with a throwaway CA: 3 log nodes (in this
//! process, real sockets and disks) serve TLS only, node 1 serving the
//! embedded store too, and the `trilog` binary runs as a user would run
//! it with a producer's or a reader's certificate. Each role gets what it
//! may, and nothing else: a reader reads but cannot append or seal, a
//! client without a certificate or of another CA gets nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use trilog_client::conn::NodeConn;
use trilog_client::runtime::{Runtime, TokioRuntime};
use trilog_client::tls::test_ca::TestCa;
use trilog_client::tls::{TlsFiles, TlsIdentity};
use trilog_client::{EmbeddedMeta, MetaAddr, MetaStore};
use trilog_node::config::NodeConfig;
use trilog_node::server::{self, NodeHandle};
use trilog_wire::message::{ErrorCode, Read, Seal};
use trilog_wire::Message;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn trilog(
    files: Option<&TlsFiles>,
    meta: SocketAddr,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trilog"));
    c.args(["--meta", &meta.to_string()]);
    if let Some(f) = files {
        c.arg("--tls-ca").arg(&f.ca);
        c.arg("--tls-cert").arg(&f.cert);
        c.arg("--tls-key").arg(&f.key);
    }
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn().expect("run trilog");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("trilog ends")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start_node(id: u64, dir: &Path, meta: SocketAddr, files: TlsFiles) -> NodeHandle {
    let config = NodeConfig {
        meta: Some(MetaAddr::Embedded(meta.into())),
        serve_meta: (id == 1).then_some(meta),
        lease_ms: 2_000,
        tls: Some(files),
        ..NodeConfig::with_defaults(id, dir.join(format!("node-{id}")))
    };
    config.check().expect("a valid configuration");
    server::start(config).expect("the node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_what_it_may_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("trilog test CA").expect("CA");
    let meta = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let node_dir = dir.path().join(format!("tls-{id}"));
        std::fs::create_dir_all(&node_dir).expect("mkdir");
        let files = ca
            .write_files(&node_dir, &format!("node-{id}"), "node", &["127.0.0.1"])
            .expect("node files");
        nodes.push(start_node(id, dir.path(), meta, files));
    }
    let producer = ca
        .write_files(dir.path(), "producer", "producer", &[])
        .expect("producer files");
    let reader = ca
        .write_files(dir.path(), "reader", "reader", &[])
        .expect("reader files");

    // The nodes registered over TLS (as nodes: nothing else may).
    let store = EmbeddedMeta::with_tls(
        meta,
        Duration::from_secs(5),
        Some(TlsIdentity::load(&producer).expect("producer identity")),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.list_nodes(false).await.map(|n| n.len()).unwrap_or(0) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not register"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A producer appends and reads back.
    let out = trilog(
        Some(&producer),
        meta,
        &["append", "--log", "5", "alpha", "beta"],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "0\n1\n");
    // A reader reads the same, and may not append.
    let out = trilog(Some(&reader), meta, &["read", "--log", "5"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "0\talpha\n1\tbeta\n");
    let out = trilog(
        Some(&reader),
        meta,
        &["append", "--log", "5", "gamma"],
        None,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("forbidden"), "{stderr}");
    let out = trilog(
        Some(&reader),
        meta,
        &["trim", "--log", "5", "--before", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    // Without a certificate, or with another CA's, nothing at all.
    let out = trilog(None, meta, &["status"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    let other = TestCa::new("another CA").expect("CA");
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let stranger = other
        .write_files(&other_dir, "producer", "producer", &[])
        .expect("stranger files");
    let out = trilog(Some(&stranger), meta, &["read", "--log", "5"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);

    // On a node's own port: a reader's connection is served reads and
    // refused a seal, which changes nothing.
    let record = store
        .get_log(5)
        .await
        .expect("record")
        .record
        .expect("log 5");
    let segment = record.segments.last().expect("a segment").clone();
    let node_id = segment.replicas[0];
    let nodes_now = store.list_nodes(false).await.expect("nodes");
    let info = &nodes_now
        .iter()
        .find(|n| n.info.node_id == node_id)
        .expect("the replica's node")
        .info;
    let addr: SocketAddr = format!("{}:{}", info.host, info.shard_ports[0])
        .parse()
        .expect("address");
    let rt: Arc<dyn Runtime> = Arc::new(TokioRuntime::with_tls(Some(
        TlsIdentity::load(&reader).expect("reader identity"),
    )));
    let conn = NodeConn::connect(&rt, addr)
        .await
        .expect("a reader connects");
    let seal = Seal {
        log_id: 5,
        segment: segment.id,
        epoch: 1 << 40,
        len: 0,
    };
    match conn
        .request(&seal, Duration::from_secs(5))
        .await
        .expect("an answer")
    {
        Message::ErrorMsg(e) => assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}"),
        other => panic!("a reader's seal was answered {other:?}"),
    }
    let read = Read {
        log_id: 5,
        segment: segment.id,
        from_offset: 0,
        limit: 10,
        max_bytes: 1 << 20,
        wait_ms: 0,
    };
    match conn
        .request(&read, Duration::from_secs(5))
        .await
        .expect("an answer")
    {
        Message::ReadResponse(r) => assert_eq!(r.count, 2),
        other => panic!("a reader's read was answered {other:?}"),
    }
    // Still readable in full: the refused seal changed nothing.
    let out = trilog(
        Some(&producer),
        meta,
        &["append", "--log", "5", "gamma"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "2\n");
    // Plaintext to a node's port: no answer to a Hello, the connection
    // is closed.
    assert!(NodeConn::connect_tokio(addr).await.is_err());
    drop(nodes);
}
