//! `trilog-bench scale`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use trilog_bench::machine::machine;
use trilog_bench::report::scale_plot::scale_svg;
use trilog_bench::scale::{scale_run, ScaleLoad, ScaleReport};
use trilog_testkit::cluster::Cluster;

use super::values::{at_least_one, parse_duration};
use super::{command_line, commands};

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// How many logs each run spreads the load over, one producer each.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    logs: Vec<usize>,
    /// Appends per second over all logs together, the same in every run.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Appends in flight at most, over all logs.
    #[arg(long, default_value_t = 1024, value_parser = at_least_one)]
    in_flight_max: usize,
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Measured time per run.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Warmup per run, not measured.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Write `{"runs": [{"logs", "ops_per_s", "p50_us", "p99_us", "node_rss_bytes", ...}]}` here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and latency against the number of logs here (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One 5-node cluster; a run per number of logs, on logs of its own.
pub async fn run(args: ScaleArgs) -> ExitCode {
    if args.logs.contains(&0) || !args.rate.is_finite() || args.rate <= 0.0 {
        eprintln!("scale: every run needs a log and a positive rate");
        return ExitCode::from(2);
    }
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    println!("machine: {}", machine());
    println!("command: {}", command_line());
    let cluster = match Cluster::start(5, cmds.node, None).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scale: cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load = ScaleLoad {
        rate_per_s: args.rate,
        in_flight_max: args.in_flight_max,
        payload_bytes: args.payload_bytes,
        duration: args.duration,
        warmup: args.warmup,
    };
    println!(
        "5 nodes, {} appends/s of {} B over all logs, {:?} per run",
        args.rate, args.payload_bytes, args.duration
    );
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>14} {:>7} {:>8}",
        "logs", "ops/s", "p50_us", "p99_us", "node_rss_MiB", "errors", "dropped"
    );
    let mut runs = Vec::new();
    let mut first_log = 1u64;
    for &logs in &args.logs {
        let r = match scale_run(&cluster, logs, first_log, load).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("scale: {logs} logs: {e}");
                return ExitCode::FAILURE;
            }
        };
        first_log += logs as u64;
        println!(
            "{:>6} {:>10.1} {:>8} {:>8} {:>14.1} {:>7} {:>8}",
            r.logs,
            r.ops_per_s,
            r.p50_us,
            r.p99_us,
            r.node_rss_bytes as f64 / (1 << 20) as f64,
            r.errors,
            r.dropped
        );
        runs.push(r);
    }
    if let (Some(one), Some(most)) = (runs.first(), runs.last()) {
        println!(
            "{} logs against {}: throughput {:.0}%, p99 {:.2}x (goals >= 80%, <= 2x)",
            most.logs,
            one.logs,
            100.0 * most.ops_per_s / one.ops_per_s.max(1e-9),
            most.p99_us as f64 / one.p99_us.max(1) as f64
        );
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} appends/s of {} B spread over N logs, 5 nodes",
            args.rate, args.payload_bytes
        );
        let svg = match scale_svg(&title, &runs) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("scale: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, svg) {
            eprintln!("scale: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        let text = match serde_json::to_string_pretty(&ScaleReport { runs }) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("scale: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("scale: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
