//! Helpers of the node's process tests: a real `trilog-node` process on
//! loopback, and a blocking client that speaks frames to it.

#![allow(dead_code)] // each test file uses its own share

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use trilog_wire::message::Hello;
use trilog_wire::{decode_payload, encode, FrameDecoder, Message};

pub struct Node {
    child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// The node process's resident memory, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the node's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in kB");
        kib * 1024
    }
}

pub fn start_node() -> Node {
    start_node_with(&[])
}

/// A node with `extra` flags on top of the usual ones.
pub fn start_node_with(extra: &[&str]) -> Node {
    let dir = tempfile::Builder::new()
        .prefix("trilog-node-test-")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    let log = dir.path().join("node.log");
    let stderr = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trilog-node"))
        .args(["--node-id", "1", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
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

/// Waits, at most `within`, until the node's log says `needle`.
pub fn wait_for_log(node: &Node, needle: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(&node.log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log never said {needle:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one whole frame with the wire's decoder; None once the node closed
/// the connection (or cut a frame short).
pub fn read_frame(s: &mut TcpStream) -> Option<Message> {
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

pub fn handshake(s: &mut TcpStream) {
    s.write_all(&encode(
        0,
        &Hello {
            client: "test".into(),
        },
    ))
    .expect("hello");
    assert!(matches!(read_frame(s), Some(Message::HelloOk(_))));
}

/// Sends `msg` as request `request_id`.
pub fn send(s: &mut TcpStream, request_id: u64, msg: Message) {
    s.write_all(&msg.encode(request_id)).expect("send");
}
