//! `trilog-bench`: the quickstart and the benchmarks.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The nodes build their own runtimes and loggers.
    if let Cmd::Node { args } = cli.cmd {
        let argv = std::iter::once(std::ffi::OsString::from("trilog-node")).chain(args);
        return ExitCode::from(trilog_node::cli::main(argv).clamp(0, 255) as u8);
    }
    if let Cmd::RaftNode { args } = cli.cmd {
        return ExitCode::from(trilog_baselines::raft::raft_node_main(args).clamp(0, 255) as u8);
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
    rt.block_on(cli::run(cli.cmd))
}
