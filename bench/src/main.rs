//! `trilog-bench`: the quickstart and the benchmarks.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trilog_bench::chaos::{self, ChaosConfig};
use trilog_bench::latency::{summarize, table};
use trilog_bench::producer_proc::{self, ProduceConfig};
use trilog_bench::quickstart::{self, QuickstartConfig};

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
        #[arg(long, default_value_t = 64)]
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
        #[arg(long, default_value_t = 32)]
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
        #[arg(long, default_value_t = 16)]
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
    /// Run a log node in this process (used by the local clusters).
    #[command(hide = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a node of the Raft baseline in this process (used by
    /// `RaftCluster`, through `RaftNodeCommand::this_exe`).
    #[command(hide = true)]
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
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} cpus, kernel {}", kernel.trim())
}

async fn run(cmd: Cmd) -> ExitCode {
    match cmd {
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
