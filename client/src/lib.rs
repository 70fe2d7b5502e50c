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

pub mod clock;
pub mod conn;
pub mod consumer;
pub mod decommission;
pub mod entries;
pub mod error;
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
pub use trim::{delete_log, trim, TrimReport};
