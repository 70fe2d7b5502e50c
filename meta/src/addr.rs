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

use trilog_tls::TlsIdentity;

use crate::embedded::EmbeddedMeta;
use crate::error::MetaError;
use crate::limits::META_CALL_TIMEOUT;
use crate::store::MetaStore;

const ETCD_SCHEME: &str = "etcd://";

/// A metadata store's address (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaAddr {
    Embedded(HostPort),
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
                .map_err(|e: HostPortError| err(&e.why));
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

/// A `host:port` where host is a name or an address: what a user types
/// for a server to dial. A name is resolved each time a connection is
/// made, so a store that moves to another address is found again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// A name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
}

/// Why a `host:port` does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?}: {why}")]
pub struct HostPortError {
    pub given: String,
    pub why: String,
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(s: &str) -> Result<HostPort, HostPortError> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let err = |why: &str| HostPortError {
            given: s.to_string(),
            why: why.to_string(),
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| err("not host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| err("the port is not a number from 0 to 65535"))?;
        // A name: letters, digits, '-', '.', '_' (no brackets, no spaces,
        // no second colon: an IPv6 address needs its brackets).
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !is_name {
            return Err(err(
                "not host:port (an IPv6 address goes in brackets: [::1]:7300)",
            ));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> HostPort {
        HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl HostPort {
    /// The addresses the host resolves to now (a name through the
    /// system's resolver, on a blocking thread).
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(found)
    }

    /// As [`HostPort::resolve`], blocking: for start-up, before any
    /// runtime runs.
    pub fn resolve_now(&self) -> std::io::Result<Vec<SocketAddr>> {
        use std::net::ToSocketAddrs;
        let found: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(found)
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
        self.connect_tls(call_timeout, None).await
    }

    /// As [`MetaAddr::connect_with`], over mutual TLS with `tls` when
    /// given (to the embedded store and to etcd alike).
    pub async fn connect_tls(
        &self,
        call_timeout: Duration,
        tls: Option<&Arc<TlsIdentity>>,
    ) -> Result<Arc<dyn MetaStore>, MetaError> {
        match self {
            MetaAddr::Embedded(addr) => Ok(Arc::new(EmbeddedMeta::with_tls(
                addr.clone(),
                call_timeout,
                tls.cloned(),
            ))),
            MetaAddr::Etcd(endpoints) => connect_etcd(endpoints, call_timeout, tls).await,
        }
    }
}

#[cfg(feature = "etcd")]
async fn connect_etcd(
    endpoints: &[String],
    call_timeout: Duration,
    tls: Option<&Arc<TlsIdentity>>,
) -> Result<Arc<dyn MetaStore>, MetaError> {
    use crate::etcd::{EtcdMeta, ETCD_PREFIX_DEFAULT};
    let scheme = if tls.is_some() { "https" } else { "http" };
    let urls: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{scheme}://{e}"))
        .collect();
    Ok(Arc::new(
        EtcdMeta::connect_tls(&urls, ETCD_PREFIX_DEFAULT, call_timeout, tls.map(|t| &**t)).await?,
    ))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(
    endpoints: &[String],
    _call_timeout: Duration,
    _tls: Option<&Arc<TlsIdentity>>,
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
            Ok(MetaAddr::Embedded(
                SocketAddr::from(([127, 0, 0, 1], 7300)).into()
            ))
        );
        assert_eq!(
            "meta-1.example:7300".parse(),
            Ok(MetaAddr::Embedded(HostPort {
                host: "meta-1.example".into(),
                port: 7300
            }))
        );
        let v6: MetaAddr = "[::1]:7300".parse().expect("v6");
        assert_eq!(v6.to_string(), "[::1]:7300");
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
