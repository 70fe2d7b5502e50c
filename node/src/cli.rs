//! The node's settings: flags, `TRILOG_` environment variables and a
//! config file (`--config node.toml`, a key per flag: `node_id`,
//! `data_dir`, ...), in that order of precedence (`trilog_settings`).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use trilog_meta::{HostPort, MetaAddr};
use trilog_tls::TlsFiles;

use crate::config::{ConfigError, NodeConfig};
use crate::limits::LEASE_MS_DEFAULT;
use crate::logging::LogFormat;

/// A trilog log node.
///
/// Every setting is a flag, an environment variable (`TRILOG_` and the
/// key in upper case) and a key of the --config file (the flag's name
/// with `_` for `-`); a flag wins over the environment, which wins over
/// the file.
#[derive(Debug, Parser)]
#[command(name = "trilog-node", version)]
pub struct Args {
    /// A TOML file of settings: `key = value` lines, a key per flag
    /// (`node_id = 1`, `data_dir = "/var/lib/trilog"`, `cores = [0, 1]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the settings in effect (as a config file, each with where it
    /// came from), check them, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// This node's id (non-zero, unique in the cluster).
    #[arg(long)]
    pub node_id: u64,
    /// Where segments (and the embedded metadata, if served) live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The address (or host name) to listen on, and to register unless
    /// --advertise-host says otherwise; 0.0.0.0 or :: (every address)
    /// needs --advertise-host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Shard i listens on port + i (0: ports chosen by the kernel).
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
    /// Number of shards (one glommio executor each).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Pin shard i to the i-th core of this comma-separated list.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// The metadata store to register with: host:port for the embedded
    /// store, or etcd://host:port[,host:port...] for etcd.
    #[arg(long)]
    pub meta: Option<MetaAddr>,
    /// Also serve the embedded metadata store on this host:port.
    #[arg(long)]
    pub serve_meta: Option<HostPort>,
    /// Registration lease in milliseconds.
    #[arg(long, default_value_t = LEASE_MS_DEFAULT)]
    pub lease_ms: u64,
    /// Failure zone (a rack, a power domain): the replicas of a segment go
    /// to different zones whenever enough zones have alive nodes.
    #[arg(long, default_value = "")]
    pub zone: String,
    /// Rate at which each shard's scrub re-reads sealed segments, in bytes
    /// per second.
    #[arg(long, default_value_t = crate::scrub::SCRUB_BYTES_PER_SEC_DEFAULT)]
    pub scrub_bytes_per_sec: u64,
    /// Seconds each shard's scrub pauses after a pass over its sealed
    /// segments (a flipped byte is found within a pass and this pause).
    #[arg(long, default_value_t = crate::scrub::SCRUB_PASS_PAUSE_MS / 1000)]
    pub scrub_pass_pause_secs: u64,
    /// Seconds between two checks of the copies no record lists here yet;
    /// a copy found unlisted for good at two checks in a row is removed.
    #[arg(long, default_value_t = trilog_protocol::shard::ORPHAN_SWEEP_MS / 1000)]
    pub orphan_sweep_secs: u64,
    /// Register this address (or host name, resolved at start) instead of
    /// --host: what clients dial (behind NAT, a proxy, or with --host
    /// 0.0.0.0).
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// Register shard i at this port + i instead of its own port.
    #[arg(long)]
    pub advertise_port: Option<u16>,
    /// This node replaces a lost node with the same id: start on an empty
    /// data directory although the metadata lists the id as a replica; its
    /// replicas will be repaired.
    #[arg(long)]
    pub replace: bool,
    /// Seconds a node must be dead before its replicas of sealed segments
    /// are copied to other nodes (by the nodes placement picks).
    #[arg(long, default_value_t = trilog_protocol::repair::REPAIR_GRACE_MS_DEFAULT / 1000)]
    pub repair_grace_secs: u64,
    /// Rate at which this node copies repairs, in bytes per second.
    #[arg(long, default_value_t = trilog_protocol::repair::REPAIR_BYTES_PER_SEC_DEFAULT)]
    pub repair_bytes_per_sec: u64,
    /// Free bytes to keep on the data directory's file system: below them
    /// the node turns read-only (serves reads, seals and deletes, takes no
    /// new segment), and it turns writable again 16 MiB above them.
    #[arg(long, default_value_t = trilog_protocol::space::DISK_RESERVE_BYTES_DEFAULT)]
    pub disk_reserve_bytes: u64,
    /// Seconds a connection that sends nothing and is owed no answer stays
    /// open (clients reconnect when they need to).
    #[arg(long, default_value_t = crate::limits::CONN_IDLE_MS_DEFAULT / 1000)]
    pub idle_connection_secs: u64,
    /// The CA certificate (PEM) every peer's certificate must be signed
    /// by. With --tls-cert and --tls-key: every port of this node (shards,
    /// the embedded metadata store) serves mutual TLS only, and the node
    /// dials the store, etcd and other nodes with TLS.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM); its subject's OU must be
    /// `node`, and it must name the address clients dial (--host or
    /// --advertise-host).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; keep it readable by the node's
    /// user only).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics (Prometheus), /healthz and /readyz over plain HTTP
    /// on this host:port (a management address: it shows counts, never
    /// data). Off unless given.
    #[arg(long)]
    pub admin_addr: Option<HostPort>,
    /// Log lines as text or as JSON objects (one per line), on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Which log lines: a level (error, warn, info, debug, trace) or
    /// per-module directives (`warn,trilog_node=debug`).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// Runs a node until the process ends; returns the exit code.
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let command = trilog_settings::with_env(Args::command(), "TRILOG_");
    let settings = match trilog_settings::parse(command.clone(), args) {
        Ok(s) => s,
        Err(trilog_settings::SettingsError::Clap(e)) => {
            let _ = e.print();
            return e.exit_code();
        }
        Err(e) => {
            eprintln!("trilog-node: bad configuration: {e}");
            return e.exit_code();
        }
    };
    let args = match Args::from_arg_matches(&settings.matches) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return 2;
        }
    };
    if args.print_config {
        print!("{}", settings.show(&command));
    }
    let log_format = args.log_format;
    let log_filter = match crate::logging::filter(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("trilog-node: bad configuration: {e}");
            return 2;
        }
    };
    let config = match node_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trilog-node: bad configuration: {e}");
            return 2;
        }
    };
    if let Err(e) = config.check() {
        eprintln!("trilog-node: bad configuration: {e}");
        return 2;
    }
    if settings.matches.get_flag("print_config") {
        return 0;
    }
    crate::logging::init(log_format, log_filter);
    keep_large_buffers_in_the_heap();
    let signals = match crate::signals::StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("trilog-node: cannot catch SIGTERM: {e}");
            return 1;
        }
    };
    match crate::server::start(config) {
        Ok(mut handle) => {
            if let Err(e) = signals.deliver_to(handle.stopper()) {
                tracing::error!("trilog-node: cannot start the signal thread: {e}");
                return 1;
            }
            // The line tests and scripts wait for.
            println!("trilog-node ready ports={:?}", handle.shard_ports);
            match handle.wait() {
                crate::server::Ending::Stop { signal } => {
                    let drained = handle.drain();
                    let registration = match &drained.deregistered {
                        None => "registered nowhere".to_string(),
                        Some(Ok(true)) => "registration given up".to_string(),
                        Some(Ok(false)) => "no live registration to give up".to_string(),
                        Some(Err(e)) => {
                            format!("registration not given up ({e}): its lease runs out by itself")
                        }
                    };
                    if drained.shards_left == 0 {
                        tracing::info!(
                            "{}: drained in {} ms ({registration}); exiting",
                            crate::signals::name(signal),
                            drained.took.as_millis()
                        );
                    } else {
                        tracing::warn!(
                            "{}: {} shards still busy after {} ms ({registration}); exiting \
                             anyway: whatever they acknowledged is durable",
                            crate::signals::name(signal),
                            drained.shards_left,
                            drained.took.as_millis()
                        );
                    }
                    0
                }
                crate::server::Ending::Removed => {
                    // Not on stdout: whoever read the ready line may have
                    // closed it.
                    tracing::info!("node removed from the cluster; exiting");
                    0
                }
                crate::server::Ending::ShardsStopped => {
                    tracing::error!("trilog-node: every shard stopped");
                    1
                }
            }
        }
        Err(e) => {
            tracing::error!("trilog-node: cannot start: {e}");
            1
        }
    }
}

/// The node's configuration from its settings: host names resolved, the
/// listening address and the advertised one told apart.
pub fn node_config(args: Args) -> Result<NodeConfig, ConfigError> {
    let host = resolve_ip("host", &args.host)?;
    let advertise_host = match &args.advertise_host {
        Some(h) => Some(resolve_ip("advertise_host", h)?),
        None => None,
    };
    if host.is_unspecified() && advertise_host.is_none() {
        return Err(ConfigError::Unspecified { host });
    }
    let serve_meta = match &args.serve_meta {
        Some(hp) => Some(resolve_socket("serve_meta", hp)?),
        None => None,
    };
    let meta = args
        .meta
        .or(serve_meta.map(|a| MetaAddr::Embedded(HostPort::from(a))));
    Ok(NodeConfig {
        node_id: args.node_id,
        data_dir: args.data_dir,
        host,
        port: args.port,
        shards: args.shards,
        cores: args.cores,
        meta,
        serve_meta,
        lease_ms: args.lease_ms,
        zone: args.zone,
        scrub_bytes_per_sec: args.scrub_bytes_per_sec,
        scrub_pass_pause_ms: args.scrub_pass_pause_secs.saturating_mul(1000),
        orphan_sweep_ms: args.orphan_sweep_secs.saturating_mul(1000),
        advertise_host,
        advertise_port: args.advertise_port,
        replace: args.replace,
        repair_grace_ms: args.repair_grace_secs.saturating_mul(1000),
        repair_bytes_per_sec: args.repair_bytes_per_sec,
        disk_reserve_bytes: args.disk_reserve_bytes,
        conn_idle_ms: args.idle_connection_secs.saturating_mul(1000),
        admin_addr: match &args.admin_addr {
            Some(hp) => Some(resolve_socket("admin_addr", hp)?),
            None => None,
        },
        tls: match (args.tls_ca, args.tls_cert, args.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => None,
        },
    })
}

/// An address, or the first address a host name resolves to now.
fn resolve_ip(key: &'static str, host: &str) -> Result<IpAddr, ConfigError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let bad = |why: String| ConfigError::Host {
        key,
        host: host.to_string(),
        why,
    };
    let found = (host, 0u16)
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".to_string()))?;
    Ok(found.ip())
}

fn resolve_socket(key: &'static str, hp: &HostPort) -> Result<SocketAddr, ConfigError> {
    Ok(SocketAddr::new(resolve_ip(key, &hp.host)?, hp.port))
}

/// Every request frame is read into a buffer of its own size (appends of
/// up to `FRAME_PAYLOAD_BYTES_MAX`). Above glibc's default mmap threshold
/// (128 KiB, adapting upward only after frees) each such buffer is a fresh
/// mapping that the kernel faults in and zeroes page by page, and unmaps
/// again: a profile of large appends showed about 4% of the node's time in
/// page faults and page clearing. With the threshold above the largest
/// frame, freed buffers stay in the heap and are reused.
#[cfg(target_env = "gnu")]
fn keep_large_buffers_in_the_heap() {
    let threshold = 2 * trilog_wire::limits::FRAME_PAYLOAD_BYTES_MAX as libc::c_int;
    // SAFETY: mallopt only sets an allocator parameter; it is called once,
    // before the node starts its threads. A refusal (0) keeps the default,
    // which is correct, only slower.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
    if set == 0 {
        tracing::warn!(
            "mallopt(M_MMAP_THRESHOLD, {threshold}) refused; large buffers stay mmapped"
        );
    }
}

/// Other C libraries have no such threshold to raise.
#[cfg(not(target_env = "gnu"))]
fn keep_large_buffers_in_the_heap() {}
