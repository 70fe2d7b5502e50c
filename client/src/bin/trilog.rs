//! The `trilog` command line: append to, read, tail, inspect, trim and
//! delete logs.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine, BASE64_STANDARD};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use trilog_client::{
    ClientError, ConnPool, Consumer, MetaAddr, MetaStore, Producer, ProducerOptions, TrimReport,
};
use trilog_wire::limits::ENTRY_BYTES_MAX;

#[derive(Debug, Parser)]
#[command(
    name = "trilog",
    version,
    about = "Append to and read trilog logs",
    after_help = "Exit status: 0 done; 1 failed (the error is printed); 2 bad arguments; 3 `node decommission` still leaving at its timeout; 4 no such log, or a range past its end."
)]
struct Cli {
    /// A TOML file of these settings (`meta = "10.0.0.1:7300"`), each a
    /// key named as its flag with `_` for `-`; flags win over the
    /// environment (`TRILOG_META`, ...), which wins over the file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The metadata store: host:port for the embedded store, or
    /// etcd://host:port[,host:port...] for etcd.
    #[arg(long, default_value = "127.0.0.1:7300")]
    meta: MetaAddr,
    /// The cluster's CA certificate (PEM). With --tls-cert and --tls-key,
    /// every connection (the store, etcd, the nodes) is mutual TLS; the
    /// certificate's OU decides what the commands may do (`producer`
    /// for writes, `reader` for reads).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<std::path::PathBuf>,
    /// This client's certificate (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Appends entries and prints each one's seq once it is committed,
    /// while input still arrives. The entries are the arguments, or the
    /// bytes of --file, or standard input cut by --format; bytes are kept
    /// exactly.
    Append {
        /// The log id.
        #[arg(long, default_value_t = 1)]
        log: u64,
        /// Entries, one per argument (its UTF-8 bytes).
        entries: Vec<String>,
        /// Appends this file's bytes as entries of --chunk-bytes.
        #[arg(long, conflicts_with = "entries")]
        file: Option<std::path::PathBuf>,
        /// How standard input is cut into entries: `lines` (each line
        /// without its newline), `raw` (chunks of --chunk-bytes) or
        /// `length-prefixed` (a u32 little-endian length, then the bytes).
        #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
        format: InputFormat,
        /// The size of the entries --file and --format raw make (at most
        /// the entry limit, the default).
        #[arg(long, default_value_t = ENTRY_BYTES_MAX)]
        chunk_bytes: u32,
    },
    /// Prints the committed entries from a seq on, the open segment's
    /// included (what its replicas know committed): `seq<TAB>payload`
    /// lines, the bytes back to back (--raw), or JSON lines (--format json).
    Read {
        /// The log id.
        #[arg(long, default_value_t = 1)]
        log: u64,
        /// The first seq.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many entries at most.
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        /// Writes the entries' bytes back to back, nothing else (a file
        /// appended with --file comes back byte for byte).
        #[arg(long)]
        raw: bool,
        /// `text` (`seq<TAB>payload`, the payload shown as UTF-8) or
        /// `json` (`{"seq": N, "payload": "<base64>"}` per line).
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Print entries from a seq on, and keep following the log: through
    /// open segments that hold nothing yet, restarts of the metadata store
    /// and failed nodes (it waits and picks up where it was).
    Tail {
        /// The log id.
        #[arg(long, default_value_t = 1)]
        log: u64,
        /// The first seq.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Give up after failing this long without reading anything
        /// (default: never; the error is printed and the exit status is 1).
        #[arg(long)]
        give_up_secs: Option<u64>,
    },
    /// Take a log over from its producer, live or dead: fence it off,
    /// carry its tail into a new segment, then close cleanly so the next
    /// `append` starts at once.
    Takeover {
        /// The log id.
        #[arg(long, default_value_t = 1)]
        log: u64,
    },
    /// Show the nodes, logs, segments and their replicas.
    Status {
        /// Print one JSON object for scripts (see `trilog_client::status`).
        #[arg(long)]
        json: bool,
    },
    /// Make entries before a seq unreadable and delete every whole sealed
    /// segment below it from its replicas; prints what was deleted and the
    /// first readable seq.
    Trim {
        /// The log id.
        #[arg(long, default_value_t = 1)]
        log: u64,
        /// The new trim point (at most the end of the sealed segments).
        #[arg(long, required_unless_present = "resume")]
        before: Option<u64>,
        /// Only finish the deletions left pending by earlier trims (a node
        /// that was down).
        #[arg(long)]
        resume: bool,
    },
    /// Repair: `--status` lists the sealed segments with a replica on a
    /// dead node, and the node that will copy each (the nodes repair by
    /// themselves once a node has been dead for their grace period).
    Repair {
        /// List what is under-replicated and who copies it.
        #[arg(long)]
        status: bool,
    },
    /// Delete a log: every segment from every replica. Its last segment
    /// must be sealed (close its producer, or `takeover` first).
    Delete {
        /// The log id.
        #[arg(long)]
        log: u64,
    },
    /// Cluster membership.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Prints a completion script for a shell: `trilog completions bash >
    /// /etc/bash_completion.d/trilog` (or zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCmd {
    /// Takes node ID out of the cluster for good: no new data goes to it,
    /// its sealed segments are copied to other nodes (keeping 3 zones),
    /// producers switch their open segments away from it, and once no log
    /// lists it the node is removed (it exits, and its id never registers
    /// again). Exits 0 once removed; 3 if still draining at the timeout
    /// (run it again to go on waiting, or --cancel).
    Decommission {
        /// The node id.
        id: u64,
        /// How long to wait for the node to drain, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
        /// Mark the node leaving and return at once.
        #[arg(long, conflicts_with = "cancel")]
        no_wait: bool,
        /// Call a decommission off (refused once the node is removed).
        #[arg(long)]
        cancel: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InputFormat {
    Lines,
    Raw,
    LengthPrefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// `trilog node decommission` ran out of time with the node still leaving.
const EXIT_STILL_LEAVING: u8 = 3;
/// The log does not exist, or the range asked for is past its end.
const EXIT_NOT_FOUND: u8 = 4;
/// `read` of an open segment stops once a poll this long finds nothing
/// more committed.
const OPEN_SEGMENT_POLL_MS: u64 = 500;

fn main() -> ExitCode {
    // A closed output pipe (`trilog status | head`) ends the command
    // quietly, as it ends every Unix tool, instead of a panic in the
    // middle of a print: Rust ignores SIGPIPE unless told otherwise.
    // SAFETY: called first, before any other thread exists; it only
    // restores the signal's default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let cli = match parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Cmd::Completions { shell } = cli.cmd {
        let mut command = trilog_settings::with_env(Cli::command(), "TRILOG_");
        clap_complete::generate(shell, &mut command, "trilog", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trilog: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Decommission { node, why }) if why == STILL_LEAVING => {
            eprintln!("trilog: node {node}: {why}");
            ExitCode::from(EXIT_STILL_LEAVING)
        }
        Err(e @ ClientError::NotFound { .. }) => {
            eprintln!("trilog: {e}");
            ExitCode::from(EXIT_NOT_FOUND)
        }
        Err(e @ ClientError::Usage(_)) => {
            eprintln!("trilog: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("trilog: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line over `TRILOG_` variables over the --config file;
/// `Err` is the exit status after the error (or the help) was printed.
fn parse_cli(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, ExitCode> {
    let command = trilog_settings::with_env(Cli::command(), "TRILOG_");
    let exit = |code: i32| ExitCode::from(u8::try_from(code).unwrap_or(1));
    let settings = match trilog_settings::parse(command, args) {
        Ok(s) => s,
        Err(trilog_settings::SettingsError::Clap(e)) => {
            let _ = e.print();
            return Err(exit(e.exit_code()));
        }
        Err(e) => {
            eprintln!("trilog: {e}");
            return Err(exit(e.exit_code()));
        }
    };
    Cli::from_arg_matches(&settings.matches).map_err(|e| {
        let _ = e.print();
        exit(e.exit_code())
    })
}

fn show(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let tls = match (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            let files = trilog_client::tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            };
            Some(
                trilog_client::tls::TlsIdentity::load(&files)
                    .map_err(|e| ClientError::Usage(format!("TLS: {e}")))?,
            )
        }
        _ => None,
    };
    let meta: Arc<dyn MetaStore> = cli
        .meta
        .connect_tls(trilog_client::meta::META_CALL_TIMEOUT, tls.as_ref())
        .await?;
    let pool = match tls {
        Some(tls) => ConnPool::with_tls(meta.clone(), tls),
        None => ConnPool::new(meta.clone()),
    };
    match cli.cmd {
        Cmd::Append {
            log,
            entries,
            file,
            format,
            chunk_bytes,
        } => append(pool, log, entries, file, format, chunk_bytes).await,
        Cmd::Read {
            log,
            from,
            count,
            raw,
            format,
        } => read(pool, &*meta, log, from, count, raw, format).await,
        Cmd::Tail {
            log,
            from,
            give_up_secs,
        } => tail(pool, log, from, give_up_secs.map(Duration::from_secs)).await,
        Cmd::Takeover { log } => {
            // A takeover of a log nobody created would create it.
            let Some(record) = meta.get_log(log).await?.record else {
                return Err(ClientError::NotFound {
                    what: format!("log {log}: no such log"),
                });
            };
            // A closed log has no open segment to fence: a takeover would
            // only add an empty segment. The next append opens it at once.
            if record
                .segments
                .last()
                .is_none_or(|s| s.sealed_len.is_some())
            {
                println!(
                    "log {log}: closed already (its last segment is sealed): nothing to take over; the next append starts at once"
                );
                return Ok(());
            }
            let producer = Producer::takeover(pool, log, ProducerOptions::default()).await?;
            let epoch = producer.epoch();
            producer.close().await?;
            println!("log {log}: taken over at epoch {epoch}, tail carried over and sealed");
            Ok(())
        }
        Cmd::Status { json: false } => status(&*meta).await,
        Cmd::Status { json: true } => {
            let status = trilog_client::status::status_json(&*meta).await?;
            println!("{status}");
            Ok(())
        }
        Cmd::Trim {
            log,
            before,
            resume,
        } => {
            let before = if resume { None } else { before };
            let report = trilog_client::trim(&pool, log, before).await?;
            print_report(&report);
            Ok(())
        }
        Cmd::Delete { log } => {
            let report = trilog_client::delete_log(&pool, log).await?;
            print_report(&report);
            Ok(())
        }
        Cmd::Node {
            cmd:
                NodeCmd::Decommission {
                    id,
                    timeout_secs,
                    no_wait,
                    cancel,
                },
        } => {
            if cancel {
                trilog_client::decommission::cancel(&pool, id).await?;
                println!("node {id}: decommission called off: active again");
                return Ok(());
            }
            let wait = if no_wait {
                Duration::ZERO
            } else {
                Duration::from_secs(timeout_secs)
            };
            decommission(&pool, id, wait).await
        }
        Cmd::Repair { status: true } => repair_status(&*meta).await,
        Cmd::Repair { status: false } => {
            println!("the nodes repair lost replicas by themselves; `trilog repair --status` shows what is under-replicated");
            Ok(())
        }
        // Answered in `main`, before any connection.
        Cmd::Completions { .. } => Ok(()),
    }
}

const STILL_LEAVING: &str = "still leaving";

/// The first and the longest wait of `tail` between two tries after a
/// failure.
const TAIL_RETRY_MS_MIN: u64 = 100;
const TAIL_RETRY_MS_MAX: u64 = 5_000;

/// `trilog tail`: prints every entry from `from` on as it is committed.
/// A transient failure (the store restarting, every replica of a segment
/// unreachable for now) is reported on stderr and tried again, from the
/// next seq not yet printed, with a backoff; with `give_up`, only for
/// that long without progress.
async fn tail(
    pool: ConnPool,
    log: u64,
    from: u64,
    give_up: Option<Duration>,
) -> Result<(), ClientError> {
    let mut next = from;
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(TAIL_RETRY_MS_MIN);
    loop {
        let failed = match Consumer::open(pool.clone(), log, next).await {
            Ok(mut c) => loop {
                match c.next_batch(Duration::from_secs(5)).await {
                    Ok(batch) => {
                        let mut out = std::io::stdout().lock();
                        for r in batch {
                            let _ = writeln!(out, "{}\t{}", r.seq, show(&r.payload));
                        }
                        let _ = out.flush();
                        next = c.position();
                        failing_since = None;
                        backoff = Duration::from_millis(TAIL_RETRY_MS_MIN);
                    }
                    Err(e) => break e,
                }
            },
            Err(e) => e,
        };
        if !failed.is_transient() {
            return Err(failed);
        }
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        if give_up.is_some_and(|limit| since.elapsed() >= limit) {
            return Err(failed);
        }
        eprintln!(
            "trilog: tail of log {log} at seq {next}: {failed}; trying again in {} ms",
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(TAIL_RETRY_MS_MAX));
    }
}

type EntrySource = Box<dyn FnMut() -> Option<Result<Vec<u8>, String>> + Send>;

/// `trilog append`: entries from the arguments, a file or standard input,
/// read on a thread of their own and submitted as they arrive; each seq is
/// printed, in order, once committed. Sizes are checked before the
/// producer opens wherever they can be (arguments, the chunk size, the
/// file's presence); an entry of standard input over the limit ends the
/// command with an error after the entries before it are committed and
/// printed.
async fn append(
    pool: ConnPool,
    log: u64,
    entries: Vec<String>,
    file: Option<std::path::PathBuf>,
    format: InputFormat,
    chunk_bytes: u32,
) -> Result<(), ClientError> {
    use trilog_client::entries::{EntryReader, Format};
    let max = ENTRY_BYTES_MAX as usize;
    if chunk_bytes == 0 || chunk_bytes > ENTRY_BYTES_MAX {
        return Err(ClientError::Usage(format!(
            "--chunk-bytes {chunk_bytes}: must be 1 to {ENTRY_BYTES_MAX}"
        )));
    }
    if let Some((i, e)) = entries.iter().enumerate().find(|(_, e)| e.len() > max) {
        return Err(ClientError::Usage(format!(
            "argument entry {i} is {} bytes, over the limit of {max}",
            e.len()
        )));
    }
    let chunk = Format::Raw {
        chunk: chunk_bytes as usize,
    };
    let source: EntrySource = match (file, entries.is_empty()) {
        (Some(path), _) => {
            let f = std::fs::File::open(&path)
                .map_err(|e| ClientError::Usage(format!("--file {}: {e}", path.display())))?;
            let mut r = EntryReader::new(f, chunk, max);
            Box::new(move || r.next_entry().map(|e| e.map_err(|e| e.to_string())))
        }
        (None, false) => {
            let mut it = entries.into_iter();
            Box::new(move || it.next().map(|e| Ok(e.into_bytes())))
        }
        (None, true) => {
            let format = match format {
                InputFormat::Lines => Format::Lines,
                InputFormat::Raw => chunk,
                InputFormat::LengthPrefixed => Format::LengthPrefixed,
            };
            let mut r = EntryReader::new(std::io::stdin(), format, max);
            Box::new(move || r.next_entry().map(|e| e.map_err(|e| e.to_string())))
        }
    };
    // Entries read ahead of the producer: at most this many (16 MiB of the
    // largest), as the producer's window holds back the rest.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(16);
    let reading = tokio::task::spawn_blocking(move || {
        let mut source = source;
        while let Some(entry) = source() {
            let stop = entry.is_err();
            if tx.blocking_send(entry).is_err() || stop {
                return;
            }
        }
    });
    let producer = Producer::open(pool, log, ProducerOptions::default()).await?;
    // Seqs are printed in order by a task of their own while entries are
    // still read and submitted.
    let (ack_tx, mut ack_rx) =
        tokio::sync::mpsc::channel::<trilog_client::producer::AppendFuture>(4096);
    let printing = tokio::spawn(async move {
        let mut out = std::io::stdout();
        while let Some(pending) = ack_rx.recv().await {
            let seq = pending.await.map_err(|e| ClientError::Log {
                log_id: log,
                why: e.to_string(),
            })?;
            if writeln!(out, "{seq}").and_then(|()| out.flush()).is_err() {
                // Nobody reads our output any more: stop printing quietly;
                // the entries are committed all the same.
                while let Some(pending) = ack_rx.recv().await {
                    let _ = pending.await;
                }
                break;
            }
        }
        Ok::<(), ClientError>(())
    });
    let mut input_error = None;
    while let Some(entry) = rx.recv().await {
        match entry {
            Ok(bytes) => {
                let pending = producer.submit(bytes).await.map_err(|e| ClientError::Log {
                    log_id: log,
                    why: e.to_string(),
                })?;
                if ack_tx.send(pending).await.is_err() {
                    break;
                }
            }
            Err(why) => {
                input_error = Some(why);
                break;
            }
        }
    }
    drop(ack_tx);
    printing.await.map_err(|e| ClientError::Log {
        log_id: log,
        why: format!("the printing task failed: {e}"),
    })??;
    drop(rx);
    let _ = reading.await;
    producer.close().await?;
    match input_error {
        Some(why) => Err(ClientError::Log {
            log_id: log,
            why: format!("input: {why} (the entries before it are committed and printed)"),
        }),
        None => Ok(()),
    }
}

/// `trilog read`: the committed entries of the sealed range asked for.
async fn read(
    pool: ConnPool,
    meta: &dyn MetaStore,
    log: u64,
    from: u64,
    count: u64,
    raw: bool,
    format: OutputFormat,
) -> Result<(), ClientError> {
    let Some(record) = meta.get_log(log).await?.record else {
        return Err(ClientError::NotFound {
            what: format!("log {log}: no such log"),
        });
    };
    let end = trilog_protocol::metadata::end_of_sealed(&record);
    // The open segment's committed entries count too: its replicas serve
    // them up to the commit watermark they know.
    let open_last = record
        .segments
        .last()
        .is_some_and(|s| s.sealed_len.is_none());
    if from > end && !open_last {
        return Err(ClientError::NotFound {
            what: format!("log {log}: seq {from} is past the end of its entries ({end})"),
        });
    }
    let mut c = Consumer::open(pool, log, from).await?;
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    while printed < count {
        let in_sealed = c.position() < end;
        if !in_sealed && !open_last {
            break;
        }
        let wait = if in_sealed {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(OPEN_SEGMENT_POLL_MS)
        };
        let batch = c.next_batch(wait).await?;
        if batch.is_empty() && !in_sealed {
            // Nothing more committed in the open segment within a poll.
            break;
        }
        for r in batch {
            if printed == count {
                break;
            }
            let written = if raw {
                out.write_all(&r.payload)
            } else if format == OutputFormat::Json {
                let line = serde_json::json!({"seq": r.seq, "payload": BASE64_STANDARD.encode(&r.payload)});
                writeln!(out, "{line}")
            } else {
                writeln!(out, "{}\t{}", r.seq, show(&r.payload))
            };
            if written.is_err() {
                // A closed pipe (`| head`): stop quietly.
                return Ok(());
            }
            printed += 1;
        }
    }
    let _ = out.flush();
    if printed == 0 && from > end {
        return Err(ClientError::NotFound {
            what: format!("log {log}: nothing committed at or after seq {from}"),
        });
    }
    Ok(())
}

async fn decommission(pool: &ConnPool, id: u64, wait: Duration) -> Result<(), ClientError> {
    use trilog_client::decommission::{decommission, Decommissioned, Drain};
    let progress = |d: &Drain| {
        println!(
            "node {id}: leaving; {} sealed segments to move, {} open segments to switch away, {} deletions naming it",
            d.sealed(),
            d.open(),
            d.deleting()
        );
    };
    match decommission(pool, id, wait, progress).await? {
        Decommissioned::Removed => {
            println!("node {id}: removed from the cluster");
            Ok(())
        }
        Decommissioned::StillLeaving(d) => {
            for (log_id, h) in &d.logs {
                if !h.open.is_empty() {
                    println!(
                        "  log {log_id}: open segment {:?} on node {id}: its producer switches at its next append (an abandoned log: `trilog takeover --log {log_id}`)",
                        h.open
                    );
                }
                if !h.sealed.is_empty() {
                    println!(
                        "  log {log_id}: sealed segments {:?} still listed on node {id} (`trilog repair --status` shows where they go)",
                        h.sealed
                    );
                }
            }
            Err(ClientError::Decommission {
                node: id,
                why: STILL_LEAVING.into(),
            })
        }
    }
}

async fn repair_status(meta: &dyn MetaStore) -> Result<(), ClientError> {
    let short = trilog_client::repair_status::under_replicated(meta).await?;
    println!("under-replicated sealed segments: {}", short.len());
    for u in &short {
        let target = match u.target {
            Some(t) => format!("copied to node {t} once the dead node's grace period is over"),
            None => "NO TARGET: no writable node outside its replicas, or no live replica".into(),
        };
        println!(
            "  log {} segment {} ({} entries) replicas {:?} dead {:?}: {target}",
            u.log_id, u.segment, u.sealed_len, u.replicas, u.dead
        );
    }
    Ok(())
}

fn print_report(r: &TrimReport) {
    for s in &r.deleted {
        let len = s.sealed_len.unwrap_or(0);
        println!(
            "deleted segment {} (seqs {}..{}) from nodes {:?}",
            s.id,
            s.first_seq,
            s.first_seq + len,
            s.replicas
        );
    }
    for (segment, nodes) in &r.pending {
        println!(
            "pending segment {segment}: nodes {nodes:?} did not confirm; run `trilog trim --log {} --resume` later",
            r.log_id
        );
    }
    if r.log_deleted {
        println!("log {} deleted", r.log_id);
    } else {
        println!(
            "log {}: trim point {}, first readable seq {}",
            r.log_id, r.trim_seq, r.first_readable
        );
    }
}

async fn status(meta: &dyn MetaStore) -> Result<(), ClientError> {
    let nodes = meta.list_nodes(true).await?;
    println!("nodes: {}", nodes.len());
    for n in &nodes {
        println!(
            "  node {:>4}  {:<15} ports {:?}  {}  lease {} ms  {} bytes free{}{}",
            n.info.node_id,
            n.info.host,
            n.info.shard_ports,
            if n.alive { "alive" } else { "DEAD " },
            n.lease_remaining_ms,
            n.info.bytes_free,
            if n.info.full {
                "  FULL (read-only)"
            } else {
                ""
            },
            match n.mode {
                trilog_wire::meta::NodeMode::Active => "",
                trilog_wire::meta::NodeMode::Leaving => "  LEAVING (decommissioned)",
                trilog_wire::meta::NodeMode::Removed => "  REMOVED",
            }
        );
    }
    let logs = meta.list_logs().await?;
    println!("logs: {}", logs.len());
    for log_id in logs {
        let v = meta.get_log(log_id).await?;
        let Some(r) = v.record else { continue };
        println!(
            "  log {log_id}  epoch {}  version {}  trim {}{}",
            r.epoch,
            v.version,
            r.trim_seq,
            if r.deleted { "  DELETED" } else { "" }
        );
        for s in &r.deleting {
            println!(
                "    segment {:>4}  being deleted from {:?}",
                s.id, s.replicas
            );
        }
        for s in &r.segments {
            let state = match s.sealed_len {
                Some(len) => format!("sealed len {len}"),
                None => "open".to_string(),
            };
            println!(
                "    segment {:>4}  seqs from {:>10}  epoch {}  {:<18} replicas {:?}",
                s.id, s.first_seq, s.epoch, state, s.replicas
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every command says what it is in `--help`.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "trilog", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
