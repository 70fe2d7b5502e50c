//! Node identity with real processes: a cluster of 3
//! `trilog-bench node` processes (node 1 serves the embedded store), and
//! node processes started as a careless operator would: another process
//! with a live node's id, a node's directory under another id, a node
//! whose directory was wiped. Each is refused (a non-zero exit and an error
//! that says why), and the cluster's registrations are unharmed.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use trilog_client::conn::NodeConn;
use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::Cluster;
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::payload::make_payload;
use trilog_testkit::ports::free_port;
use trilog_testkit::wait::wait_for;
use trilog_wire::message::Read;
use trilog_wire::record::parse_records;
use trilog_wire::Message;

/// Generous: a refused node exits within the store's answer time.
const EXIT_WAIT: Duration = Duration::from_secs(60);

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

/// Runs a node process that is expected to refuse to start: waits for it
/// to exit (killing it and failing the test if it is still running after
/// [`EXIT_WAIT`]) and returns its exit status and standard error.
fn run_refused(
    cluster: &Cluster,
    node_id: u64,
    dir: &Path,
    extra: &[&str],
) -> (ExitStatus, String) {
    let cmd = node_command();
    let err_path = cluster.dir.join(format!(
        "refused-{node_id}-{}.log",
        free_port().expect("port")
    ));
    let err_file = std::fs::File::create(&err_path).expect("log file");
    let mut child = Command::new(&cmd.program)
        .args(&cmd.prefix)
        .args(["--node-id", &node_id.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .args(["--port", &free_port().expect("port").to_string()])
        .args(["--meta", &cluster.meta_addr.to_string()])
        .args(["--lease-ms", &cluster.lease_ms.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file))
        .spawn()
        .expect("spawn node");
    let deadline = Instant::now() + EXIT_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!("node {node_id} on {} was not refused: {log}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&err_path).expect("stderr"))
}

/// Writes `n` entries to `log_id` and closes the producer, so that every
/// node of the cluster holds a replica of its segment.
async fn write(cluster: &Cluster, log_id: u64, n: u64) {
    let producer = Producer::open(cluster.pool(), log_id, ProducerOptions::default())
        .await
        .expect("open producer");
    for id in 0..n {
        producer
            .submit(make_payload(id, 100))
            .await
            .expect("submit")
            .await
            .expect("committed");
    }
    producer.close().await.expect("close");
}

/// The shard ports node `id` is registered with, if alive.
async fn registered_ports(cluster: &Cluster, id: u64) -> Option<Vec<u16>> {
    let nodes = cluster.meta().list_nodes(false).await.expect("list nodes");
    nodes
        .into_iter()
        .find(|n| n.info.node_id == id && n.alive)
        .map(|n| n.info.shard_ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_with_a_live_nodes_id_is_refused() {
    let cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    let port = cluster.nodes[1].port;
    assert_eq!(registered_ports(&cluster, 2).await, Some(vec![port]));
    let empty = cluster.dir.join("impostor");
    let (status, stderr) = tokio::task::block_in_place(|| run_refused(&cluster, 2, &empty, &[]));
    assert!(!status.success(), "{status}: {stderr}");
    let expected = format!("node id 2 is registered by another live process at 127.0.0.1:{port}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("stop it or wait for its lease"), "{stderr}");
    // --replace does not take a live node's id either.
    let (status, stderr) =
        tokio::task::block_in_place(|| run_refused(&cluster, 2, &empty, &["--replace"]));
    assert!(
        !status.success() && stderr.contains(&expected),
        "{status}: {stderr}"
    );
    // The real node keeps its registration, renewed past the impostor.
    tokio::time::sleep(Duration::from_millis(2 * cluster.lease_ms)).await;
    assert_eq!(registered_ports(&cluster, 2).await, Some(vec![port]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_directory_under_another_id_is_refused() {
    let mut cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    write(&cluster, 5, 20).await;
    cluster.kill(3).expect("kill");
    let dir = cluster.nodes[2].dir.clone();
    let (status, stderr) = tokio::task::block_in_place(|| run_refused(&cluster, 4, &dir, &[]));
    assert!(!status.success(), "{status}: {stderr}");
    let expected = format!(
        "data directory {} belongs to node 3, not to --node-id 4",
        dir.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // Node 3 itself restarts on it at once, while its old lease may still
    // run: the same incarnation re-registers.
    tokio::task::block_in_place(|| cluster.spawn(3)).expect("node 3 restarts");
    cluster
        .wait_node(3, true, Duration::from_secs(20))
        .await
        .expect("node 3 alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_directory_is_refused_unless_replace() {
    let mut cluster = Cluster::start(3, node_command(), None)
        .await
        .expect("cluster");
    write(&cluster, 9, 20).await;
    cluster.kill(3).expect("kill");
    cluster
        .wait_node(3, false, Duration::from_secs(20))
        .await
        .expect("node 3's lease ran out");
    let dir = cluster.nodes[2].dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe");
    let (status, stderr) = tokio::task::block_in_place(|| run_refused(&cluster, 3, &dir, &[]));
    assert!(!status.success(), "{status}: {stderr}");
    let expected = format!(
        "data directory {} is empty, but the metadata lists node 3 as a replica",
        dir.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("--replace"), "{stderr}");
    // The operator says this node replaces the lost one: it starts.
    tokio::task::block_in_place(|| cluster.spawn_with(3, &["--replace"])).expect("node 3 replaces");
    cluster
        .wait_node(3, true, Duration::from_secs(20))
        .await
        .expect("node 3 alive");
    let identity = std::fs::read_to_string(dir.join("identity")).expect("identity file");
    assert!(identity.contains("node_id = 3\n"), "{identity}");
    // The replacement refills its copy of every sealed segment the record
    // lists it for, from the other replicas, by itself.
    let record = cluster.meta().get_log(9).await.expect("meta").record;
    let segment = record.expect("log 9").segments[0].clone();
    let len = segment.sealed_len.expect("sealed by the close");
    assert!(segment.replicas.contains(&3), "{segment:?}");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], cluster.nodes[2].port));
    let payloads = wait_for(
        "node 3 to hold its copy again",
        Duration::from_secs(60),
        || async move {
            let conn = NodeConn::connect_tokio(addr).await.ok()?;
            let read = Read {
                log_id: 9,
                segment: segment.id,
                from_offset: 0,
                limit: len,
                max_bytes: 1 << 20,
                wait_ms: 0,
            };
            match conn.request(&read, Duration::from_secs(5)).await.ok()? {
                Message::ReadResponse(r) if u64::from(r.count) == len => {
                    let parsed = parse_records(&r.records, 0, r.count).expect("valid records");
                    Some(
                        parsed
                            .into_iter()
                            .map(|(_, p)| p.to_vec())
                            .collect::<Vec<_>>(),
                    )
                }
                _ => None,
            }
        },
    )
    .await
    .expect("refilled");
    for (id, payload) in payloads.iter().enumerate() {
        assert_eq!(payload, &make_payload(id as u64, 100), "entry {id}");
    }
}
