//! The `trilog-node` binary.

fn main() {
    std::process::exit(trilog_node::cli::main(std::env::args_os()));
}
