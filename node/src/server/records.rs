//! Where a shard looks up a log's record, to learn the seals it missed
//! (`trilog_protocol::shard`'s seal learning): a trait, so the same driver
//! asks the real store through a thread of its own (glommio shards cannot
//! run the store's tokio client) or the simulator's store directly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use trilog_meta::{MetaStore, RecordLookups};
use trilog_wire::meta::LogMeta;

/// The answer to a lookup: the record (`None`: no such log) or why it
/// failed.
pub type RecordAnswer = Result<Option<LogMeta>, String>;

/// A source of log records for one shard.
pub trait RecordSource {
    fn get_log(&self, log_id: u64) -> Pin<Box<dyn Future<Output = RecordAnswer>>>;
}

impl RecordSource for RecordLookups {
    fn get_log(&self, log_id: u64) -> Pin<Box<dyn Future<Output = RecordAnswer>>> {
        Box::pin(RecordLookups::get_log(self, log_id))
    }
}

/// A store whose futures run on the shard's own executor (the simulator's
/// store).
#[derive(Debug, Clone)]
pub struct StoreRecords(pub Arc<dyn MetaStore>);

impl RecordSource for StoreRecords {
    fn get_log(&self, log_id: u64) -> Pin<Box<dyn Future<Output = RecordAnswer>>> {
        let store = self.0.clone();
        Box::pin(async move {
            store
                .get_log(log_id)
                .await
                .map(|v| v.record)
                .map_err(|e| e.to_string())
        })
    }
}
