//! The command line of `trilog-bench`: [`Cmd`] lists the subcommands, and
//! each has a module here with its arguments and the function that runs
//! it and prints what it found.

mod chaos;
mod compare;
mod load;
mod overhead;
mod produce;
mod quickstart;
mod scale;
mod throughput;
mod values;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trilog_bench::compare::Commands;
use trilog_bench::load::LoadConfig;

#[derive(Debug, Parser)]
#[command(
    name = "trilog-bench",
    version,
    about = "trilog quickstart and benchmarks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a local 5-node cluster, write and read at once, check it all.
    Quickstart(quickstart::QuickstartArgs),
    /// Load on a local cluster while nodes are killed, restarted, paused
    /// and the log taken over at random; then check every entry.
    Chaos(chaos::ChaosArgs),
    /// A producer process printing `acked <seq> <id>` per committed entry
    /// (used by the fault tests, which kill it).
    #[command(hide = true)]
    Produce(produce::ProduceArgs),
    /// Latency a node adds to one 4 KiB append over a bare 4 KiB direct
    /// write plus fdatasync on the same disk.
    Overhead(overhead::OverheadArgs),
    /// Start one system locally and put a load on it: closed loop
    /// (`--concurrency` appends in flight) or, with `--rate`, open loop
    /// (latency from each append's intended start).
    Load(load::LoadArgs),
    /// Run trilog, raft3, raft5 and etcd3 one after another under the same
    /// closed-loop load; print a table, write JSON and an SVG plot.
    Compare(compare::CompareArgs),
    /// trilog's replicated write rate (payload x 3 replicas, all on this
    /// disk) next to fio's direct sequential writes, in the same run.
    Throughput(throughput::ThroughputArgs),
    /// Many logs at once, one producer each, on a 5-node cluster: the same
    /// total load spread over 1, 100, 1,000 logs; rate, latency and node
    /// memory per run.
    Scale(scale::ScaleArgs),
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

/// Runs a subcommand on the runtime `main` built.
pub async fn run(cmd: Cmd) -> ExitCode {
    match cmd {
        Cmd::Quickstart(args) => quickstart::run(args).await,
        Cmd::Chaos(args) => chaos::run(args).await,
        Cmd::Produce(args) => produce::run(args).await,
        Cmd::Overhead(args) => overhead::run(args).await,
        Cmd::Load(args) => load::run(args).await,
        Cmd::Compare(args) => compare::run(args).await,
        Cmd::Throughput(args) => throughput::run(args).await,
        Cmd::Scale(args) => scale::run(args).await,
        // `main` runs the nodes before it builds a runtime.
        Cmd::Node { .. } | Cmd::RaftNode { .. } => ExitCode::FAILURE,
    }
}

/// This process's command line, for the reports.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// How to start nodes: this binary's hidden subcommands.
fn commands() -> Option<Commands> {
    match Commands::this_exe() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("cannot find this executable: {e}");
            None
        }
    }
}

/// The first lines of a load or a comparison: machine, command, load.
fn print_header(load: &LoadConfig, rtt_us: Option<u64>) {
    println!("machine: {}", trilog_bench::machine::machine());
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
