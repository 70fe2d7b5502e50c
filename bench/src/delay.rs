//! A TCP proxy that delays every byte by a fixed one-way time in each
//! direction, keeping order: a stand-in for a network round trip between
//! hosts where the kernel has no `netem` (this machine's kernel is built
//! without CONFIG_NET_SCH_NETEM, so `tc qdisc ... netem` is refused).
//!
//! One proxy stands in front of each node port; every connection to that
//! node (from a client or from a peer) goes through it, so every round
//! trip to a node costs `2 x one_way` more than loopback, for every system
//! alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read at a time: a chunk is delayed as a unit.
const CHUNK_BYTES: usize = 64 * 1024;

/// A running proxy; dropping it stops accepting (open connections end when
/// either side closes).
#[derive(Debug)]
pub struct DelayProxy {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl DelayProxy {
    /// Listens on `listen` (port 0: any) and forwards to `target`, each
    /// direction delayed by `one_way`.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        one_way: Duration,
    ) -> std::io::Result<DelayProxy> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pump(ri, wo, one_way));
                    tokio::spawn(pump(ro, wi, one_way));
                });
            }
        });
        Ok(DelayProxy {
            listen,
            target,
            stop,
            task,
        })
    }
}

/// Copies `from` to `to`, each chunk leaving `delay` after it arrived.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_in_order_and_delays_each_way() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).await.expect("write");
            }
        });
        let one_way = Duration::from_millis(20);
        let proxy = DelayProxy::start("127.0.0.1:0".parse().expect("addr"), echo_addr, one_way)
            .await
            .expect("proxy");
        let mut c = TcpStream::connect(proxy.listen).await.expect("connect");
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        for i in 0..50u8 {
            c.write_all(&[i]).await.expect("write");
        }
        while got.len() < 50 {
            let mut b = [0u8; 64];
            let n = c.read(&mut b).await.expect("read");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&b[..n]);
        }
        // Order kept; and no byte came back before both delays passed (a
        // lower bound only: a slow machine can only add to it).
        assert_eq!(got, (0..50u8).collect::<Vec<_>>());
        assert!(t0.elapsed() >= one_way * 2, "{:?}", t0.elapsed());
    }
}
