//! The Raft log as a load target of the generator: an append call is one
//! Raft entry holding the batch's payloads.

use super::client::RaftClient;
use crate::load::{AppendFuture, Target};

/// A [`RaftClient`] under a name (`raft3`, `raft5`).
#[derive(Debug)]
pub struct RaftTarget {
    name: String,
    client: RaftClient,
}

impl RaftTarget {
    pub fn new(name: impl Into<String>, client: RaftClient) -> RaftTarget {
        RaftTarget {
            name: name.into(),
            client,
        }
    }

    pub fn client(&self) -> &RaftClient {
        &self.client
    }
}

impl Target for RaftTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_> {
        Box::pin(async move {
            self.client
                .append_batch(entries)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
