//! `trilog-bench quickstart`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use trilog_bench::machine::machine;
use trilog_bench::quickstart::{self, QuickstartConfig};

use super::values::{at_least_one, parse_duration};

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    concurrency: usize,
    /// Do not kill a replica of the open segment halfway through.
    #[arg(long)]
    no_kill: bool,
}

/// Runs the quickstart; prints its table and its one-line verdict.
pub async fn run(args: QuickstartArgs) -> ExitCode {
    let cfg = QuickstartConfig {
        nodes: args.nodes,
        duration: args.duration,
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        log_id: 1,
        kill: !args.no_kill,
    };
    println!("machine: {}", machine());
    match quickstart::run(cfg).await {
        Ok(report) => {
            print!("{}", report.table);
            if report.verdict.phantom > 0 {
                println!(
                    "entries read that were never committed: {}",
                    report.verdict.phantom
                );
            }
            println!("{}", report.line(args.nodes));
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}
