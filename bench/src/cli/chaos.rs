//! `trilog-bench chaos`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use trilog_bench::chaos::{self, ChaosConfig, ChaosReport};
use trilog_bench::machine::machine;
use trilog_testkit::node_command::NodeCommand;

use super::values::{at_least_one, parse_duration};

#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Nodes (node 1 holds the metadata and is never faulted).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Seeds the fault schedule (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Appends in flight.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    concurrency: usize,
    /// No partitions (otherwise nodes 2.. sit behind proxies that
    /// the injector can cut).
    #[arg(long)]
    no_partitions: bool,
    /// No node lost for good (otherwise one is, a third of the way in, and
    /// the cluster repairs its sealed segments by itself; needs 6 nodes).
    #[arg(long)]
    no_node_loss: bool,
    /// No full disks (otherwise the last node runs on a small ext4 image
    /// of its own, mounted on a loop device, which is filled now and then;
    /// needs root).
    #[arg(long)]
    no_full_disk: bool,
}

/// Runs the chaos; prints the outcomes and the one-line verdict.
pub async fn run(args: ChaosArgs) -> ExitCode {
    println!("machine: {}", machine());
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    if args.nodes < chaos::NODES_MIN {
        eprintln!("chaos needs at least 5 nodes (node 1, 3 replicas, a spare)");
        return ExitCode::FAILURE;
    }
    if !args.no_node_loss && args.nodes < chaos::NODES_MIN_WITH_LOSS {
        eprintln!("chaos with a node lost for good needs at least 6 nodes (or --no-node-loss)");
        return ExitCode::FAILURE;
    }
    let cfg = ChaosConfig {
        nodes: args.nodes,
        duration: args.duration,
        seed,
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        log_id: 1,
        partitions: !args.no_partitions,
        node_loss: !args.no_node_loss,
        full_disk: !args.no_full_disk,
    };
    let cmd = match NodeCommand::this_exe() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match chaos::run(cfg, cmd).await {
        Ok(report) => {
            print_outcomes(&report);
            println!("{}", report.line());
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_outcomes(report: &ChaosReport) {
    let l = &report.ledger_summary;
    let v = &report.verdict;
    println!(
        "outcomes: acked={} unknown={} (of which in the log: {}) refused={} (never taken); log entries={} segments={} epoch={} takeovers_failed={} consumer_reopened={} phantom={} seq_reused={} disk_faults={} healed={} unhealed={} in {:.1}s",
        l.acked,
        l.maybe,
        report.log_len.saturating_sub(l.acked),
        l.refused,
        report.log_len,
        report.segments,
        report.epoch,
        report.takeovers_failed,
        report.consumer_reopened,
        v.phantom,
        l.seq_reused,
        report.disk_faults,
        report.healed,
        report.unhealed,
        report.elapsed.as_secs_f64()
    );
}
