//! `trilog-bench load`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use trilog_bench::compare::{self, Outcome, System};
use trilog_bench::load::{LoadConfig, Mode};
use trilog_bench::report;

use super::values::{at_least_one, parse_duration, positive_rate};
use super::{commands, print_header};

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// trilog, raft3, raft5 or etcd3.
    #[arg(long, default_value = "trilog")]
    system: System,
    /// Open loop: appends started per second.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Closed loop: writers; open loop: appends in flight at most.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    concurrency: usize,
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Entries per append call.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    batch: usize,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Simulated round trip to every node, through delay proxies.
    #[arg(long)]
    rtt_us: Option<u64>,
    /// Save the raw histogram here as `<system>.hdr`.
    #[arg(long)]
    histogram_dir: Option<PathBuf>,
}

/// Starts the system, runs the load, prints its row and its counts.
pub async fn run(args: LoadArgs) -> ExitCode {
    let mode = match args.rate {
        Some(rate_per_s) => Mode::Open {
            rate_per_s,
            in_flight_max: args.concurrency,
        },
        None => Mode::Closed {
            writers: args.concurrency,
        },
    };
    let load = LoadConfig {
        mode,
        payload_bytes: args.payload_bytes,
        batch: args.batch,
        duration: args.duration,
        warmup: args.warmup,
        progress: true,
    };
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    print_header(&load, args.rtt_us);
    let histogram_dir = args.histogram_dir.as_deref();
    match compare::run_system(args.system, &cmds, args.rtt_us, None, &load, histogram_dir).await {
        Ok(o) => {
            print_outcome(&o, &load, args.rtt_us);
            if let Some(d) = histogram_dir {
                println!(
                    "raw histogram: {}",
                    d.join(format!("{}.hdr", args.system.name())).display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_outcome(o: &Outcome, load: &LoadConfig, rtt_us: Option<u64>) {
    print!("{}", report::table(std::slice::from_ref(&o.result)));
    if let (Some((chunks, mean)), Some(rtt)) = (o.proxied, rtt_us) {
        println!(
            "delay proxies forwarded {chunks} chunks, mean one-way delay {} us (asked {} us)",
            mean.as_micros(),
            rtt / 2
        );
    }
    println!(
        "{} appends ({} entries, {:.1} MB/s of payload), {} failed, {} dropped (open loop: not started, {} in flight already)",
        o.load.ops,
        o.load.entries,
        o.load.payload_bytes_per_s(load.payload_bytes) / 1e6,
        o.load.errors,
        o.load.dropped,
        load.mode.in_flight_max()
    );
}
