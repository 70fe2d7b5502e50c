//! `trilog-bench`: the quickstart and the benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use trilog_bench::chaos::{self, ChaosConfig};
use trilog_bench::compare::{self, Commands, System};
use trilog_bench::latency::{summarize, table};
use trilog_bench::load::{LoadConfig, Mode};
use trilog_bench::producer_proc::{self, ProduceConfig};
use trilog_bench::quickstart::{self, QuickstartConfig};
use trilog_bench::report::{self, SystemResult};

#[derive(Debug, Parser)]
#[command(
    name = "trilog-bench",
    version,
    about = "trilog quickstart and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    }
}

/// A count that must be at least 1 (writers, appends in flight, a batch).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// An open-loop rate: appends per second, positive and finite.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("must be a positive number of appends per second".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a local 5-node cluster, write and read at once, check it all.
    Quickstart {
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
    },
    /// Load on a local cluster while nodes are killed, restarted, paused
    /// and the log taken over at random; then check every entry.
    Chaos {
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
    },
    /// A producer process printing `acked <seq> <id>` per committed entry
    /// (used by the fault tests, which kill it).
    #[command(hide = true)]
    Produce {
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
    },
    /// Latency a node adds to one 4 KiB append over a bare 4 KiB direct
    /// write plus fdatasync on the same disk.
    Overhead {
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Payload of each node append (a record adds a 32-byte header).
        #[arg(long, default_value_t = 4096)]
        payload_bytes: usize,
    },
    /// Start one system locally and put a load on it: closed loop
    /// (`--concurrency` appends in flight) or, with `--rate`, open loop
    /// (latency from each append's intended start).
    Load {
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
    },
    /// Run trilog, raft3, raft5 and etcd3 one after another under the same
    /// closed-loop load; print a table, write JSON and an SVG plot.
    Compare {
        /// 5 s warmup + 15 s per system (about 100 s in all); else 10 s +
        /// 60 s.
        #[arg(long)]
        quick: bool,
        /// Simulated round trip to every node, through delay proxies.
        #[arg(long)]
        rtt_us: Option<u64>,
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
    },
    /// trilog's replicated write rate (payload x 3 replicas, all on this
    /// disk) next to fio's direct sequential writes, in the same run.
    Throughput {
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
    },
    /// Run a log node in this process (used by the local clusters).
    #[command(hide = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a node of the Raft baseline in this process (used by
    /// `RaftCluster`, through `RaftNodeCommand::this_exe`).
    #[command(hide = true, disable_help_flag = true)]
    RaftNode {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Node { args } = cli.cmd {
        let argv = std::iter::once(std::ffi::OsString::from("trilog-node")).chain(args);
        return ExitCode::from(trilog_node::cli::main(argv).clamp(0, 255) as u8);
    }
    if let Cmd::RaftNode { args } = cli.cmd {
        // It builds its own runtime and logger.
        return ExitCode::from(trilog_bench::raft::raft_node_main(args).clamp(0, 255) as u8);
    }
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trilog-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli.cmd))
}

fn machine() -> String {
    compare::machine()
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn commands() -> Option<Commands> {
    match Commands::this_exe() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("cannot find this executable: {e}");
            None
        }
    }
}

fn write_file(path: &std::path::Path, text: &str) -> bool {
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

/// trilog's percentiles against raft3's, and the goals.
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

async fn run(cmd: Cmd) -> ExitCode {
    match cmd {
        Cmd::Load {
            system,
            rate,
            concurrency,
            payload_bytes,
            batch,
            duration,
            warmup,
            rtt_us,
            histogram_dir,
        } => {
            let mode = match rate {
                Some(rate_per_s) => Mode::Open {
                    rate_per_s,
                    in_flight_max: concurrency,
                },
                None => Mode::Closed {
                    writers: concurrency,
                },
            };
            let load = LoadConfig {
                mode,
                payload_bytes,
                batch,
                duration,
                warmup,
                progress: true,
            };
            run_load(system, rtt_us, load, histogram_dir).await
        }
        Cmd::Compare {
            quick,
            rtt_us,
            json,
            plot,
            systems,
            concurrency,
            payload_bytes,
            duration,
            warmup,
            histogram_dir,
        } => {
            let (d, w) = if quick {
                (Duration::from_secs(15), Duration::from_secs(5))
            } else {
                (Duration::from_secs(60), Duration::from_secs(10))
            };
            let load = LoadConfig {
                mode: Mode::Closed {
                    writers: concurrency,
                },
                payload_bytes,
                batch: 1,
                duration: duration.unwrap_or(d),
                warmup: warmup.unwrap_or(w),
                progress: true,
            };
            let out = CompareOut {
                json,
                plot,
                histogram_dir,
            };
            run_compare(&systems, rtt_us, load, out).await
        }
        Cmd::Throughput {
            payload_bytes,
            batch,
            writers,
            duration,
            fio_block_bytes,
            fio_iodepth,
        } => {
            run_throughput(
                payload_bytes,
                batch,
                writers,
                duration,
                fio_block_bytes,
                fio_iodepth,
            )
            .await
        }
        Cmd::Quickstart {
            nodes,
            duration,
            payload_bytes,
            concurrency,
            no_kill,
        } => {
            let cfg = QuickstartConfig {
                nodes,
                duration,
                payload_bytes,
                concurrency,
                log_id: 1,
                kill: !no_kill,
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
                    println!("{}", report.line(nodes));
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
        Cmd::Overhead {
            count,
            payload_bytes,
        } => {
            println!("machine: {}", machine());
            let root = trilog_bench::cluster::default_root();
            let bare = match trilog_bench::overhead::bare_write_fdatasync(&root, count) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("bare write: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let node = match trilog_bench::overhead::node_append(count, payload_bytes).await {
                Ok((h, _cluster)) => h,
                Err(e) => {
                    eprintln!("node append: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (b, n, r) = (
                summarize(&bare),
                summarize(&node.append),
                summarize(&node.round_trip),
            );
            print!(
                "{}",
                table(&[
                    ("bare 4K O_DIRECT+fdatasync", b),
                    ("node append (1 replica)", n),
                    ("node round trip, no disk", r),
                ])
            );
            println!(
                "overhead: node adds p50 {} us, p99 {} us over the bare write (queue depth 1, {count} ops, {payload_bytes} B payload, dir {})",
                n.p50_us as i64 - b.p50_us as i64,
                n.p99_us as i64 - b.p99_us as i64,
                root.display()
            );
            ExitCode::SUCCESS
        }
        Cmd::Chaos {
            duration,
            nodes,
            seed,
            payload_bytes,
            concurrency,
            no_partitions,
        } => {
            println!("machine: {}", machine());
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            });
            if nodes < 5 {
                eprintln!("chaos needs at least 5 nodes (node 1, 3 replicas, a spare)");
                return ExitCode::FAILURE;
            }
            let cfg = ChaosConfig {
                nodes,
                duration,
                seed,
                payload_bytes,
                concurrency,
                log_id: 1,
                partitions: !no_partitions,
            };
            let cmd = match trilog_bench::cluster::NodeCommand::this_exe() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("chaos: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match chaos::run(cfg, cmd).await {
                Ok(report) => {
                    let l = &report.ledger_summary;
                    let v = &report.verdict;
                    println!(
                        "outcomes: acked={} unknown={} (of which in the log: {}) refused={} (never taken); log entries={} segments={} epoch={} takeovers_failed={} consumer_reopened={} phantom={} seq_reused={} in {:.1}s",
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
                        report.elapsed.as_secs_f64()
                    );
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
        Cmd::Produce {
            meta,
            log,
            payload_bytes,
            concurrency,
            takeover,
            first_id,
            count,
        } => {
            let cfg = ProduceConfig {
                meta,
                log_id: log,
                payload_bytes,
                concurrency,
                takeover,
                first_id,
                count,
            };
            match producer_proc::run(cfg).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("produce: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Node { .. } | Cmd::RaftNode { .. } => ExitCode::FAILURE,
    }
}

fn print_header(load: &LoadConfig, rtt_us: Option<u64>) {
    println!("machine: {}", machine());
    println!("command: {}", command_line());
    println!(
        "config: {:?}, payload {} B, batch {}, warmup {:?}, measured {:?}, network: {}",
        load.mode,
        load.payload_bytes,
        load.batch,
        load.warmup,
        load.duration,
        match rtt_us {
            Some(r) => format!("{r} us round trip to every node (delay proxies)"),
            None => "loopback".into(),
        }
    );
}

async fn run_load(
    system: System,
    rtt_us: Option<u64>,
    load: LoadConfig,
    histogram_dir: Option<PathBuf>,
) -> ExitCode {
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    print_header(&load, rtt_us);
    match compare::run_system(system, &cmds, rtt_us, &load, histogram_dir.as_deref()).await {
        Ok(o) => {
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
                match load.mode {
                    Mode::Open { in_flight_max, .. } => in_flight_max,
                    Mode::Closed { writers } => writers,
                }
            );
            if let Some(d) = histogram_dir {
                println!(
                    "raw histogram: {}",
                    d.join(format!("{}.hdr", system.name())).display()
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

/// Where the comparison writes its outputs.
struct CompareOut {
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    histogram_dir: Option<PathBuf>,
}

async fn run_compare(
    systems: &[System],
    rtt_us: Option<u64>,
    load: LoadConfig,
    out: CompareOut,
) -> ExitCode {
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    print_header(&load, rtt_us);
    let t0 = Instant::now();
    let outcomes =
        match compare::compare(systems, &cmds, rtt_us, &load, out.histogram_dir.as_deref()).await {
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
    let mut ok = true;
    if let Some(path) = &out.json {
        let config = compare::config_json(rtt_us, &load, &command_line());
        ok &= write_file(path, &report::json(&config, &results));
    }
    if let Some(path) = &out.plot {
        let title = format!(
            "append latency, {} B payloads, {} in flight, {}",
            load.payload_bytes,
            match load.mode {
                Mode::Closed { writers } => writers,
                Mode::Open { in_flight_max, .. } => in_flight_max,
            },
            match rtt_us {
                Some(r) => format!("{r} us RTT (delay proxies)"),
                None => "loopback".into(),
            }
        );
        ok &= write_file(path, &report::svg(&title, &results));
    }
    println!("wall time: {:.1} s", t0.elapsed().as_secs_f64());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_throughput(
    payload_bytes: usize,
    batch: usize,
    writers: usize,
    duration: Duration,
    fio_block_bytes: usize,
    fio_iodepth: usize,
) -> ExitCode {
    use trilog_bench::throughput::{fio_seq_write, trilog_throughput};
    let Some(cmds) = commands() else {
        return ExitCode::FAILURE;
    };
    println!("machine: {}", machine());
    println!("command: {}", command_line());
    let root = trilog_bench::cluster::default_root();
    let fio = match fio_seq_write(
        &root,
        fio_block_bytes,
        fio_iodepth,
        duration.as_secs().max(1),
    ) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fio: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "fio: direct sequential write, {} KiB blocks, queue depth {fio_iodepth}, {} s, in {}: {:.0} MB/s",
        fio_block_bytes / 1024,
        duration.as_secs().max(1),
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
    ExitCode::SUCCESS
}
