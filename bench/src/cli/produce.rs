//! `trilog-bench produce` (hidden): a producer in a process of its own,
//! for the fault tests, which kill it.

use std::process::ExitCode;

use clap::Args;
use trilog_testkit::producer_proc::{self, ProduceConfig};

use super::values::at_least_one;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[arg(long)]
    meta: std::net::SocketAddr,
    #[arg(long)]
    log: u64,
    #[arg(long, default_value_t = 128)]
    payload_bytes: usize,
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    concurrency: usize,
    /// Take the log over instead of opening it.
    #[arg(long)]
    takeover: bool,
    /// Id of the first payload.
    #[arg(long, default_value_t = 0)]
    first_id: u64,
    /// Close after this many acks (default: run until killed).
    #[arg(long)]
    count: Option<u64>,
}

pub async fn run(args: ProduceArgs) -> ExitCode {
    let cfg = ProduceConfig {
        meta: args.meta,
        log_id: args.log,
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        takeover: args.takeover,
        first_id: args.first_id,
        count: args.count,
    };
    match producer_proc::run(cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("produce: {e}");
            ExitCode::FAILURE
        }
    }
}
