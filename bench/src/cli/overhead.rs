//! `trilog-bench overhead`.

use std::process::ExitCode;

use clap::Args;
use trilog_bench::latency::{summarize, table};
use trilog_bench::machine::machine;
use trilog_bench::overhead::{bare_write_fdatasync, node_append};
use trilog_testkit::cluster::default_root;

#[derive(Debug, Args)]
pub struct OverheadArgs {
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Payload of each node append (a record adds a 32-byte header).
    #[arg(long, default_value_t = 4096)]
    payload_bytes: usize,
}

/// Times both at queue depth 1; prints their table and the difference.
pub async fn run(args: OverheadArgs) -> ExitCode {
    let OverheadArgs {
        count,
        payload_bytes,
    } = args;
    println!("machine: {}", machine());
    let root = default_root();
    let bare = match bare_write_fdatasync(&root, count) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("bare write: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match node_append(count, payload_bytes).await {
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
