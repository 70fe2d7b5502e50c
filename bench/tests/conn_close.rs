//! A dropped client connection is closed: a process that opens and drops
//! many `NodeConn`s (each after a request) to a real node ends with about
//! as many open file descriptors as it started with. Before, every dropped
//! connection stayed open for good (its writer and reader tasks held it),
//! a socket in the client and a connection slot in the node each.

use std::time::Duration;

use trilog_client::conn::NodeConn;
use trilog_testkit::cluster::Cluster;
use trilog_testkit::node_command::NodeCommand;
use trilog_testkit::wait::wait_for;
use trilog_wire::message::Read;
use trilog_wire::Message;

const CONNS: usize = 300;
/// Descriptors the process may hold past its start when done (the
/// runtime's own, a connection or two still closing).
const SLACK_FDS: usize = 16;

fn node_command() -> NodeCommand {
    NodeCommand::subcommand(env!("CARGO_BIN_EXE_trilog-bench"), "node")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_closed() {
    let cluster = Cluster::start(1, node_command(), None)
        .await
        .expect("cluster");
    let addr = cluster.client_addr(1).expect("addr");
    // One connection first, so lazily made runtime state is counted.
    drop(NodeConn::connect_tokio(addr).await.expect("connect"));
    let before = open_fds();
    for _ in 0..CONNS {
        let conn = NodeConn::connect_tokio(addr).await.expect("connect");
        let read = Read {
            log_id: 1,
            segment: 0,
            from_offset: 0,
            limit: 0,
            max_bytes: 0,
            wait_ms: 0,
        };
        let answer = conn
            .request(&read, Duration::from_secs(10))
            .await
            .expect("answer");
        assert!(matches!(
            answer,
            Message::ReadResponse(_) | Message::ErrorMsg(_)
        ));
    }
    let settled = wait_for(
        "dropped connections closed",
        Duration::from_secs(20),
        || async {
            let now = open_fds();
            (now <= before + SLACK_FDS).then_some(now)
        },
    )
    .await;
    assert!(
        settled.is_ok(),
        "{} descriptors open after {CONNS} dropped connections, {before} before",
        open_fds()
    );
}
