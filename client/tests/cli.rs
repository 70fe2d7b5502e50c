//! The `trilog` command line against a real cluster: the embedded metadata
//! store and 3 log nodes run in this process (real sockets, real direct
//! I/O under a temp dir), and the `trilog` binary runs as a child process
//! for each command, as a user would run it.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use trilog_client::meta::spawn_meta_server;
use trilog_client::{EmbeddedMeta, MetaAddr, MetaStore};
use trilog_node::config::NodeConfig;
use trilog_node::server::{self, NodeHandle};

fn start_node(id: u64, dir: &std::path::Path, meta: SocketAddr) -> NodeHandle {
    let config = NodeConfig {
        meta: Some(MetaAddr::Embedded(meta.into())),
        lease_ms: 2_000,
        ..NodeConfig::with_defaults(id, dir.join(format!("node-{id}")))
    };
    config.check().expect("a valid configuration");
    server::start(config).expect("the node starts")
}

/// Runs `trilog --meta <meta> <args>` (with `stdin` piped in, if any) and
/// returns its output, failing the test if it does not succeed.
fn trilog(meta: SocketAddr, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(meta, args, stdin);
    assert!(
        out.status.success(),
        "trilog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn run(meta: SocketAddr, args: &[&str], stdin: Option<&str>) -> Output {
    run_bytes(meta, args, stdin.map(str::as_bytes))
}

fn run_bytes(meta: SocketAddr, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trilog"));
    c.args(["--meta", &meta.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn().expect("run trilog");
    if let Some(bytes) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("trilog ends")
}

/// The embedded metadata store and 3 log nodes in this process, all
/// registered.
struct Local {
    meta: SocketAddr,
    store: std::sync::Arc<dyn MetaStore>,
    meta_server: trilog_client::meta::MetaServerHandle,
    _nodes: Vec<NodeHandle>,
    dir: tempfile::TempDir,
}

impl Local {
    async fn start() -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let meta_server = spawn_meta_server(listen, dir.path().join("meta")).expect("meta server");
        let meta = meta_server.local_addr();
        let nodes = (1..=3).map(|id| start_node(id, dir.path(), meta)).collect();
        let store: std::sync::Arc<dyn MetaStore> = std::sync::Arc::new(EmbeddedMeta::new(meta));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while store.list_nodes(false).await.map(|n| n.len()).unwrap_or(0) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nodes did not register"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Local {
            meta,
            store,
            meta_server,
            _nodes: nodes,
            dir,
        }
    }

    fn stop(self) {
        self.meta_server.stop().expect("meta server stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_takeover_and_status_from_the_command_line() {
    let local = Local::start().await;
    let meta = local.meta;

    // Arguments, then stdin lines: each committed entry's seq, in order.
    let seqs = trilog(meta, &["append", "--log", "4", "alpha", "beta"], None);
    assert_eq!(seqs, "0\n1\n");
    let seqs = trilog(meta, &["append", "--log", "4"], Some("gamma\ndelta\n"));
    assert_eq!(seqs, "2\n3\n");

    let all = trilog(meta, &["read", "--log", "4"], None);
    assert_eq!(all, "0\talpha\n1\tbeta\n2\tgamma\n3\tdelta\n");
    let some = trilog(
        meta,
        &["read", "--log", "4", "--from", "1", "--count", "2"],
        None,
    );
    assert_eq!(some, "1\tbeta\n2\tgamma\n");

    // A takeover of a cleanly closed log has nothing to fence: it adds no
    // (empty) segment, and the next append continues after it.
    let segments = |local: &Local| {
        let store = local.store.clone();
        async move {
            let record = store.get_log(4).await.expect("record").record;
            record.expect("log 4").segments.len()
        }
    };
    let before = segments(&local).await;
    let said = trilog(meta, &["takeover", "--log", "4"], None);
    assert!(said.starts_with("log 4: closed already"), "{said}");
    assert_eq!(segments(&local).await, before);
    assert_eq!(
        trilog(meta, &["append", "--log", "4", "epsilon"], None),
        "4\n"
    );
    assert_eq!(
        trilog(meta, &["read", "--log", "4", "--from", "4"], None),
        "4\tepsilon\n"
    );

    let status = trilog(meta, &["status"], None);
    assert!(status.starts_with("nodes: 3\n"), "{status}");
    assert_eq!(status.matches(" alive ").count(), 3, "{status}");
    assert!(status.contains("logs: 1\n"), "{status}");
    assert!(status.contains("  log 4  "), "{status}");
    assert!(
        !status.contains("open"),
        "every segment is sealed: {status}"
    );

    // The same, for scripts.
    let json: serde_json::Value =
        serde_json::from_str(&trilog(meta, &["status", "--json"], None)).expect("JSON");
    let nodes = json["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{json}");
    for n in nodes {
        for field in [
            "id",
            "addr",
            "zone",
            "alive",
            "full",
            "bytes_used",
            "bytes_free",
        ] {
            assert!(!n[field].is_null(), "node without {field}: {n}");
        }
        assert_eq!(n["alive"], true, "{n}");
        assert_eq!(n["full"], false, "{n}");
        assert!(n["bytes_free"].as_u64().expect("a number") > 0, "{n}");
        assert!(
            n["addr"]
                .as_str()
                .expect("a string")
                .starts_with("127.0.0.1:"),
            "{n}"
        );
    }
    let logs = json["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 1, "{json}");
    assert_eq!(logs[0]["id"], 4);
    for field in ["epoch", "trim_seq"] {
        assert!(logs[0][field].is_u64(), "{field}: {json}");
    }
    let segments = logs[0]["segments"].as_array().expect("segments");
    assert!(!segments.is_empty(), "{json}");
    for seg in segments {
        assert_eq!(seg["state"], "sealed", "{seg}");
        assert!(seg["len"].is_u64() && seg["first_seq"].is_u64(), "{seg}");
        assert_eq!(
            seg["replicas"].as_array().expect("replicas").len(),
            3,
            "{seg}"
        );
    }

    // A log left open by a producer that went away is taken over.
    let gone = trilog_client::Producer::open(
        trilog_client::ConnPool::new(local.store.clone()),
        7,
        trilog_client::ProducerOptions::default(),
    )
    .await
    .expect("open log 7");
    assert_eq!(gone.append(b"left open".to_vec()).await.expect("append"), 0);
    drop(gone);
    let said = trilog(meta, &["takeover", "--log", "7"], None);
    assert!(said.starts_with("log 7: taken over at epoch"), "{said}");
    assert_eq!(
        trilog(meta, &["read", "--log", "7"], None),
        "0\tleft open\n"
    );

    // A closed output pipe ends the command quietly (no panic message):
    // `trilog status | head -0`, with a status long enough to fill the pipe.
    for i in 0..200u64 {
        trilog(
            meta,
            &["append", "--log", &format!("{}", 100 + i), "x"],
            None,
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_trilog"))
        .args(["--meta", &meta.to_string(), "status"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("run trilog");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("trilog ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{out:?}");

    // Decommission: a node of a 3-node cluster cannot drain (no node is
    // left to take its copies), so the wait ends with exit status 3 and
    // the node leaving; `--cancel` makes it active again. An id nobody
    // knows is refused.
    let unknown = run(meta, &["node", "decommission", "99"], None);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no such node"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let stuck = run(
        meta,
        &["node", "decommission", "3", "--timeout-secs", "1"],
        None,
    );
    assert_eq!(stuck.status.code(), Some(3), "{stuck:?}");
    let said = String::from_utf8_lossy(&stuck.stdout);
    assert!(said.contains("node 3: leaving;"), "{said}");
    assert!(said.contains("still listed on node 3"), "{said}");
    let status = trilog(meta, &["status"], None);
    assert!(status.contains("LEAVING"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&trilog(meta, &["status", "--json"], None)).expect("JSON");
    let modes: Vec<(u64, String)> = json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let id = n["id"].as_u64().expect("id");
            (id, n["mode"].as_str().expect("mode").to_string())
        })
        .collect();
    assert!(modes.contains(&(3, "leaving".into())), "{modes:?}");
    assert!(modes.contains(&(1, "active".into())), "{modes:?}");
    let said = trilog(meta, &["node", "decommission", "3", "--cancel"], None);
    assert!(said.contains("active again"), "{said}");
    assert!(!trilog(meta, &["status"], None).contains("LEAVING"));

    // Bad input gets an error and a failing exit status, not a panic.
    let bad = run(meta, &["read", "--log", "not-a-number"], None);
    assert!(!bad.status.success());
    let unreachable = run("127.0.0.1:1".parse().expect("address"), &["status"], None);
    assert!(!unreachable.status.success());
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).starts_with("trilog: "),
        "{}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
    local.stop();
}

/// Binary data from the command line: a file appended in chunks reads back
/// byte for byte; standard input as lines (bytes kept, `\r` too) and as
/// length-prefixed entries; JSON output; exit statuses for a missing log,
/// a range past the end, an oversized chunk size (refused before the log
/// is touched) and an oversized line (an error after what came before it is
/// committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_data_round_trips_and_exit_statuses_tell_what_happened() {
    let local = Local::start().await;
    let (meta, store) = (local.meta, local.store.clone());

    // 3 MiB + 5 bytes of every byte value (newlines, invalid UTF-8, NULs).
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 5u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = local.dir.path().join("blob.bin");
    std::fs::write(&path, &data).expect("write the file");
    let path = path.to_str().expect("utf-8 path");
    let seqs = trilog(
        meta,
        &[
            "append",
            "--log",
            "5",
            "--file",
            path,
            "--chunk-bytes",
            "65536",
        ],
        None,
    );
    let expected: String = (0..49).map(|i| format!("{i}\n")).collect();
    assert_eq!(seqs, expected, "48 whole chunks and a last one of 5 bytes");
    let back = run(meta, &["read", "--log", "5", "--raw"], None);
    assert!(back.status.success(), "{back:?}");
    assert!(
        back.stdout == data,
        "the file did not come back byte for byte"
    );

    // Lines keep their bytes; length-prefixed entries may hold newlines.
    let seqs = run_bytes(meta, &["append", "--log", "6"], Some(b"a\r\n\xff\n\nlast"));
    assert!(seqs.status.success(), "{seqs:?}");
    assert_eq!(String::from_utf8_lossy(&seqs.stdout), "0\n1\n2\n3\n");
    let mut framed = Vec::new();
    for e in [&b"x\ny"[..], b""] {
        framed.extend_from_slice(&(e.len() as u32).to_le_bytes());
        framed.extend_from_slice(e);
    }
    let seqs = run_bytes(
        meta,
        &["append", "--log", "6", "--format", "length-prefixed"],
        Some(&framed),
    );
    assert!(seqs.status.success(), "{seqs:?}");
    assert_eq!(String::from_utf8_lossy(&seqs.stdout), "4\n5\n");
    let json = trilog(meta, &["read", "--log", "6", "--format", "json"], None);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let payloads: Vec<&str> = lines
        .iter()
        .map(|l| l["payload"].as_str().expect("base64"))
        .collect();
    // a\r, \xff, "", last, x\ny, "" in base64.
    assert_eq!(payloads, vec!["YQ0=", "/w==", "", "bGFzdA==", "eAp5", ""]);
    assert_eq!(lines[5]["seq"], 5);

    // Exit statuses.
    let missing = run(meta, &["read", "--log", "404"], None);
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");
    let past = run(meta, &["read", "--log", "6", "--from", "100"], None);
    assert_eq!(past.status.code(), Some(4), "{past:?}");
    // (An argument over the entry limit is over Linux's limit for one
    // argument, 128 KiB, too: a chunk size over it stands in.)
    let refused = run(
        meta,
        &[
            "append",
            "--log",
            "7",
            "--chunk-bytes",
            "2000000",
            "--file",
            path,
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{:?}", refused.stderr);
    assert!(
        store.get_log(7).await.expect("meta").record.is_none(),
        "a refused append opened the log"
    );
    let mut lines = b"fine\n".to_vec();
    lines.extend(std::iter::repeat_n(b'y', 1024 * 1024 + 1));
    lines.extend_from_slice(b"\nnever\n");
    let long = run_bytes(meta, &["append", "--log", "8"], Some(&lines));
    assert_eq!(long.status.code(), Some(1), "{long:?}");
    assert_eq!(
        String::from_utf8_lossy(&long.stdout),
        "0\n",
        "the line before it"
    );
    assert!(String::from_utf8_lossy(&long.stderr).contains("over the limit"));
    assert_eq!(trilog(meta, &["read", "--log", "8"], None), "0\tfine\n");
    local.stop();
}

/// A consumer that reaches an open segment no replica has created yet (no
/// entry so far) waits, as `trilog tail` does, instead of failing with
/// `NotFound`; the first entry appended then reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_waits_at_an_open_segment_that_holds_no_entry_yet() {
    use trilog_client::{ConnPool, Consumer, Producer, ProducerOptions};
    let local = Local::start().await;
    let (meta, store) = (local.meta, local.store.clone());
    let producer = Producer::open(ConnPool::new(store.clone()), 11, ProducerOptions::default())
        .await
        .expect("open");
    let mut consumer = Consumer::open(ConnPool::new(store.clone()), 11, 0)
        .await
        .expect("consumer");
    // Far more polls than the consumer's failure limit (100): each one
    // meets a replica that does not know the segment.
    for _ in 0..300 {
        let got = consumer
            .next_batch(Duration::ZERO)
            .await
            .expect("an empty open segment is no error");
        assert!(got.is_empty());
    }
    let seq = producer
        .submit(b"first".to_vec())
        .await
        .expect("submit")
        .await
        .expect("committed");
    assert_eq!(seq, 0);
    // `trilog read` prints it while its segment is still open (once a
    // replica knows it committed), and a takeover of a missing log is an
    // error that creates nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(meta, &["read", "--log", "11"], None);
        if out.status.success() && out.stdout == b"0\tfirst\n" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read never showed it: {out:?}"
        );
    }
    let missing = run(meta, &["takeover", "--log", "404"], None);
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");
    assert!(store.get_log(404).await.expect("meta").record.is_none());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let got = consumer
            .next_batch(Duration::from_secs(1))
            .await
            .expect("read");
        if let Some(r) = got.into_iter().next() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the entry never came"
        );
    };
    assert_eq!((first.seq, first.payload.to_vec()), (0, b"first".to_vec()));
    producer.close().await.expect("close");
    local.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_from_a_file_and_the_environment_and_completions() {
    let local = Local::start().await;
    let port = local.meta.port();
    let config = local.dir.path().join("cli.toml");
    std::fs::write(&config, format!("meta = \"localhost:{port}\"\n")).expect("write");
    let status = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trilog"));
        c.env_remove("TRILOG_META").env_remove("TRILOG_CONFIG");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run trilog")
    };
    // The file's store, found by name.
    let config_arg = config.to_string_lossy().into_owned();
    let out = status(&[], &["--config", &config_arg, "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{json}");
    // TRILOG_CONFIG names the file; TRILOG_META wins over it (a port
    // nothing listens on: the call fails), and a flag wins over both.
    let out = status(&[("TRILOG_CONFIG", &config_arg)], &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = "127.0.0.1:1";
    let out = status(
        &[("TRILOG_CONFIG", &config_arg), ("TRILOG_META", dead)],
        &["status"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(dead));
    let own = local.meta.to_string();
    let out = status(
        &[("TRILOG_CONFIG", &config_arg), ("TRILOG_META", dead)],
        &["--meta", &own, "status", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A key the CLI does not have is refused, naming it, with status 2.
    let bad = local.dir.path().join("bad.toml");
    std::fs::write(&bad, "metta = \"x:1\"\n").expect("write");
    let out = status(&[], &["--config", &bad.to_string_lossy(), "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `metta`"));
    // Completions need no store.
    let out = status(&[("TRILOG_META", dead)], &["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("_trilog()") && script.contains("decommission"),
        "{script}"
    );
    local.stop();
}

/// Lines of a child's pipe, read on a thread of their own, so a test can
/// wait for one with a deadline.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits, at most `within`, for a line of `rx` that contains `needle`.
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no line with {needle:?} within {within:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_waits_through_a_metadata_store_restart() {
    let mut local = Local::start().await;
    let meta = local.meta;
    assert_eq!(
        trilog(meta, &["append", "--log", "9", "one", "two"], None),
        "0\n1\n"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_trilog"))
        .args(["--meta", &meta.to_string(), "tail", "--log", "9"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let err = lines_of(child.stderr.take().expect("stderr"));
    wait_line(&out, "1\ttwo", Duration::from_secs(20));

    // The store goes away: the tail, at the end of a sealed segment, asks
    // it for the next one, fails, says so and keeps trying.
    let store_dir = local.dir.path().join("meta");
    let server = std::mem::replace(
        &mut local.meta_server,
        spawn_meta_server(
            "127.0.0.1:0".parse().expect("address"),
            local.dir.path().join("spare"),
        )
        .expect("a spare server"),
    );
    server.stop().expect("the store stops");
    wait_line(&err, "trying again", Duration::from_secs(30));
    // It comes back on the same port, with the same file.
    local.meta_server = spawn_meta_server(meta, store_dir).expect("the store restarts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while local
        .store
        .list_nodes(false)
        .await
        .map(|n| n.len())
        .unwrap_or(0)
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not register again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        trilog(meta, &["append", "--log", "9", "three"], None),
        "2\n"
    );
    wait_line(&out, "2\tthree", Duration::from_secs(30));
    assert!(child.try_wait().expect("status").is_none(), "tail gave up");
    let _ = child.kill();
    let _ = child.wait();
    local.stop();
}
