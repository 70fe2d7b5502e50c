//! `trilog-bench compare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use trilog_bench::compare::{self, System};
use trilog_bench::floor::{self, Floor};
use trilog_bench::load::{LoadConfig, Mode};
use trilog_bench::report::{self, Report, ReportError, SystemResult};
use trilog_testkit::cluster::default_root;

use super::values::{at_least_one, parse_duration};
use super::{command_line, commands, print_header};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// 5 s warmup + 15 s per system (about 100 s in all); else 10 s +
    /// 60 s.
    #[arg(long)]
    quick: bool,
    /// Simulated round trip to every node, through delay proxies.
    #[arg(long)]
    rtt_us: Option<u64>,
    /// Run every system twice: healthy, and with one node (a replica of
    /// trilog's open segment, a Raft or etcd follower) slowed by this much
    /// more each way from the end of the warmup on (`<system>-slow`).
    /// Needs --rtt-us.
    #[arg(long)]
    slow_node_us: Option<u64>,
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    plot: Option<PathBuf>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "trilog,raft3,raft5,etcd3"
    )]
    systems: Vec<System>,
    /// Writers, each with one append in flight.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    concurrency: usize,
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Measured time per system (overrides --quick's).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Warmup per system (overrides --quick's).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Save each system's raw histogram here as `<system>.hdr`.
    #[arg(long)]
    histogram_dir: Option<PathBuf>,
}

/// How long fio measures the durable write of the floor.
const FLOOR_FIO_SECONDS: u64 = 5;

/// Measured time and warmup per system of a `--quick` run, and of a full
/// one.
const QUICK_DURATION_WARMUP: (Duration, Duration) =
    (Duration::from_secs(15), Duration::from_secs(5));
const FULL_DURATION_WARMUP: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(10));

/// Runs every system; prints the table, the delay proxies' figures and
/// trilog against raft3; writes the JSON and the plot if asked.
pub async fn run(args: CompareArgs) -> ExitCode {
    let (d, w) = if args.quick {
        QUICK_DURATION_WARMUP
    } else {
        FULL_DURATION_WARMUP
    };
    let load = LoadConfig {
        mode: Mode::Closed {
            writers: args.concurrency,
        },
        payload_bytes: args.payload_bytes,
        batch: 1,
        duration: args.duration.unwrap_or(d),
        warmup: args.warmup.unwrap_or(w),
        progress: true,
    };
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    let rtt_us = args.rtt_us;
    print_header(&load, rtt_us);
    let t0 = Instant::now();
    // At one writer an append's latency has a floor: measure it in the
    // same run, on the same disk and through the same kind of proxy.
    let floor = if args.concurrency == 1 {
        match floor::measure(rtt_us, &default_root(), FLOOR_FIO_SECONDS).await {
            Ok(f) => {
                println!(
                    "floor: round trip p50 {} us + durable 4 KiB write p50 {} us (fio: direct write + fdatasync, in {}) = {} us",
                    f.rtt_us,
                    f.durable_write_p50_us,
                    default_root().display(),
                    f.p50_us
                );
                Some(f)
            }
            Err(e) => {
                eprintln!("compare: the latency floor: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let histogram_dir = args.histogram_dir.as_deref();
    let slow = args.slow_node_us.map(Duration::from_micros);
    if slow.is_some() && rtt_us.is_none() {
        eprintln!("compare: --slow-node-us slows a node's delay proxy: it needs --rtt-us");
        return ExitCode::FAILURE;
    }
    let outcomes =
        match compare::compare(&args.systems, &cmds, rtt_us, slow, &load, histogram_dir).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("compare: {e}");
                return ExitCode::FAILURE;
            }
        };
    let results: Vec<SystemResult> = outcomes.iter().map(|o| o.result.clone()).collect();
    print!("{}", report::table(&results));
    for o in &outcomes {
        if let (Some((chunks, mean)), Some(rtt)) = (o.proxied, rtt_us) {
            println!(
                "{}: delay proxies forwarded {chunks} chunks, mean one-way delay {} us (asked {} us)",
                o.result.name,
                mean.as_micros(),
                rtt / 2
            );
        }
    }
    print_goals(&results, rtt_us);
    print_slow_goals(&results);
    if let (Some(f), Some(t)) = (floor, results.iter().find(|r| r.name == "trilog")) {
        println!(
            "trilog p50 / floor: {:.2}x (goal <= 1.2x)",
            t.p50_us as f64 / f.p50_us.max(1) as f64
        );
    }
    let written = write_outputs(&args, &load, &results, floor);
    println!("wall time: {:.1} s", t0.elapsed().as_secs_f64());
    if written {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes the JSON report and the plot where asked; false if one could
/// not be written.
fn write_outputs(
    args: &CompareArgs,
    load: &LoadConfig,
    results: &[SystemResult],
    floor: Option<Floor>,
) -> bool {
    let mut ok = true;
    if let Some(path) = &args.json {
        let config = compare::report_config(args.rtt_us, load, &command_line());
        let report = Report::new(config, results).with_floor(floor);
        ok &= write_file(path, report.to_json());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "append latency, {} B payloads, {} in flight, {}",
            load.payload_bytes,
            load.mode.in_flight_max(),
            match args.rtt_us {
                Some(r) => format!("{r} us RTT (delay proxies)"),
                None => "loopback".into(),
            }
        );
        ok &= write_file(path, report::svg(&title, results));
    }
    ok
}

/// Writes `text` to `path`; false (said on stderr) if it could not be
/// made or written.
fn write_file(path: &Path, text: Result<String, ReportError>) -> bool {
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot make {}: {e}", path.display());
            return false;
        }
    };
    match std::fs::write(path, text) {
        Ok(()) => {
            println!("wrote {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            false
        }
    }
}

/// `value / base` as "0.55x", or "-" without a base.
fn ratio(value: u64, base: Option<u64>) -> String {
    match base {
        Some(b) if b > 0 => format!("{:.2}x", value as f64 / b as f64),
        _ => "-".into(),
    }
}

/// With slowed runs: trilog's slowed p99 against its healthy one and
/// against raft3's slowed one.
fn print_slow_goals(results: &[SystemResult]) {
    let find = |n: &str| results.iter().find(|r| r.name == n);
    let Some(slow) = find("trilog-slow") else {
        return;
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    if let Some(t) = find("trilog") {
        let x = slow.p99_us as f64 / t.p99_us.max(1) as f64;
        println!(
            "trilog-slow p99 / trilog p99: {x:.2}x (goal <= 1.5x: {})",
            verdict(x <= 1.5)
        );
    }
    if let Some(r) = find("raft3-slow") {
        let x = slow.p99_us as f64 / r.p99_us.max(1) as f64;
        println!(
            "trilog-slow p99 / raft3-slow p99: {x:.2}x (goal <= 1x: {})",
            verdict(x <= 1.0)
        );
    }
}

/// trilog's percentiles against raft3's, and the goals of
/// docs/benchmarks.md ("Goals").
fn print_goals(results: &[SystemResult], rtt_us: Option<u64>) {
    let find = |n: &str| results.iter().find(|r| r.name == n);
    let (Some(t), Some(r)) = (find("trilog"), find("raft3")) else {
        return;
    };
    println!(
        "trilog / raft3: p50 {}, p99 {}, p99.9 {}, ops/s {:.2}x",
        ratio(t.p50_us, Some(r.p50_us)),
        ratio(t.p99_us, Some(r.p99_us)),
        ratio(t.p999_us, Some(r.p999_us)),
        t.ops_per_s / r.ops_per_s.max(1e-9)
    );
    let p50 = t.p50_us as f64 / r.p50_us.max(1) as f64;
    let p99 = t.p99_us as f64 / r.p99_us.max(1) as f64;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    match rtt_us {
        Some(_) => println!(
            "goal p50 <= 0.65x raft3: {}; goal p99 <= 0.8x raft3: {}",
            verdict(p50 <= 0.65),
            verdict(p99 <= 0.8)
        ),
        None => println!(
            "goal p50 no worse than raft3 on loopback: {}",
            verdict(p50 <= 1.0)
        ),
    }
}
