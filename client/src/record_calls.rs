//! The metadata calls the protocol's machines ask for
//! ([`trilog_protocol::meta_call::MetaCall`]), carried out against a
//! [`MetaStore`](crate::meta::MetaStore), and their results put the way the machines hear them.
//!
//! The one judgement here is which errors of a CAS leave its outcome
//! unknown: every error after the request may have reached the store.
//! Only a refusal the store answered, a record refused before it was sent,
//! or a connection that was never made are "surely not applied". When in
//! doubt, unknown: the machine then reads the record back.

use std::future::Future;
use std::pin::Pin;

use trilog_protocol::meta_call::{CasAnswer, MetaCall, RecordAnswer};

use crate::meta::{CasOutcome, MetaError};
use crate::pool::ConnPool;
use crate::producer::alive_nodes;

/// What a metadata call answered.
#[derive(Debug)]
pub enum MetaAnswer {
    Record(RecordAnswer),
    Cas(CasAnswer),
}

/// A metadata call under way.
pub type MetaCallFuture = Pin<Box<dyn Future<Output = MetaAnswer> + Send>>;

/// Starts `call` for `log_id`; the future owns what it needs.
pub fn start(pool: &ConnPool, log_id: u64, call: MetaCall) -> MetaCallFuture {
    let pool = pool.clone();
    Box::pin(async move {
        match call {
            MetaCall::ReadRecord => MetaAnswer::Record(read_record(&pool, log_id).await),
            MetaCall::Cas {
                expected_version,
                record,
            } => {
                let outcome = pool.meta().cas_log(log_id, expected_version, record).await;
                if let Err(e) = &outcome {
                    log::warn!("log {log_id}: metadata CAS: {e}");
                }
                MetaAnswer::Cas(cas_answer(outcome))
            }
        }
    })
}

/// The record with its version, and the alive nodes.
async fn read_record(pool: &ConnPool, log_id: u64) -> RecordAnswer {
    let read = async {
        let versioned = pool.meta().get_log(log_id).await?;
        let alive = alive_nodes(pool).await?;
        Ok::<_, crate::error::ClientError>((versioned, alive))
    };
    match read.await {
        Ok((v, alive)) => RecordAnswer::Read {
            version: v.version,
            record: v.record,
            alive,
        },
        Err(e) => {
            log::warn!("log {log_id}: metadata read: {e}");
            RecordAnswer::Unavailable
        }
    }
}

/// A CAS's result as the machines hear it.
pub fn cas_answer(outcome: Result<CasOutcome, MetaError>) -> CasAnswer {
    match outcome {
        Ok(CasOutcome::Applied { version }) => CasAnswer::Applied { version },
        Ok(CasOutcome::Conflict(v)) => CasAnswer::Conflict {
            version: v.version,
            record: v.record,
        },
        Err(e) if surely_not_applied(&e) => CasAnswer::Unavailable,
        Err(_) => CasAnswer::Unknown,
    }
}

fn surely_not_applied(e: &MetaError) -> bool {
    match e {
        MetaError::Server(_) | MetaError::InvalidArgument(_) | MetaError::InvalidRecord { .. } => {
            true
        }
        MetaError::Io { source, .. } => source.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::meta::Versioned;

    #[test]
    fn only_errors_that_cannot_have_applied_are_unavailable() {
        let addr: trilog_meta::HostPort = "127.0.0.1:1".parse().expect("address");
        let refused = MetaError::Io {
            addr: addr.clone(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(cas_answer(Err(refused)), CasAnswer::Unavailable);
        let reset = MetaError::Io {
            addr,
            source: std::io::ErrorKind::ConnectionReset.into(),
        };
        assert_eq!(cas_answer(Err(reset)), CasAnswer::Unknown);
        let timeout = MetaError::Timeout {
            what: "cas_log",
            after_ms: 5_000,
        };
        assert_eq!(cas_answer(Err(timeout)), CasAnswer::Unknown);
        assert_eq!(
            cas_answer(Err(MetaError::Server("full disk".into()))),
            CasAnswer::Unavailable
        );
        assert_eq!(
            cas_answer(Ok(CasOutcome::Conflict(Versioned {
                version: 4,
                record: None
            }))),
            CasAnswer::Conflict {
                version: 4,
                record: None
            }
        );
    }
}
