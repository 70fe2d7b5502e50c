//! `trilog-raft-node`: one node of the Raft baseline (the same as
//! `trilog-bench raft-node`), for tests.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(trilog_bench::raft::raft_node_main(args));
}
