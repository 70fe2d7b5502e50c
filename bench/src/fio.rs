//! fio, the disk's own figure beside trilog's: a direct sequential write
//! run by fio, and its JSON output (`--output-format=json`) read into the
//! few typed fields the throughput run uses; and the latency of one
//! durable 4 KiB write (a direct write, then fdatasync), the disk's share
//! of the latency floor (`crate::floor`).

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// Why fio gave no figure.
#[derive(Debug, thiserror::Error)]
pub enum FioError {
    #[error("cannot run fio: {0} (apt-get install fio)")]
    Spawn(std::io::Error),
    #[error("fio failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("fio's output holds no JSON document")]
    NoDocument,
    #[error("fio's JSON output: {0}")]
    Json(#[from] serde_json::Error),
    #[error("fio job {job}: error {error}")]
    Job { job: String, error: i64 },
    #[error("fio's output has no job")]
    NoJob,
    #[error("fio's output has no {what} latency percentiles")]
    NoLatency { what: &'static str },
}

/// fio's JSON document: only the fields read here (serde skips the rest).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioOutput {
    #[serde(rename = "fio version")]
    pub version: String,
    pub jobs: Vec<FioJob>,
}

/// One job's results.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioJob {
    pub jobname: String,
    /// The job's errno; 0 if it ran through.
    pub error: i64,
    pub write: FioDirection,
    /// The fsyncs or fdatasyncs of a job that asked for them.
    #[serde(default)]
    pub sync: Option<FioSync>,
}

/// The syncs of a job (`--fdatasync=1`: one after every write).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioSync {
    pub lat_ns: FioLatency,
}

/// A latency distribution: percentiles by fio's key (`"50.000000"`), in
/// nanoseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioLatency {
    #[serde(default)]
    pub percentile: std::collections::BTreeMap<String, u64>,
}

impl FioLatency {
    fn p50_ns(&self) -> Option<u64> {
        self.percentile.get("50.000000").copied()
    }
}

/// A job's figures in one direction (fio reports read, write and trim
/// apart).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FioDirection {
    pub io_bytes: u64,
    /// Bytes per second over the job's runtime.
    pub bw_bytes: u64,
    pub iops: f64,
    /// Milliseconds.
    pub runtime: u64,
    /// Completion latency (submission to completion) of each IO.
    #[serde(default)]
    pub clat_ns: Option<FioLatency>,
}

impl FioOutput {
    /// Reads fio's standard output. fio may print notes of failed I/O on
    /// the same stream before the document (axboe/fio#731; its
    /// maintainers advise skipping them): the document starts at the first
    /// line that opens an object.
    pub fn parse(stdout: &str) -> Result<FioOutput, FioError> {
        let start = stdout
            .match_indices('{')
            .map(|(i, _)| i)
            .find(|&i| i == 0 || stdout[..i].ends_with('\n'))
            .ok_or(FioError::NoDocument)?;
        Ok(serde_json::from_str(&stdout[start..])?)
    }

    /// The write bandwidth of every job together, in bytes per second; an
    /// error if a job failed.
    pub fn write_bytes_per_s(&self) -> Result<f64, FioError> {
        if let Some(job) = self.jobs.iter().find(|j| j.error != 0) {
            return Err(FioError::Job {
                job: job.jobname.clone(),
                error: job.error,
            });
        }
        if self.jobs.is_empty() {
            return Err(FioError::NoJob);
        }
        Ok(self.jobs.iter().map(|j| j.write.bw_bytes as f64).sum())
    }

    /// The medians of the first job's writes and syncs.
    pub fn durable_write(&self) -> Result<DurableWrite, FioError> {
        let job = self.jobs.first().ok_or(FioError::NoJob)?;
        if job.error != 0 {
            return Err(FioError::Job {
                job: job.jobname.clone(),
                error: job.error,
            });
        }
        let write_p50_ns = job
            .write
            .clat_ns
            .as_ref()
            .and_then(FioLatency::p50_ns)
            .ok_or(FioError::NoLatency { what: "write" })?;
        let sync_p50_ns = job
            .sync
            .as_ref()
            .and_then(|s| s.lat_ns.p50_ns())
            .ok_or(FioError::NoLatency { what: "fdatasync" })?;
        Ok(DurableWrite {
            write_p50_us: write_p50_ns / 1000,
            sync_p50_us: sync_p50_ns / 1000,
        })
    }
}

/// One durable write's median cost: its direct write, then its fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableWrite {
    pub write_p50_us: u64,
    pub sync_p50_us: u64,
}

impl DurableWrite {
    /// The median of a durable write, taken as the sum of the two medians
    /// (fio reports them apart; the two are nearly independent).
    pub fn p50_us(&self) -> u64 {
        self.write_p50_us + self.sync_p50_us
    }
}

/// Runs fio: 4 KiB direct writes, each followed by fdatasync, one at a
/// time (`psync`), for `seconds` into a file under `dir` (removed after):
/// what one append costs the disk at queue depth 1.
pub fn fio_durable_write(dir: &Path, seconds: u64) -> Result<DurableWrite, FioError> {
    let file = dir.join("fio-durable-write.dat");
    let out = Command::new("fio")
        .args([
            "--name=durable",
            "--rw=write",
            "--bs=4k",
            "--direct=1",
            "--ioengine=psync",
            "--fdatasync=1",
            "--size=64m",
            "--time_based",
        ])
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--runtime={seconds}"))
        .arg("--output-format=json")
        .output()
        .map_err(FioError::Spawn)?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(FioError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    FioOutput::parse(&String::from_utf8_lossy(&out.stdout))?.durable_write()
}

/// What fio reached.
#[derive(Debug, Clone, Copy)]
pub struct FioResult {
    pub bytes_per_s: f64,
}

/// Runs fio: direct sequential writes of `block_bytes` at queue depth
/// `iodepth` for `seconds` into a file under `dir` (removed after).
pub fn fio_seq_write(
    dir: &Path,
    block_bytes: usize,
    iodepth: usize,
    seconds: u64,
) -> Result<FioResult, FioError> {
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
        .map_err(FioError::Spawn)?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(FioError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let output = FioOutput::parse(&String::from_utf8_lossy(&out.stdout))?;
    Ok(FioResult {
        bytes_per_s: output.write_bytes_per_s()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fio --name=seqwrite --rw=write --direct=1 --ioengine=io_uring
    /// --bs=1048576 --iodepth=4 --runtime=1 --time_based
    /// --output-format=json`, as fio 3.33 printed it.
    const CAPTURED: &str = include_str!("../testdata/fio-3.33-seq-write.json");

    #[test]
    fn reads_the_write_bandwidth_of_a_captured_run() {
        let out = FioOutput::parse(CAPTURED).expect("fio's document");
        assert_eq!(out.version, "fio-3.33");
        assert_eq!(out.jobs.len(), 1);
        let job = &out.jobs[0];
        assert_eq!((job.jobname.as_str(), job.error), ("seqwrite", 0));
        assert_eq!(job.write.bw_bytes, 1_492_003_661);
        assert_eq!(job.write.io_bytes, 1_499_463_680);
        assert_eq!(job.write.runtime, 1005);
        assert_eq!(out.write_bytes_per_s().expect("no error"), 1_492_003_661.0);
    }

    /// `fio --name=durable --rw=write --bs=4k --direct=1 --ioengine=psync
    /// --fdatasync=1 --size=64m --runtime=2 --time_based
    /// --output-format=json`, as fio 3.33 printed it.
    const DURABLE: &str = include_str!("../testdata/fio-3.33-durable-write.json");

    #[test]
    fn reads_the_medians_of_a_captured_durable_write_run() {
        let out = FioOutput::parse(DURABLE).expect("fio's document");
        let d = out.durable_write().expect("both medians");
        assert_eq!(
            d,
            DurableWrite {
                write_p50_us: 83,
                sync_p50_us: 160
            }
        );
        assert_eq!(d.p50_us(), 243);
        // A sequential-write run asked for no syncs: no durable figure.
        let seq = FioOutput::parse(CAPTURED).expect("fio's document");
        assert!(matches!(
            seq.durable_write(),
            Err(FioError::NoLatency { what: "fdatasync" })
        ));
    }

    #[test]
    fn notes_before_the_document_are_skipped() {
        let noisy = format!(
            "fio: io_u error on file /x: No space left on device: write offset=0, buflen=4096 {{\n{CAPTURED}"
        );
        let out = FioOutput::parse(&noisy).expect("the document after the notes");
        assert_eq!(out.jobs[0].write.bw_bytes, 1_492_003_661);
    }

    #[test]
    fn a_failed_job_or_no_document_is_an_error() {
        let failed = CAPTURED.replacen("\"error\" : 0", "\"error\" : 28", 1);
        let out = FioOutput::parse(&failed).expect("still a document");
        assert!(matches!(
            out.write_bytes_per_s(),
            Err(FioError::Job { error: 28, .. })
        ));
        assert!(matches!(
            FioOutput::parse("fio: command not found\n"),
            Err(FioError::NoDocument)
        ));
        assert!(matches!(
            FioOutput::parse("{\"jobs\": []"),
            Err(FioError::Json(_))
        ));
        let none = FioOutput::parse(r#"{"fio version": "fio-3.33", "jobs": []}"#).expect("JSON");
        assert!(matches!(none.write_bytes_per_s(), Err(FioError::NoJob)));
    }
}
