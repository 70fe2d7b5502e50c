//! `trilog-bench overhead`.

use std::process::ExitCode;

use clap::Args;
use trilog_bench::latency::{summarize, table};
use trilog_bench::machine::machine;
use trilog_bench::overhead::{bare_write_fdatasync, node_append, node_append_tls};
use trilog_testkit::cluster::default_root;

#[derive(Debug, Args)]
pub struct OverheadArgs {
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Payload of each node append (a record adds a 32-byte header).
    #[arg(long, default_value_t = 4096)]
    payload_bytes: usize,
    /// Also time the node over mutual TLS (a throwaway CA, the same disk),
    /// and print what TLS adds.
    #[arg(long)]
    tls: bool,
}

/// Times both at queue depth 1; prints their table and the difference.
pub async fn run(args: OverheadArgs) -> ExitCode {
    let OverheadArgs {
        count,
        payload_bytes,
        tls,
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
    let secured = if tls {
        match node_append_tls(count, payload_bytes, &root).await {
            Ok((h, _node)) => Some((summarize(&h.append), summarize(&h.round_trip))),
            Err(e) => {
                eprintln!("node append over TLS: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut rows = vec![
        ("bare 4K O_DIRECT+fdatasync", b),
        ("node append (1 replica)", n),
        ("node round trip, no disk", r),
    ];
    if let Some((tn, tr)) = &secured {
        rows.push(("node append, mutual TLS", *tn));
        rows.push(("node round trip, mutual TLS", *tr));
    }
    print!("{}", table(&rows));
    if let Some((tn, tr)) = &secured {
        println!(
            "tls: adds p50 {} us, p99 {} us to an append and p50 {} us, p99 {} us to a round trip ({payload_bytes} B payload, TLS 1.3, rustls on ring)",
            tn.p50_us as i64 - n.p50_us as i64,
            tn.p99_us as i64 - n.p99_us as i64,
            tr.p50_us as i64 - r.p50_us as i64,
            tr.p99_us as i64 - r.p99_us as i64,
        );
    }
    println!(
        "overhead: node adds p50 {} us, p99 {} us over the bare write (queue depth 1, {count} ops, {payload_bytes} B payload, dir {})",
        n.p50_us as i64 - b.p50_us as i64,
        n.p99_us as i64 - b.p99_us as i64,
        root.display()
    );
    ExitCode::SUCCESS
}
