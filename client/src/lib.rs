//! trilog-client: the producer and consumer of trilog logs.
//!
//! Guarantees: [`Producer::append`] resolves to an entry's seq only once
//! the entry is durable on every replica of its segment; an append whose
//! outcome is unknown (the log was taken over, the producer stopped) fails
//! with [`AppendError::Indeterminate`] naming the reason the protocol's
//! machine stopped for, never a silent success or loss. The producer, the
//! takeover and the open are thin drivers: every protocol decision and
//! every timer is in `trilog-protocol`. Every channel is bounded.
//! [`Consumer::next_batch`] returns only committed entries, dense and in
//! seq order, each checked against the producer's crc32c.
//!
//! [`trim()`] and [`delete_log`] delete whole sealed segments in three steps
//! (mark, unlink on every replica, drop) so that no crash leaves the record
//! naming a missing file or a file the record no longer names.
//!
//! [`status`] is the cluster as `trilog status --json` prints it, and
//! [`writable_nodes`] the nodes a new segment may go to (alive, not full).
//!
//! The metadata store it talks to (embedded or etcd) is `trilog_meta`,
//! re-exported here as [`meta`].
//!
//! # Examples
//!
//! Each example is a doc test that runs: three log nodes and the embedded
//! metadata store start inside the test process (in hidden lines, with
//! `trilog_testkit::in_process`), and the example talks to them over real
//! sockets, as a program of yours would to a cluster. Where to look:
//!
//! - produce: open a producer on a log, append, wait for the commit,
//!   close ([`Producer`]);
//! - consume a range of seqs ([`Consumer`]);
//! - tail a log as it grows ([`Consumer::next_batch`]);
//! - take a log over after its producer died, and learn which of its last
//!   entries stayed ([`Producer::takeover`]);
//! - what each error means for the caller: try again, take over, or give
//!   up ([`error`]).
//!
//! `cargo test -p trilog-client --doc` runs them (glommio, under the
//! nodes, needs `ulimit -l unlimited` where the locked-memory limit is
//! small).
//!
//! ## A first program
//!
//! A client needs the address of the cluster's metadata store, nothing
//! else: the nodes are found there. A [`ConnPool`] holds the connections
//! of one client; producers and consumers are opened on it, each on one
//! log, named by a number the application chooses.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let cluster = trilog_testkit::in_process::InProcessCluster::start(3).await?;
//! # let meta_addr = cluster.meta_addr();
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use trilog_client::{ConnPool, Consumer, EmbeddedMeta, Producer, ProducerOptions};
//!
//! // `meta_addr` is where the embedded metadata store listens (an
//! // `EtcdMeta` serves as well).
//! let pool = ConnPool::new(Arc::new(EmbeddedMeta::new(meta_addr)));
//!
//! // Creates log 1 and writes to it: `append` returns once the entry is
//! // durable on all 3 replicas, with its seq (0, 1, 2, ... in the log).
//! let producer = Producer::open(pool.clone(), 1, ProducerOptions::default()).await?;
//! assert_eq!(producer.append(b"hello".to_vec()).await?, 0);
//! assert_eq!(producer.append(b"world".to_vec()).await?, 1);
//! producer.close().await?;
//!
//! // Reads it back from seq 0.
//! let mut consumer = Consumer::open(pool, 1, 0).await?;
//! let batch = consumer.next_batch(Duration::from_secs(5)).await?;
//! let payloads: Vec<&[u8]> = batch.iter().map(|r| &r.payload[..]).collect();
//! assert_eq!(payloads, [&b"hello"[..], &b"world"[..]]);
//! # Ok(())
//! # }
//! ```

pub mod clock;
pub mod conn;
pub mod consumer;
pub mod decommission;
pub mod entries;
pub mod error;
pub mod metrics;
pub mod pool;
pub mod producer;
pub mod record_calls;
pub mod repair_status;
pub mod runtime;
pub mod status;
pub mod takeover;
pub mod trim;

pub use consumer::{Consumer, Record};
pub use error::{AppendError, ClientError, ConnError};
pub use pool::ConnPool;
pub use producer::{writable_nodes, Producer, ProducerOptions};
/// The metadata store: its interface, clients, address parser and the
/// embedded store's server (`trilog_meta`), for the client's users.
pub use trilog_meta as meta;
#[cfg(feature = "etcd")]
pub use trilog_meta::EtcdMeta;
pub use trilog_meta::{CasOutcome, EmbeddedMeta, MetaAddr, MetaError, MetaStore, Versioned};
/// Why a producer stopped ([`Producer::stop_reason`]): here so a caller
/// can match on it without naming the protocol crate.
pub use trilog_protocol::producer::StopReason;
/// Mutual TLS identities (`TlsIdentity::load`, `TlsFiles`).
pub use trilog_tls as tls;
pub use trim::{delete_log, trim, TrimReport};
