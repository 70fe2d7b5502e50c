//! A 3-zone cluster on 3 "hosts": each node in a network namespace of its
//! own with its own address, joined to a bridge; a real etcd on a fourth;
//! mutual TLS everywhere; each node started from a config file the way
//! the systemd unit starts it (`trilog-node --config node.toml`). A
//! producer and a reader in the root namespace write and read over TLS
//! with their own certificates. A node is then stopped as systemd stops
//! it (SIGTERM): it drains, leaves etcd at once and exits 0.
//!
//! Needs root (namespaces, veth, a bridge) and etcd (/usr/bin/etcd or
//! ETCD_BIN); without them it says so and passes, as CI runs as root
//! with etcd installed (scripts/setup-debian.sh).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use trilog_client::conn::NodeConn;
use trilog_client::tls::test_ca::TestCa;
use trilog_client::tls::{TlsFiles, TlsIdentity};
use trilog_client::{ClientError, ConnPool, Consumer, MetaAddr, Producer, ProducerOptions};

const ZONES: [&str; 3] = ["a", "b", "c"];
const NODE_PORT: u16 = 7400;
const ETCD_PORT: u16 = 2379;
const ADMIN_PORT: u16 = 7480;
const ENTRIES: u64 = 300;

/// Runs a command, failing the test with its output if it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces and the bridge of one test run; removed when dropped.
struct Hosts {
    prefix: String,
    subnet: u8,
    names: Vec<String>,
}

impl Hosts {
    /// Host i (from 1) is namespace `<prefix>h<i>` at 10.201.<subnet>.(10+i);
    /// the root namespace is .254 on the bridge.
    fn create(count: u8) -> Hosts {
        let pid = std::process::id();
        let prefix = format!("tl{}", pid % 100_000);
        let subnet = (pid % 200) as u8 + 20;
        let bridge = format!("{prefix}br");
        run(&["ip", "link", "add", "name", &bridge, "type", "bridge"]);
        let mut hosts = Hosts {
            prefix,
            subnet,
            names: Vec::new(),
        };
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.201.{subnet}.254/24"),
            "dev",
            &bridge,
        ]);
        run(&["ip", "link", "set", &bridge, "up"]);
        for i in 1..=count {
            let ns = format!("{}h{i}", hosts.prefix);
            let outside = format!("{}v{i}", hosts.prefix);
            let inside = format!("{}i{i}", hosts.prefix);
            run(&["ip", "netns", "add", &ns]);
            hosts.names.push(ns.clone());
            run(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            run(&["ip", "link", "set", &inside, "netns", &ns]);
            run(&["ip", "link", "set", &outside, "master", &bridge, "up"]);
            let ip = hosts.ip(i).to_string();
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                &inside,
            ]);
            run(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", &inside, "up",
            ]);
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        hosts
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.subnet, 10 + host)
    }

    /// `program args...` run inside host `host`'s namespace.
    fn command(&self, host: u8, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[usize::from(host) - 1]])
            .arg(program);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}br", self.prefix)])
            .status();
    }
}

/// Kills its processes when dropped (before the namespaces go).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn can_run() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("multihost: skipped: network namespaces need root");
        return None;
    }
    let etcd = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    if !etcd.exists() {
        eprintln!("multihost: skipped: no etcd at {}", etcd.display());
        return None;
    }
    Some(etcd)
}

/// The config file of node `id` on host `id`, as an operator writes it.
fn node_config(dir: &Path, id: u8, hosts: &Hosts, tls: &TlsFiles) -> PathBuf {
    let etcd = SocketAddr::new(hosts.ip(4).into(), ETCD_PORT);
    let text = format!(
        "node_id = {id}\n\
         data_dir = \"{data}\"\n\
         host = \"{host}\"\n\
         port = {NODE_PORT}\n\
         meta = \"etcd://{etcd}\"\n\
         zone = \"{zone}\"\n\
         lease_ms = 3000\n\
         tls_ca = \"{ca}\"\n\
         tls_cert = \"{cert}\"\n\
         tls_key = \"{key}\"\n\
         admin_addr = \"{host}:{ADMIN_PORT}\"\n\
         log_format = \"json\"\n",
        data = dir.join(format!("data-{id}")).display(),
        host = hosts.ip(id),
        zone = ZONES[usize::from(id) - 1],
        ca = tls.ca.display(),
        cert = tls.cert.display(),
        key = tls.key.display(),
    );
    let path = dir.join(format!("node-{id}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_zone_cluster_on_three_hosts_over_mutual_tls() {
    let Some(etcd_bin) = can_run() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = Hosts::create(4);
    let etcd_ip = hosts.ip(4);
    let ca = TestCa::new("trilog multihost CA").expect("CA");
    let mut procs = Procs(Vec::new());

    // etcd on host 4, client-certificate TLS.
    let etcd_tls = ca
        .write_files(dir.path(), "etcd", "node", &[&etcd_ip.to_string()])
        .expect("etcd certificate");
    let client_url = format!("https://{etcd_ip}:{ETCD_PORT}");
    let peer_url = format!("http://{etcd_ip}:2380");
    let etcd_log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
    procs.0.push(
        hosts
            .command(4, &etcd_bin)
            .args(["--name", "m0", "--data-dir"])
            .arg(dir.path().join("etcd-data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m0={peer_url}")])
            .arg("--cert-file")
            .arg(&etcd_tls.cert)
            .arg("--key-file")
            .arg(&etcd_tls.key)
            .arg("--trusted-ca-file")
            .arg(&etcd_tls.ca)
            .args(["--client-cert-auth", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .expect("etcd starts"),
    );

    // Nodes 1-3 on hosts 1-3, zones a-c, each from its config file.
    for id in 1..=3u8 {
        let host_dir = dir.path().join(format!("host-{id}"));
        std::fs::create_dir_all(&host_dir).expect("mkdir");
        let tls = ca
            .write_files(&host_dir, "node", "node", &[&hosts.ip(id).to_string()])
            .expect("node certificate");
        let config = node_config(&host_dir, id, &hosts, &tls);
        let log = std::fs::File::create(host_dir.join("node.log")).expect("log");
        let mut child = hosts
            .command(id, Path::new(env!("CARGO_BIN_EXE_trilog-node")))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        procs.0.push(child);
        // The node waits for etcd (up to its start-up deadline), then says
        // ready; a node that fails closes its stdout instead.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let log = std::fs::read_to_string(host_dir.join("node.log")).unwrap_or_default();
        assert!(
            line.starts_with("trilog-node ready"),
            "node {id}: {line:?}\n{log}"
        );
    }

    // A producer in the root namespace, with a producer's certificate.
    let producer_tls = ca
        .write_files(dir.path(), "producer", "producer", &[])
        .expect("producer certificate");
    let reader_tls = ca
        .write_files(dir.path(), "reader", "reader", &[])
        .expect("reader certificate");
    let producer_id = TlsIdentity::load(&producer_tls).expect("producer identity");
    let meta_addr: MetaAddr = format!("etcd://{etcd_ip}:{ETCD_PORT}")
        .parse()
        .expect("address");
    let meta = meta_addr
        .connect_tls(Duration::from_secs(5), Some(&producer_id))
        .await
        .expect("etcd over TLS");
    let nodes = meta.list_nodes(false).await.expect("nodes");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for n in &nodes {
        let id = u8::try_from(n.info.node_id).expect("a small id");
        assert_eq!(
            n.info.host,
            hosts.ip(id).to_string(),
            "node {id} registers its own address"
        );
        assert_eq!(n.info.zone, ZONES[usize::from(id) - 1]);
    }

    let pool = ConnPool::with_tls(meta.clone(), producer_id);
    let producer = Producer::open(pool.clone(), 1, ProducerOptions::default())
        .await
        .expect("open log 1");
    let mut pending = Vec::new();
    for i in 0..ENTRIES {
        let f = producer
            .submit(format!("entry {i}").into_bytes())
            .await
            .expect("submit");
        pending.push(f);
    }
    for (i, f) in pending.into_iter().enumerate() {
        assert_eq!(f.await.expect("committed"), i as u64);
    }
    producer.close().await.expect("close");

    // The segment's 3 replicas are the 3 hosts, one per zone.
    let record = meta
        .get_log(1)
        .await
        .expect("record")
        .record
        .expect("log 1");
    let mut replicas = record.segments[0].replicas.clone();
    replicas.sort_unstable();
    assert_eq!(replicas, vec![1, 2, 3]);

    // A reader reads every entry back, from any replica, and may not
    // write.
    let reader_id = TlsIdentity::load(&reader_tls).expect("reader identity");
    let reader_meta = meta_addr
        .connect_tls(Duration::from_secs(5), Some(&reader_id))
        .await
        .expect("etcd as a reader");
    let reader_pool = ConnPool::with_tls(reader_meta, reader_id);
    let mut consumer = Consumer::open(reader_pool.clone(), 1, 0)
        .await
        .expect("consumer");
    let mut next = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while next < ENTRIES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {next} of {ENTRIES}"
        );
        for r in consumer
            .next_batch(Duration::from_secs(1))
            .await
            .expect("read")
        {
            assert_eq!(r.seq, next);
            assert_eq!(r.payload, format!("entry {next}").into_bytes());
            next += 1;
        }
    }
    let refused = Producer::open(reader_pool, 2, ProducerOptions::default()).await;
    assert!(
        matches!(refused, Err(ClientError::Forbidden { .. })),
        "{refused:?}"
    );

    // A node's port refuses plaintext.
    let node_addr = SocketAddr::new(hosts.ip(1).into(), NODE_PORT);
    assert!(NodeConn::connect_tokio(node_addr).await.is_err());

    // Each node's admin port, as a scraper reaches it: ready, and every
    // entry counted on every replica.
    for id in 1..=3u8 {
        let admin = SocketAddr::new(hosts.ip(id).into(), ADMIN_PORT);
        let (status, body) = http_get(admin, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"), "node {id}");
        let (status, metrics) = http_get(admin, "/metrics").await;
        assert_eq!(status, 200);
        let line = "trilog_append_entries_total{shard=\"0\"} ";
        let counted = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("node {id}: no {line} in\n{metrics}"));
        assert_eq!(counted, ENTRIES.to_string(), "node {id}");
        // Logs as JSON, one object per line.
        let log = std::fs::read_to_string(dir.path().join(format!("host-{id}/node.log")))
            .expect("node log");
        for l in log.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("node {id}: {e}: {l}"));
            assert!(v.get("message").is_some(), "{l}");
        }
    }

    // SIGTERM, as systemd stops the unit: node 3 drains, gives its
    // registration up in etcd (listed dead at once, not 3 s later) and
    // exits 0.
    let node3 = &mut procs.0[3];
    let asked = std::time::Instant::now();
    // SAFETY: kill(2) on a child this test spawned and has not reaped
    // (`ip netns exec` execs the node in its own process).
    let rc = unsafe { libc::kill(node3.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = node3.try_wait().expect("try_wait") {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 3 still runs");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = asked.elapsed();
    assert!(status.success(), "node 3 exited with {status}");
    let alive = meta.list_nodes(false).await.expect("list nodes");
    assert!(
        alive.iter().all(|n| n.info.node_id != 3),
        "node 3 still alive in etcd {took:?} after SIGTERM: {alive:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("host-3/node.log")).expect("node log");
    assert!(
        log.contains("SIGTERM: drained in") && log.contains("registration given up"),
        "{log}"
    );
    eprintln!("node 3 drained and exited {took:?} after SIGTERM");

    // Without its metadata store a node cannot stay registered: once its
    // lease is over, it says it is not ready, and why.
    let etcd = procs.0.remove(0);
    drop(Procs(vec![etcd]));
    let admin = SocketAddr::new(hosts.ip(1).into(), ADMIN_PORT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(admin, "/readyz").await;
        if status == 503 {
            assert!(body.contains("not registered"), "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready without etcd: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(procs);
}

/// One plain HTTP GET: its status and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("answer");
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
