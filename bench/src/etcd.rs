//! The etcd baseline: a cluster of Debian's `etcd` processes on loopback
//! (each member fsyncs its WAL before it acknowledges, as etcd always
//! does), and a load target where each append is one put (a batch is one
//! transaction of puts), through the etcd v3 API from a client outside the
//! cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions, Txn, TxnOp};

use crate::cluster::{free_port, ClusterError};
use crate::delay::DelayProxy;
use crate::load::{AppendFuture, Target};

/// A running etcd cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
    pub client_addrs: Vec<SocketAddr>,
    children: Vec<Child>,
    /// With a simulated round trip: the proxies every peer and client
    /// connection goes through.
    _proxies: Vec<DelayProxy>,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the `etcd` binary is: `ETCD_BIN`, else `etcd` on the PATH.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl EtcdCluster {
    /// Starts `n` members on loopback and waits until the cluster answers a
    /// put.
    pub async fn start(n: usize) -> Result<EtcdCluster, ClusterError> {
        EtcdCluster::start_with_delay(n, None).await
    }

    /// [`EtcdCluster::start`] where every connection to a member, from a
    /// peer or a client, goes through a [`DelayProxy`] adding `one_way` in
    /// each direction.
    pub async fn start_with_delay(
        n: usize,
        one_way: Option<Duration>,
    ) -> Result<EtcdCluster, ClusterError> {
        let temp = tempfile::Builder::new()
            .prefix("trilog-etcd-")
            .tempdir_in(crate::cluster::default_root())?;
        let dir = temp.path().to_path_buf();
        let mut peers = Vec::with_capacity(n);
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            peers.push(free_port()?);
            clients.push(free_port()?);
        }
        // What members and clients are told: the proxies when there are.
        let mut proxies = Vec::new();
        let mut peer_urls = Vec::with_capacity(n);
        let mut client_urls = Vec::with_capacity(n);
        for i in 0..n {
            match one_way {
                Some(d) => {
                    let any = SocketAddr::from(([127, 0, 0, 1], 0));
                    let pp =
                        DelayProxy::start(any, SocketAddr::from(([127, 0, 0, 1], peers[i])), d)
                            .await?;
                    let cp =
                        DelayProxy::start(any, SocketAddr::from(([127, 0, 0, 1], clients[i])), d)
                            .await?;
                    peer_urls.push(format!("http://{}", pp.listen));
                    client_urls.push(format!("http://{}", cp.listen));
                    proxies.push(pp);
                    proxies.push(cp);
                }
                None => {
                    peer_urls.push(format!("http://127.0.0.1:{}", peers[i]));
                    client_urls.push(format!("http://127.0.0.1:{}", clients[i]));
                }
            }
        }
        let initial: Vec<String> = peer_urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("e{i}={u}"))
            .collect();
        let initial = initial.join(",");
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let log = std::fs::File::create(dir.join(format!("e{i}.log")))?;
            let child = Command::new(etcd_binary())
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("e{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{}", clients[i]),
                ])
                .args(["--advertise-client-urls", &client_urls[i]])
                .args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", peers[i]),
                ])
                .args(["--initial-advertise-peer-urls", &peer_urls[i]])
                .args(["--initial-cluster", &initial])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "trilog-bench",
                ])
                .args(["--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| ClusterError::Node {
                    node: i as u64,
                    why: format!(
                        "cannot start {}: {e} (apt-get install etcd-server)",
                        etcd_binary().display()
                    ),
                })?;
            children.push(child);
        }
        let cluster = EtcdCluster {
            dir,
            _temp: temp,
            client_addrs: client_urls
                .iter()
                .filter_map(|u| u.trim_start_matches("http://").parse().ok())
                .collect(),
            children,
            _proxies: proxies,
        };
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn endpoints(&self) -> Vec<String> {
        self.client_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect()
    }

    pub async fn client(&self) -> Result<Client, ClusterError> {
        Client::connect(self.endpoints(), None)
            .await
            .map_err(|e| ClusterError::Node {
                node: 0,
                why: format!("etcd connect: {e}"),
            })
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut c) = self.client().await {
                if c.put("/trilog-bench/ready", "1", None).await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: "etcd cluster to accept a put".into(),
                    ms: timeout.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// etcd as a load target: an entry is a put of its payload under a key of
/// its own; a batch is one transaction.
pub struct EtcdTarget {
    client: Client,
    next: std::sync::atomic::AtomicU64,
}

impl EtcdTarget {
    pub fn new(client: Client) -> EtcdTarget {
        EtcdTarget {
            client,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn key(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("/trilog-bench/log/{n:016x}")
    }
}

impl Target for EtcdTarget {
    fn name(&self) -> &str {
        "etcd3"
    }

    fn append_batch(&self, entries: Vec<Vec<u8>>) -> AppendFuture<'_> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            if entries.len() == 1 {
                let Some(e) = entries.into_iter().next() else {
                    return Ok(());
                };
                kv.put(self.key(), e, None::<PutOptions>)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            let ops: Vec<TxnOp> = entries
                .into_iter()
                .map(|e| TxnOp::put(self.key(), e, None))
                .collect();
            kv.txn(Txn::new().and_then(ops))
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}
