//! `trilog-bench`: the quickstart and the benchmarks.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trilog_bench::latency::{summarize, table};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Node { args } = cli.cmd {
        let argv = std::iter::once(std::ffi::OsString::from("trilog-node")).chain(args);
        return ExitCode::from(trilog_node::cli::main(argv).clamp(0, 255) as u8);
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
        } => {
            let cfg = QuickstartConfig {
                nodes,
                duration,
                payload_bytes,
                concurrency,
                log_id: 1,
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
        Cmd::Node { .. } => ExitCode::FAILURE,
    }
}
