//! Where the metadata store is, as a user writes it: `host:port` for the
//! embedded store served by a node, `etcd://host:port[,host:port...]` for
//! etcd. The `trilog` CLI and the node's `--meta` both take this form.
//! An `etcd://` address parses in every build; connecting to it needs the
//! cargo feature `etcd` (without it, [`MetaAddr::connect`] says so).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::embedded::EmbeddedMeta;
use crate::error::MetaError;
use crate::limits::META_CALL_TIMEOUT;
use crate::store::MetaStore;

const ETCD_SCHEME: &str = "etcd://";

/// A metadata store's address (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaAddr {
    Embedded(SocketAddr),
    /// etcd endpoints, each `host:port`.
    Etcd(Vec<String>),
}

/// Why an address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata store address {given:?}: {why} (expected host:port or etcd://host:port[,host:port...])")]
pub struct MetaAddrError {
    pub given: String,
    pub why: String,
}

impl FromStr for MetaAddr {
    type Err = MetaAddrError;

    fn from_str(s: &str) -> Result<MetaAddr, MetaAddrError> {
        let err = |why: &str| MetaAddrError {
            given: s.to_string(),
            why: why.to_string(),
        };
        let Some(list) = s.strip_prefix(ETCD_SCHEME) else {
            return s
                .parse()
                .map(MetaAddr::Embedded)
                .map_err(|_| err("not an ip:port"));
        };
        let endpoints: Vec<String> = list.split(',').map(str::to_string).collect();
        for e in &endpoints {
            // host:port with a port that parses; the host is resolved by
            // the etcd client when it connects.
            let port = e
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(err(&format!("etcd endpoint {e:?} is not host:port")));
            }
        }
        Ok(MetaAddr::Etcd(endpoints))
    }
}

impl fmt::Display for MetaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaAddr::Embedded(addr) => write!(f, "{addr}"),
            MetaAddr::Etcd(endpoints) => write!(f, "{ETCD_SCHEME}{}", endpoints.join(",")),
        }
    }
}

impl MetaAddr {
    /// A client of the store. The embedded client connects lazily; the etcd
    /// one connects now, within the call timeout.
    pub async fn connect(&self) -> Result<Arc<dyn MetaStore>, MetaError> {
        self.connect_with(META_CALL_TIMEOUT).await
    }

    /// As [`MetaAddr::connect`], with another deadline per call (a watch
    /// gets its wait on top); it bounds the etcd connect too.
    pub async fn connect_with(
        &self,
        call_timeout: Duration,
    ) -> Result<Arc<dyn MetaStore>, MetaError> {
        match self {
            MetaAddr::Embedded(addr) => Ok(Arc::new(EmbeddedMeta::with_call_timeout(
                *addr,
                call_timeout,
            ))),
            MetaAddr::Etcd(endpoints) => connect_etcd(endpoints, call_timeout).await,
        }
    }
}

#[cfg(feature = "etcd")]
async fn connect_etcd(
    endpoints: &[String],
    call_timeout: Duration,
) -> Result<Arc<dyn MetaStore>, MetaError> {
    use crate::etcd::{EtcdMeta, ETCD_PREFIX_DEFAULT};
    let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
    Ok(Arc::new(
        EtcdMeta::connect_with(&urls, ETCD_PREFIX_DEFAULT, call_timeout).await?,
    ))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(
    endpoints: &[String],
    _call_timeout: Duration,
) -> Result<Arc<dyn MetaStore>, MetaError> {
    Err(MetaError::EtcdNotBuilt {
        addr: MetaAddr::Etcd(endpoints.to_vec()).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_addresses_parse_both_forms() {
        assert_eq!(
            "127.0.0.1:7300".parse(),
            Ok(MetaAddr::Embedded(SocketAddr::from(([127, 0, 0, 1], 7300))))
        );
        let etcd: MetaAddr = "etcd://a:2379,10.0.0.2:2379".parse().expect("etcd");
        assert_eq!(
            etcd,
            MetaAddr::Etcd(vec!["a:2379".into(), "10.0.0.2:2379".into()])
        );
        assert_eq!(etcd.to_string(), "etcd://a:2379,10.0.0.2:2379");
        for bad in [
            "",
            "localhost",
            "etcd://",
            "etcd://a",
            "etcd://a:x",
            "etcd://:1",
            "etcd://a:1,",
        ] {
            assert!(bad.parse::<MetaAddr>().is_err(), "{bad:?} parsed");
        }
    }
}
