//! A TCP proxy the tests control, to cut one node off the network.
//!
//! It listens on a loopback port of its own and forwards every connection
//! to a target address (a node's shard port, or the metadata store). A node
//! started with `--advertise-port <proxy port>` is reached by clients only
//! through it. [`Proxy::partition`] makes it behave like a network that
//! drops every packet: bytes already in a socket stay there and nothing is
//! forwarded in either direction, no socket is closed (a peer sees silence,
//! not a reset), and a new connection is accepted but never answered (the
//! connect of a client with a handshake times out, as with dropped SYNs).
//! [`Proxy::heal`] lets everything held through again, in order, as TCP's
//! retransmissions would after a real partition ends.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes one forwarding direction reads at a time.
const PUMP_BUFFER_BYTES: usize = 64 * 1024;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyState {
    Forwarding,
    /// Holds everything: no byte and no close goes through.
    Partitioned,
    /// The proxy is gone: every connection is dropped.
    Shutdown,
}

/// A running proxy. Dropping it drops its listener and every connection.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<watch::Sender<ProxyState>>,
}

impl Proxy {
    /// Listens on a fresh loopback port and forwards to `target`. Must be
    /// called inside a tokio runtime, which runs the proxy's tasks.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        assert!(
            target.ip().is_loopback(),
            "the kit stays on loopback: {target}"
        );
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(ProxyState::Forwarding);
        tokio::spawn(accept_loop(listener, target, rx));
        Ok(Proxy {
            addr,
            target,
            state: Arc::new(tx),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn state(&self) -> ProxyState {
        *self.state.borrow()
    }

    /// Stops forwarding, in both directions, on every connection.
    pub fn partition(&self) {
        self.state.send_replace(ProxyState::Partitioned);
    }

    /// Forwards again, starting with what was held.
    pub fn heal(&self) {
        self.state.send_replace(ProxyState::Forwarding);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.send_replace(ProxyState::Shutdown);
    }
}

/// Waits while the proxy is partitioned; false once it shuts down.
async fn passable(state: &mut watch::Receiver<ProxyState>) -> bool {
    loop {
        match *state.borrow_and_update() {
            ProxyState::Forwarding => return true,
            ProxyState::Shutdown => return false,
            ProxyState::Partitioned => {}
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves once the proxy shuts down.
async fn shut_down(mut state: watch::Receiver<ProxyState>) {
    loop {
        if *state.borrow_and_update() == ProxyState::Shutdown {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: watch::Receiver<ProxyState>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shut_down(state.clone()) => return,
        };
        match accepted {
            Ok((client, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = connection(client, target, state.clone()) => {}
                        _ = shut_down(state) => {}
                    }
                });
            }
            Err(e) => {
                log::warn!("proxy to {target}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// One client connection: held while partitioned (a blackhole), then
/// connected to the target and pumped both ways.
async fn connection(client: TcpStream, target: SocketAddr, mut state: watch::Receiver<ProxyState>) {
    if !passable(&mut state).await {
        return;
    }
    let upstream = match TcpStream::connect(target).await {
        Ok(s) => s,
        // The target is down: the client sees its connection closed, as it
        // would see a refused connect.
        Err(_) => return,
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (up_rd, up_wr) = upstream.into_split();
    let there = pump(client_rd, up_wr, state.clone());
    let back = pump(up_rd, client_wr, state);
    tokio::join!(there, back);
}

/// Copies one direction. While partitioned, what was read waits, and so
/// does the end of the stream: a close is a packet too.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<ProxyState>,
) {
    let mut buf = vec![0u8; PUMP_BUFFER_BYTES];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if !passable(&mut state).await {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(s: &mut TcpStream, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(wait, s.read_exact(&mut got))
            .await
            .ok()?
            .ok()?;
        Some(got)
    }

    #[tokio::test]
    async fn forwards_holds_while_partitioned_then_delivers() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let short = Duration::from_millis(300);
        let long = Duration::from_secs(5);
        assert_eq!(
            echo(&mut s, b"one", long).await.as_deref(),
            Some(&b"one"[..])
        );
        proxy.partition();
        assert_eq!(echo(&mut s, b"two", short).await, None, "held");
        // A new connection is accepted but gets nothing through.
        let mut fresh = TcpStream::connect(proxy.addr()).await.expect("accepted");
        assert_eq!(echo(&mut fresh, b"new", short).await, None, "blackholed");
        proxy.heal();
        // What was held arrives, in order, on both connections.
        let mut got = vec![0u8; 3];
        tokio::time::timeout(long, s.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&got, b"two");
        tokio::time::timeout(long, fresh.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&got, b"new");
        assert_eq!(
            echo(&mut s, b"three", long).await.as_deref(),
            Some(&b"three"[..])
        );
    }
}
