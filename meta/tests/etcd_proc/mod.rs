//! A real single-member etcd for the tests (`/usr/bin/etcd`, or
//! `ETCD_BIN`) on free loopback ports in a temporary directory, plain or
//! serving mutual TLS; killed when dropped.

#![allow(dead_code)] // each test file uses its own share

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;
use trilog_meta::{EtcdMeta, MetaStore};

/// How long a fresh etcd may take to answer its first call.
const ETCD_START_WAIT: Duration = Duration::from_secs(30);

/// A running single-member etcd. Dropping it kills the process.
pub struct Etcd {
    child: Child,
    pub client_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::start_with(None)
    }

    /// An etcd serving its clients mutual TLS only: its certificate and
    /// key `tls`, clients' certificates checked against `tls.ca`.
    pub fn start_tls(tls: &trilog_tls::TlsFiles) -> Etcd {
        Etcd::start_with(Some(tls))
    }

    fn start_with(tls: Option<&trilog_tls::TlsFiles>) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let mut cmd = Command::new(etcd_binary());
        if let Some(tls) = tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", "m0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m0={peer_url}")])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd starts (apt-get install etcd-server)");
        Etcd {
            child,
            client_url,
            _dir: dir,
        }
    }

    /// A client, once etcd answers a read (polled against a deadline).
    pub async fn meta(&self) -> EtcdMeta {
        let endpoints = [self.client_url.clone()];
        let deadline = Instant::now() + ETCD_START_WAIT;
        loop {
            let short = Duration::from_secs(1);
            let tried = EtcdMeta::connect_with(&endpoints, "/trilog/", short).await;
            let last = match tried {
                Ok(meta) => match meta.list_logs().await {
                    Ok(_) => return meta,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "etcd did not start: {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
