//! The etcd baseline: a cluster of Debian's `etcd` processes on loopback
//! (each member fsyncs its WAL before it acknowledges, as etcd always
//! does), and etcd used as a log ([`EtcdLog`]): each entry one put under a
//! key of its own, a batch one transaction of puts, through the etcd v3
//! API from a client outside the cluster. `trilog-bench`'s tests also use
//! the cluster as trilog's metadata store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use trilog_testkit::cluster::default_root;
use trilog_testkit::delay::DelayProxy;
use trilog_testkit::ports::free_port;
use trilog_testkit::wait::{wait_for, TimedOut};

/// Where [`EtcdLog`] puts its entries: one key per entry below it.
pub const LOG_KEY_PREFIX: &str = "/trilog-bench/log/";
/// The key a new cluster must accept a put of before it counts as up.
const READY_KEY: &str = "/trilog-bench/ready";
/// Time for a new cluster to elect a leader and accept a put.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("member e{member}: cannot start {}: {source} (apt-get install etcd-server)", program.display())]
    Start {
        member: usize,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("etcd connect: {0}")]
    Connect(#[source] etcd_client::Error),
    #[error(transparent)]
    Timeout(#[from] TimedOut),
    #[error("no member of {members} follows a leader behind a delay proxy")]
    NoFollower { members: usize },
}

/// A running etcd cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
    pub client_addrs: Vec<SocketAddr>,
    children: Vec<Child>,
    /// Each member's client port itself, not through its proxy.
    direct_client_ports: Vec<u16>,
    /// With a simulated round trip: the proxies every peer and client
    /// connection goes through, member by member (its peer port's, then
    /// its client port's).
    proxies: Vec<DelayProxy>,
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

/// Where each member listens and where it is reached (its proxies, with a
/// simulated round trip).
struct Members {
    peer_ports: Vec<u16>,
    client_ports: Vec<u16>,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
    proxies: Vec<DelayProxy>,
}

impl Members {
    async fn new(n: usize, one_way: Option<Duration>) -> Result<Members, EtcdError> {
        let mut m = Members {
            peer_ports: Vec::with_capacity(n),
            client_ports: Vec::with_capacity(n),
            peer_urls: Vec::with_capacity(n),
            client_urls: Vec::with_capacity(n),
            proxies: Vec::new(),
        };
        for _ in 0..n {
            let (peer, client) = (free_port()?, free_port()?);
            m.peer_ports.push(peer);
            m.client_ports.push(client);
            let (peer_url, client_url) = (
                m.reached_at(peer, one_way).await?,
                m.reached_at(client, one_way).await?,
            );
            m.peer_urls.push(peer_url);
            m.client_urls.push(client_url);
        }
        Ok(m)
    }

    /// The URL of a loopback port as others reach it: through a new delay
    /// proxy if there is a round trip to simulate.
    async fn reached_at(
        &mut self,
        port: u16,
        one_way: Option<Duration>,
    ) -> Result<String, EtcdError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Some(d) = one_way else {
            return Ok(format!("http://{addr}"));
        };
        let proxy = DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)), addr, d).await?;
        let url = format!("http://{}", proxy.listen);
        self.proxies.push(proxy);
        Ok(url)
    }

    /// `e0=url,e1=url,...`: the initial cluster every member is told.
    fn initial_cluster(&self) -> String {
        let members: Vec<String> = self
            .peer_urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("e{i}={u}"))
            .collect();
        members.join(",")
    }

    /// Starts member `i`, its data and log under `dir`.
    fn spawn(&self, i: usize, dir: &Path, initial: &str) -> Result<Child, EtcdError> {
        let log = std::fs::File::create(dir.join(format!("e{i}.log")))?;
        Command::new(etcd_binary())
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("e{i}")))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", self.client_ports[i]),
            ])
            .args(["--advertise-client-urls", &self.client_urls[i]])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_ports[i]),
            ])
            .args(["--initial-advertise-peer-urls", &self.peer_urls[i]])
            .args(["--initial-cluster", initial])
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
            .map_err(|source| EtcdError::Start {
                member: i,
                program: etcd_binary(),
                source,
            })
    }
}

impl EtcdCluster {
    /// Starts `n` members on loopback and waits until the cluster answers a
    /// put.
    pub async fn start(n: usize) -> Result<EtcdCluster, EtcdError> {
        EtcdCluster::start_with_delay(n, None).await
    }

    /// [`EtcdCluster::start`] where every connection to a member, from a
    /// peer or a client, goes through a [`DelayProxy`] adding `one_way` in
    /// each direction.
    pub async fn start_with_delay(
        n: usize,
        one_way: Option<Duration>,
    ) -> Result<EtcdCluster, EtcdError> {
        assert!(n >= 1, "a cluster has a member");
        let temp = tempfile::Builder::new()
            .prefix("trilog-etcd-")
            .tempdir_in(default_root())?;
        let dir = temp.path().to_path_buf();
        let members = Members::new(n, one_way).await?;
        let initial = members.initial_cluster();
        let mut cluster = EtcdCluster {
            dir,
            _temp: temp,
            client_addrs: members
                .client_urls
                .iter()
                .filter_map(|u| u.trim_start_matches("http://").parse().ok())
                .collect(),
            children: Vec::with_capacity(n),
            direct_client_ports: members.client_ports.clone(),
            proxies: Vec::new(),
        };
        assert_eq!(cluster.client_addrs.len(), n, "every member is reachable");
        for i in 0..n {
            // Pushed one by one: a member that fails to start leaves the
            // ones before it to the cluster's drop.
            let child = members.spawn(i, &cluster.dir, &initial)?;
            cluster.children.push(child);
        }
        cluster.proxies = members.proxies;
        cluster.wait_ready(START_TIMEOUT).await?;
        Ok(cluster)
    }

    fn endpoints(&self) -> Vec<String> {
        self.client_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect()
    }

    /// Slows a member that does not lead by `extra` more each way, on its
    /// peer and client ports (zero: back to the base delay); returns its
    /// index. Only with a simulated round trip.
    pub async fn slow_follower(&self, extra: Duration) -> Result<usize, EtcdError> {
        let mut leader = None;
        let mut ids = Vec::with_capacity(self.direct_client_ports.len());
        for port in &self.direct_client_ports {
            let url = format!("http://127.0.0.1:{port}");
            let mut c = Client::connect([url], None)
                .await
                .map_err(EtcdError::Connect)?;
            let status = c.status().await.map_err(EtcdError::Connect)?;
            leader = Some(status.leader());
            ids.push(status.header().map(|h| h.member_id()));
        }
        let follower = ids
            .iter()
            .position(|id| id.is_some() && *id != leader)
            .ok_or_else(|| EtcdError::NoFollower { members: ids.len() })?;
        let (peer, client) = (
            self.proxies.get(2 * follower),
            self.proxies.get(2 * follower + 1),
        );
        let (Some(peer), Some(client)) = (peer, client) else {
            return Err(EtcdError::NoFollower { members: ids.len() });
        };
        peer.set_extra(extra);
        client.set_extra(extra);
        Ok(follower)
    }

    pub async fn client(&self) -> Result<Client, EtcdError> {
        Client::connect(self.endpoints(), None)
            .await
            .map_err(EtcdError::Connect)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), EtcdError> {
        let this = self;
        wait_for(
            "etcd cluster to accept a put",
            timeout,
            move || async move {
                let mut c = this.client().await.ok()?;
                c.put(READY_KEY, "1", None).await.ok().map(|_| ())
            },
        )
        .await?;
        Ok(())
    }
}

/// etcd as a log: an entry is a put of its payload under a key of its own
/// (below [`LOG_KEY_PREFIX`], in the order the puts were started); a batch
/// is one transaction.
pub struct EtcdLog {
    client: Client,
    next: AtomicU64,
}

impl EtcdLog {
    pub fn new(client: Client) -> EtcdLog {
        EtcdLog {
            client,
            next: AtomicU64::new(0),
        }
    }

    fn key(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{LOG_KEY_PREFIX}{n:016x}")
    }

    /// Puts every entry; returns once etcd acknowledged them (a majority
    /// of the members fsynced them).
    pub async fn append_batch(&self, entries: Vec<Vec<u8>>) -> Result<(), etcd_client::Error> {
        let mut kv = self.client.kv_client();
        match <[Vec<u8>; 1]>::try_from(entries) {
            Ok([entry]) => {
                kv.put(self.key(), entry, None::<PutOptions>).await?;
            }
            Err(entries) => {
                let ops: Vec<TxnOp> = entries
                    .into_iter()
                    .map(|e| TxnOp::put(self.key(), e, None))
                    .collect();
                kv.txn(Txn::new().and_then(ops)).await?;
            }
        }
        Ok(())
    }
}
