//! `trilog-raft-node`: one node of the Raft baseline, the same as
//! `trilog-bench raft-node`, for this crate's own tests (which cannot
//! build `trilog-bench`, a crate above this one).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    ExitCode::from(trilog_baselines::raft::raft_node_main(args).clamp(0, 255) as u8)
}
