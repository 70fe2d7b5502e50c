//! Record lookups for code that does not run on tokio (a node's glommio
//! shards): a thread with a current-thread tokio runtime of its own holds a
//! store client from [`MetaAddr::connect`] and answers `get_log` calls sent
//! to it over a channel. The answer future is runtime-agnostic (a tokio
//! oneshot), so any executor can await it. The client connects lazily and
//! again after an error; each call is bounded by the store's call timeout.

use std::sync::Arc;

use log::{error, warn};
use tokio::sync::{mpsc, oneshot};
use trilog_wire::meta::LogMeta;

use crate::addr::MetaAddr;
use crate::error::MetaError;
use crate::limits::META_CALL_TIMEOUT;
use crate::store::MetaStore;
use trilog_tls::TlsIdentity;

type Request = (u64, oneshot::Sender<Result<Option<LogMeta>, String>>);

/// A handle to the lookup thread; cheap to clone, usable from any thread.
/// The thread ends once every handle is dropped.
#[derive(Debug, Clone)]
pub struct RecordLookups {
    tx: mpsc::UnboundedSender<Request>,
}

impl RecordLookups {
    /// The record of `log_id` (`None`: no such log), or why the lookup
    /// failed.
    pub fn get_log(
        &self,
        log_id: u64,
    ) -> impl std::future::Future<Output = Result<Option<LogMeta>, String>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send((log_id, tx)).is_ok();
        async move {
            if !sent {
                return Err("the record lookup thread is gone".into());
            }
            rx.await
                .unwrap_or_else(|_| Err("the record lookup thread dropped the call".into()))
        }
    }
}

/// Starts the lookup thread for the store at `meta` (over mutual TLS
/// with `tls` when given).
pub fn spawn_record_lookups(meta: MetaAddr, tls: Option<Arc<TlsIdentity>>) -> RecordLookups {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("trilog-record-lookups".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(serve(meta, tls, rx)),
                Err(e) => error!("cannot start the record lookup runtime: {e}"),
            }
        });
    if let Err(e) = spawned {
        // Every call then fails at once; the node works without lookups.
        error!("cannot start the record lookup thread: {e}");
    }
    RecordLookups { tx }
}

async fn serve(
    meta: MetaAddr,
    tls: Option<Arc<TlsIdentity>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut store: Option<Arc<dyn MetaStore>> = None;
    while let Some((log_id, answer)) = rx.recv().await {
        let result = lookup(&mut store, &meta, tls.as_ref(), log_id).await;
        if let Err(e) = &result {
            warn!("record lookup of log {log_id} at {meta}: {e}");
            store = None;
        }
        let _ = answer.send(result.map_err(|e| e.to_string()));
    }
}

async fn lookup(
    store: &mut Option<Arc<dyn MetaStore>>,
    meta: &MetaAddr,
    tls: Option<&Arc<TlsIdentity>>,
    log_id: u64,
) -> Result<Option<LogMeta>, MetaError> {
    let s = match store {
        Some(s) => s.clone(),
        None => {
            let s = meta.connect_tls(META_CALL_TIMEOUT, tls).await?;
            *store = Some(s.clone());
            s
        }
    };
    Ok(s.get_log(log_id).await?.record)
}
