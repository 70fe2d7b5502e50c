//! `trilog-bench throughput`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use trilog_bench::fio::fio_seq_write;
use trilog_bench::machine::machine;
use trilog_bench::throughput::trilog_throughput;
use trilog_testkit::cluster::default_root;

use super::values::{at_least_one, parse_duration};
use super::{command_line, commands};

#[derive(Debug, Args)]
pub struct ThroughputArgs {
    #[arg(long, default_value_t = 64 * 1024)]
    payload_bytes: usize,
    /// Entries per append call.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    batch: usize,
    /// Writers, each with one append call in flight.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    writers: usize,
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 128 * 1024)]
    fio_block_bytes: usize,
    #[arg(long, default_value_t = 16)]
    fio_iodepth: usize,
}

/// Runs fio, then trilog, on the same disk; prints both and their ratio.
pub async fn run(args: ThroughputArgs) -> ExitCode {
    let ThroughputArgs {
        payload_bytes,
        batch,
        writers,
        duration,
        fio_block_bytes,
        fio_iodepth,
    } = args;
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    println!("machine: {}", machine());
    println!("command: {}", command_line());
    let root = default_root();
    let seconds = duration.as_secs().max(1);
    let fio = match fio_seq_write(&root, fio_block_bytes, fio_iodepth, seconds) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fio: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "fio: direct sequential write, {} KiB blocks, queue depth {fio_iodepth}, {seconds} s, in {}: {:.0} MB/s",
        fio_block_bytes / 1024,
        root.display(),
        fio.bytes_per_s / 1e6
    );
    let t = match trilog_throughput(cmds.node, payload_bytes, batch, writers, duration).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("trilog: {e}");
            return ExitCode::FAILURE;
        }
    };
    let replicated = t.replicated_bytes_per_s();
    println!(
        "trilog: 3 nodes on this disk, {payload_bytes} B payloads, {batch} per append call, {writers} writers, {:?}: payload {:.0} MB/s, replicated (x{}) {:.0} MB/s, {} appends failed",
        duration,
        t.load.payload_bytes_per_s(payload_bytes) / 1e6,
        t.replicas,
        replicated / 1e6,
        t.load.errors
    );
    println!(
        "trilog replicated / fio: {:.0}% (goal >= 70%)",
        100.0 * replicated / fio.bytes_per_s.max(1.0)
    );
    let per_gib = |s: Option<f64>| match s {
        Some(s) => format!("{s:.2}"),
        None => "unknown (no /proc)".into(),
    };
    println!(
        "cpu: nodes {} s in all, {} CPU-s per GiB a node wrote (goal < 1); client {} s, {} CPU-s per GiB appended",
        per_gib(t.node_cpu_s),
        per_gib(t.node_cpu_s_per_gib()),
        per_gib(t.client_cpu_s),
        per_gib(t.client_cpu_s_per_gib()),
    );
    ExitCode::SUCCESS
}
