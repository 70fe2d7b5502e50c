//! A producer in a process of its own (`trilog-bench produce`), so a test
//! can kill it with SIGKILL and take its log over.
//!
//! It appends self-describing payloads (ids from `first_id` on, see
//! [`crate::payload::make_payload`]) with `concurrency` appends in flight
//! and prints one line `acked <seq> <id>` per committed entry on stdout,
//! flushed as soon as no other ack is waiting to be printed. What a killed
//! producer printed was acknowledged; an ack it had not printed yet is
//! just an entry of unknown outcome, which the checks allow.
//!
//! Its first line is `ready epoch=<epoch>`, once it owns the log.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trilog_client::{ConnPool, EmbeddedMeta, Producer, ProducerOptions};

use crate::writers::{close_producer, Writers};

/// What the producer process runs.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub meta: SocketAddr,
    pub log_id: u64,
    pub payload_bytes: usize,
    pub concurrency: usize,
    /// Take the log over from a producer that may still be alive, instead
    /// of opening it (which fails while its last segment is open).
    pub takeover: bool,
    pub first_id: u64,
    /// Stop and close after this many acks; None: run until killed.
    pub count: Option<u64>,
}

/// How long a `count`-bounded run may take to get its acks and close.
const BOUNDED_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs until killed (or until `count` acks, then closes the producer).
pub async fn run(cfg: ProduceConfig) -> Result<(), String> {
    let pool = ConnPool::new(Arc::new(EmbeddedMeta::new(cfg.meta)));
    let opts = ProducerOptions::default();
    let producer = if cfg.takeover {
        Producer::takeover(pool, cfg.log_id, opts).await
    } else {
        Producer::open(pool, cfg.log_id, opts).await
    }
    .map_err(|e| format!("open log {}: {e}", cfg.log_id))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready epoch={}", producer.epoch())
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let printer = std::thread::Builder::new()
        .name("acks".into())
        .spawn(move || print_acks(rx))
        .map_err(|e| format!("printer thread: {e}"))?;
    let writers = Writers::start(
        producer,
        cfg.concurrency,
        cfg.payload_bytes,
        cfg.first_id,
        Some(tx),
    );
    let Some(count) = cfg.count else {
        // Until killed.
        std::future::pending::<()>().await;
        return Ok(());
    };
    writers
        .wait_acked(count, BOUNDED_RUN_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let (ledger, producer) = writers.stop().await;
    close_producer(producer, BOUNDED_RUN_TIMEOUT).await?;
    // The writers held the last senders: the printer ends after the last ack.
    let _ = printer.join();
    eprintln!(
        "produce: acked {} maybe {} refused {}",
        ledger.committed.len(),
        ledger.maybe.len(),
        ledger.refused.len()
    );
    Ok(())
}

/// Prints each ack as a line; flushes whenever no more are waiting, so a
/// printed line reaches the pipe promptly.
fn print_acks(rx: std::sync::mpsc::Receiver<(u64, u64)>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some((seq, id)) = next {
            if writeln!(out, "acked {seq} {id}").is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}
