//! How much latency a node adds to one append over the bare disk: a 4 KiB
//! O_DIRECT write plus fdatasync, against one 4 KiB append to a single node
//! over loopback (frame, crc, replica state machine, group commit, ack),
//! both at queue depth 1 on the same disk.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use trilog_client::conn::NodeConn;
use trilog_client::runtime::{Runtime, TokioRuntime};
use trilog_testkit::cluster::{Cluster, ClusterError};
use trilog_testkit::node_command::NodeCommand;
use trilog_tls::test_ca::TestCa;
use trilog_wire::message::{Append, Entry};
use trilog_wire::Message;

use crate::latency::{new_histogram, record};

const BLOCK: usize = 4096;

/// 4 KiB direct writes then fdatasync, `n` times, sequentially into a
/// preallocated file in `dir`.
pub fn bare_write_fdatasync(dir: &Path, n: usize) -> std::io::Result<Histogram<u64>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("bare-direct.dat");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let fd = file.as_raw_fd();
    let size = (n * BLOCK) as i64;
    // SAFETY: plain syscalls on a file descriptor we own.
    if unsafe { libc::fallocate(fd, 0, 0, size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let layout =
        std::alloc::Layout::from_size_align(BLOCK, BLOCK).map_err(std::io::Error::other)?;
    // SAFETY: the layout has a non-zero size; freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    if buf.is_null() {
        return Err(std::io::Error::other("out of memory"));
    }
    let mut h = new_histogram();
    let mut result = Ok(());
    for i in 0..n {
        // SAFETY: `buf` is BLOCK bytes, aligned to BLOCK.
        unsafe { *buf.add(i % BLOCK) = i as u8 };
        let t0 = Instant::now();
        // SAFETY: as above; the offset is block aligned and inside the file.
        let w = unsafe { libc::pwrite(fd, buf as *const libc::c_void, BLOCK, (i * BLOCK) as i64) };
        if w != BLOCK as isize || unsafe { libc::fdatasync(fd) } != 0 {
            result = Err(std::io::Error::last_os_error());
            break;
        }
        record(&mut h, t0.elapsed().as_micros() as u64);
    }
    // SAFETY: allocated above with the same layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    let _ = std::fs::remove_file(&path);
    result.map(|()| h)
}

/// Node latencies at queue depth 1.
#[derive(Debug)]
pub struct NodeLatency {
    /// An append of one entry of `payload_bytes`, until its ack.
    pub append: Histogram<u64>,
    /// A request that touches no disk (a read of an unknown segment): the
    /// network, framing and client share of an append's latency.
    pub round_trip: Histogram<u64>,
}

/// One node; appends of one entry of `payload_bytes` one at a time to one
/// segment on it, and as many disk-free round trips.
pub async fn node_append(
    n: usize,
    payload_bytes: usize,
) -> Result<(NodeLatency, Cluster), ClusterError> {
    let cluster = Cluster::start(1, NodeCommand::this_exe()?, None).await?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], cluster.nodes[0].port));
    let conn = NodeConn::connect_tokio(addr)
        .await
        .map_err(trilog_client::ClientError::from)?;
    let latency = time_requests(&conn, n, payload_bytes).await?;
    Ok((latency, cluster))
}

/// A node process started with mutual TLS on its port (a throwaway CA),
/// killed when dropped.
pub struct TlsNode {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`node_append`] over mutual TLS: one node of this executable's `node`
/// subcommand serving TLS only, a client with a producer's certificate of
/// the same CA, on the same disk (under `root`).
pub async fn node_append_tls(
    n: usize,
    payload_bytes: usize,
    root: &Path,
) -> Result<(NodeLatency, TlsNode), ClusterError> {
    use std::io::BufRead;
    let fail = |why: String| ClusterError::Node { node: 1, why };
    std::fs::create_dir_all(root)?;
    let dir = tempfile::tempdir_in(root)?;
    let ca = TestCa::new("trilog bench CA").map_err(|e| fail(e.to_string()))?;
    let node_files = ca
        .write_files(dir.path(), "node", "node", &["127.0.0.1"])
        .map_err(|e| fail(e.to_string()))?;
    let producer = ca
        .identity("producer", &[])
        .map_err(|e| fail(e.to_string()))?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "node",
            "--node-id",
            "1",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-ca")
        .arg(&node_files.ca)
        .arg("--tls-cert")
        .arg(&node_files.cert)
        .arg("--tls-key")
        .arg(&node_files.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    let node = TlsNode { child, _dir: dir };
    // "trilog-node ready ports=[N]"
    let port: u16 = line
        .trim()
        .rsplit('[')
        .next()
        .and_then(|p| p.trim_end_matches(']').parse().ok())
        .ok_or_else(|| fail(format!("no ready line: {line:?}")))?;
    let rt: Arc<dyn Runtime> = Arc::new(TokioRuntime::with_tls(Some(producer)));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let conn = NodeConn::connect(&rt, addr)
        .await
        .map_err(trilog_client::ClientError::from)?;
    let latency = time_requests(&conn, n, payload_bytes).await?;
    Ok((latency, node))
}

/// `n` appends of one entry, then `n` disk-free round trips, each waited
/// for before the next.
async fn time_requests(
    conn: &NodeConn,
    n: usize,
    payload_bytes: usize,
) -> Result<NodeLatency, ClusterError> {
    let mut h = new_histogram();
    let payload = vec![0x5au8; payload_bytes];
    for i in 0..n as u64 {
        let append = Append {
            log_id: 999,
            segment: 0,
            epoch: 1,
            first_seq: 0,
            first_offset: i,
            commit: i,
            entries: vec![Entry::new(payload.clone())],
        };
        let t0 = Instant::now();
        match conn.request(&append, Duration::from_secs(5)).await {
            Ok(Message::AppendAck(a)) if a.durable_len == i + 1 => {}
            other => {
                return Err(ClusterError::Node {
                    node: 1,
                    why: format!("append {i}: {other:?}"),
                })
            }
        }
        record(&mut h, t0.elapsed().as_micros() as u64);
    }
    let mut rt = new_histogram();
    let probe = trilog_wire::message::Read {
        log_id: 998,
        segment: 0,
        from_offset: 0,
        limit: u64::MAX,
        max_bytes: 4096,
        wait_ms: 0,
    };
    for _ in 0..n {
        let t0 = Instant::now();
        let answer = conn.request(&probe, Duration::from_secs(5)).await;
        if !matches!(answer, Ok(Message::ErrorMsg(_))) {
            return Err(ClusterError::Node {
                node: 1,
                why: format!("probe read: {answer:?}"),
            });
        }
        record(&mut rt, t0.elapsed().as_micros() as u64);
    }
    Ok(NodeLatency {
        append: h,
        round_trip: rt,
    })
}
