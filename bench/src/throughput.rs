//! Throughput against the disk: trilog with large batches and many appends
//! in flight, next to what fio reaches with direct sequential writes on the
//! same disk in the same run. Every replica here shares this one disk, so
//! trilog's figure counts each replica's bytes (payload x 3).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use trilog_client::{Producer, ProducerOptions};
use trilog_testkit::cluster::{Cluster, ClusterError};
use trilog_testkit::node_command::NodeCommand;

use crate::load::{run, LoadConfig, LoadResult, Mode};
use crate::targets::TrilogTarget;

/// What fio reached.
#[derive(Debug, Clone, Copy)]
pub struct FioResult {
    pub bytes_per_s: f64,
}

/// Runs fio: direct sequential writes of `block_bytes` at queue depth
/// `iodepth` for `seconds` into a file under `dir`.
pub fn fio_seq_write(
    dir: &Path,
    block_bytes: usize,
    iodepth: usize,
    seconds: u64,
) -> std::io::Result<FioResult> {
    let file = dir.join("fio-seq-write.dat");
    let out = Command::new("fio")
        .args([
            "--name=seqwrite",
            "--rw=write",
            "--direct=1",
            "--ioengine=io_uring",
            "--size=2g",
            "--time_based",
        ])
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--bs={block_bytes}"))
        .arg(format!("--iodepth={iodepth}"))
        .arg(format!("--runtime={seconds}"))
        .arg("--output-format=json")
        .output()
        .map_err(|e| std::io::Error::other(format!("fio: {e} (apt-get install fio)")))?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes_per_s = json_number_after(&text, "\"write\"", "\"bw_bytes\"")
        .ok_or_else(|| std::io::Error::other("fio output has no write bw_bytes"))?;
    Ok(FioResult { bytes_per_s })
}

/// The number after `key` in the object that `section` names in a JSON
/// text (`"write" : {...}`, not the string value `"rw" : "write"`).
fn json_number_after(text: &str, section: &str, key: &str) -> Option<f64> {
    let at = text.match_indices(section).find_map(|(i, _)| {
        let after = text[i + section.len()..].trim_start().strip_prefix(':')?;
        after.trim_start().starts_with('{').then_some(i)
    })?;
    let rest = &text[at..];
    let k = rest.find(key)?;
    let after = rest[k + key.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = after
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e' || c == '+'))?;
    after[..end].parse().ok()
}

/// What trilog reached.
#[derive(Debug, Clone)]
pub struct TrilogThroughput {
    pub load: LoadResult,
    pub payload_bytes: usize,
    pub replicas: usize,
}

impl TrilogThroughput {
    /// Bytes written to disk per second, over all replicas.
    pub fn replicated_bytes_per_s(&self) -> f64 {
        self.load.payload_bytes_per_s(self.payload_bytes) * self.replicas as f64
    }
}

/// Runs large batches on a 3-node cluster (all replicas on this disk).
pub async fn trilog_throughput(
    node: NodeCommand,
    payload_bytes: usize,
    batch: usize,
    writers: usize,
    duration: Duration,
) -> Result<TrilogThroughput, ClusterError> {
    let cluster = Cluster::start(3, node, None).await?;
    let mut opts = ProducerOptions::default();
    opts.config.window = 32;
    opts.config.batch_bytes_max = 2 << 20;
    opts.in_flight_bytes_max = 256 << 20;
    let producer = Producer::open(cluster.pool(), 1, opts).await?;
    let load = run(
        Arc::new(TrilogTarget { producer }),
        LoadConfig {
            mode: Mode::Closed { writers },
            payload_bytes,
            batch,
            duration,
            warmup: Duration::from_secs(2),
            progress: true,
        },
    )
    .await;
    Ok(TrilogThroughput {
        load,
        payload_bytes,
        replicas: 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_write_bandwidth_in_fio_json() {
        let j = r#"{"jobs":[{"job options" : {"rw" : "write"}, "read":{"bw_bytes" : 0},"write" : {"io_bytes" : 5, "bw_bytes" : 1048576000, "iops" : 8000.5}}]}"#;
        assert_eq!(
            json_number_after(j, "\"write\"", "\"bw_bytes\""),
            Some(1_048_576_000.0)
        );
        assert_eq!(json_number_after(j, "\"trim\"", "\"bw_bytes\""), None);
    }
}
