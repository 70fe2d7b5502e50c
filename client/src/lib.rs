//! trilog-client: the producer and consumer of trilog logs.
//!
//! Guarantees: [`Producer::append`] resolves to an entry's seq only once
//! the entry is durable on every replica of its segment; an append whose
//! outcome is unknown (the log was taken over, the producer stopped) fails
//! with [`AppendError::Indeterminate`], never a silent success or loss.
//! [`Consumer::next_batch`] returns only committed entries, dense and in
//! seq order, each checked against the producer's crc32c.

pub mod conn;
pub mod consumer;
pub mod error;
pub mod framing;
pub mod meta;
pub mod meta_addr;
pub mod meta_etcd;
pub mod pool;
pub mod producer;
pub mod takeover;

pub use consumer::{Consumer, Record};
pub use error::{AppendError, ClientError, ConnError};
pub use meta::{EmbeddedMeta, MetaStore};
pub use meta_addr::MetaAddr;
pub use meta_etcd::EtcdMeta;
pub use pool::ConnPool;
pub use producer::{Producer, ProducerOptions};
