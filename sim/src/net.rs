//! A simulated TCP network between simulated processes.
//!
//! Connections are reliable ordered byte streams, as TCP's are; what TCP
//! lets an application see of a bad network is what this network does:
//! - **delay**: every write reaches the peer after a latency drawn from the
//!   run's seed (never before an earlier write of the same direction), and a
//!   host may be made slower;
//! - **reordering** between connections: each connection draws its own
//!   latencies, so a producer's three replicas, a fence and an append, a
//!   metadata call and a data-path answer arrive in any order;
//! - **loss**: a connection is reset (both ends see an error; what was in
//!   flight is gone), as after a timeout or a middlebox drop; a killed
//!   process closes its connections;
//! - **partitions**: between cut hosts nothing moves (bytes already sent
//!   wait in the air, in order, and move again after the heal), and new
//!   connections time out;
//! - **duplication** happens where it happens over TCP: an application
//!   that resends after a reset (a producer resending appends on a new
//!   connection) delivers the same request twice.
//!
//! Writes are accepted up to a window of bytes in flight per direction; past
//! it a writer waits, as on a full socket buffer, so back-pressure behaves.
//!
//! Streams implement both tokio's and futures-io's `AsyncRead`/`AsyncWrite`
//! (the client runs on the first, the node on the second).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::executor::{ProcessId, SimHandle};
use crate::rng::Rng;

/// How the network behaves when nothing goes wrong.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Bytes one direction of a connection carries in flight.
    pub window_bytes: usize,
    /// How long a connect across a partition takes to fail.
    pub connect_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: Duration::from_micros(50),
            latency_max: Duration::from_micros(400),
            window_bytes: 1 << 20,
            connect_timeout: Duration::from_millis(1_000),
        }
    }
}

enum Chunk {
    Data(Vec<u8>),
    /// The writer shut its direction down: EOF once everything before is read.
    Fin,
}

#[derive(Default)]
struct Dir {
    delivered: VecDeque<u8>,
    /// Bytes written and not yet delivered.
    in_flight: usize,
    /// Chunks that arrived while the hosts were cut off, in order.
    held: VecDeque<Chunk>,
    last_at_ns: u64,
    fin_sent: bool,
    eof: bool,
    /// The reading end is gone: writes fail.
    reader_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Dir {
    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

struct Pipe {
    hosts: [IpAddr; 2],
    processes: [ProcessId; 2],
    addrs: [SocketAddr; 2],
    /// `dirs[s]` carries what side `s` writes.
    dirs: [Dir; 2],
    reset: bool,
    dropped: [bool; 2],
}

struct Listener {
    process: ProcessId,
    backlog: VecDeque<SimStream>,
    waker: Option<Waker>,
}

struct State {
    cfg: NetConfig,
    rng: Rng,
    listeners: BTreeMap<SocketAddr, Listener>,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    next_port: u16,
    /// Cut host pairs, each stored low address first.
    cut: BTreeSet<(IpAddr, IpAddr)>,
    /// Extra one-way latency of a host's traffic.
    slow: BTreeMap<IpAddr, Duration>,
    resets: u64,
}

/// The network of one simulation. Cloning shares it.
#[derive(Clone)]
pub struct Net {
    state: Arc<Mutex<State>>,
    sim: SimHandle,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Net")
    }
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Net {
    pub fn new(sim: SimHandle, cfg: NetConfig, rng: Rng) -> Net {
        assert!(cfg.latency_min <= cfg.latency_max, "latency bounds");
        assert!(cfg.window_bytes > 0, "a window carries bytes");
        Net {
            state: Arc::new(Mutex::new(State {
                cfg,
                rng,
                listeners: BTreeMap::new(),
                pipes: BTreeMap::new(),
                next_pipe: 1,
                next_port: 40_000,
                cut: BTreeSet::new(),
                slow: BTreeMap::new(),
                resets: 0,
            })),
            sim,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens on `addr` for `process`. Fails if the address is taken.
    pub fn listen(&self, process: ProcessId, addr: SocketAddr) -> io::Result<SimListener> {
        let mut st = self.lock();
        if st.listeners.contains_key(&addr) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, addr.to_string()));
        }
        st.listeners.insert(
            addr,
            Listener {
                process,
                backlog: VecDeque::new(),
                waker: None,
            },
        );
        Ok(SimListener {
            net: self.clone(),
            addr,
        })
    }

    /// Connects `process` on `host` to `to`, after a network latency.
    pub async fn connect(
        &self,
        process: ProcessId,
        host: IpAddr,
        to: SocketAddr,
    ) -> io::Result<SimStream> {
        let (latency, timeout) = {
            let mut st = self.lock();
            let l = st.latency(host, to.ip());
            (l, st.cfg.connect_timeout)
        };
        self.sim.sleep(latency).await;
        let cut = self.lock().cut.contains(&pair(host, to.ip()));
        if cut {
            self.sim.sleep(timeout).await;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {to}: timed out"),
            ));
        }
        let mut st = self.lock();
        let port = st.next_port;
        st.next_port = st.next_port.checked_add(1).unwrap_or(40_000);
        let from = SocketAddr::new(host, port);
        let Some(listener) = st.listeners.get(&to) else {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("connect to {to}: refused"),
            ));
        };
        let server_process = listener.process;
        let id = st.next_pipe;
        st.next_pipe += 1;
        st.pipes.insert(
            id,
            Pipe {
                hosts: [host, to.ip()],
                processes: [process, server_process],
                addrs: [from, to],
                dirs: [Dir::default(), Dir::default()],
                reset: false,
                dropped: [false, false],
            },
        );
        let server_end = SimStream {
            net: self.clone(),
            pipe: id,
            side: 1,
        };
        if let Some(listener) = st.listeners.get_mut(&to) {
            listener.backlog.push_back(server_end);
            if let Some(w) = listener.waker.take() {
                w.wake();
            }
        }
        Ok(SimStream {
            net: self.clone(),
            pipe: id,
            side: 0,
        })
    }

    /// Resets one connection: both ends see an error, and what was in
    /// flight or unread is gone.
    pub fn reset_pipe(&self, pipe: u64) {
        let mut st = self.lock();
        st.reset(pipe);
    }

    /// The ids of the open connections (for a fault injector to pick from).
    pub fn pipes(&self) -> Vec<u64> {
        self.lock()
            .pipes
            .iter()
            .filter(|(_, p)| !p.reset)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Connections reset so far (by faults or by killed processes).
    pub fn resets(&self) -> u64 {
        self.lock().resets
    }

    /// Cuts `a` from `b`: nothing moves between them until [`Net::heal`].
    pub fn cut(&self, a: IpAddr, b: IpAddr) {
        assert_ne!(a, b, "a host is not cut from itself");
        self.lock().cut.insert(pair(a, b));
    }

    /// Heals every cut; what waited in the air moves on, in order.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.cut.clear();
        let ids: Vec<u64> = st.pipes.keys().copied().collect();
        for id in ids {
            for side in 0..2 {
                let held: Vec<Chunk> = match st.pipes.get_mut(&id) {
                    Some(p) => p.dirs[side].held.drain(..).collect(),
                    None => continue,
                };
                for chunk in held {
                    self.send_chunk(&mut st, id, side, chunk);
                }
            }
        }
    }

    /// Adds `extra` one-way latency to everything `host` sends or receives.
    pub fn set_slow(&self, host: IpAddr, extra: Duration) {
        let mut st = self.lock();
        if extra.is_zero() {
            st.slow.remove(&host);
        } else {
            st.slow.insert(host, extra);
        }
    }

    /// A process died: the kernel closes its sockets (peers read what was
    /// sent, then end of stream; their writes fail) and its listeners go.
    pub fn kill_process(&self, process: ProcessId) {
        let mut st = self.lock();
        let addrs: Vec<SocketAddr> = st
            .listeners
            .iter()
            .filter(|(_, l)| l.process == process)
            .map(|(a, _)| *a)
            .collect();
        // Unaccepted connections in a backlog are streams whose drop takes
        // the lock: drop them after it is released.
        let mut gone: Vec<Listener> = Vec::new();
        for a in addrs {
            gone.extend(st.listeners.remove(&a));
        }
        let ids: Vec<u64> = st
            .pipes
            .iter()
            .filter(|(_, p)| p.processes.contains(&process))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            for side in 0..2 {
                let mine = st
                    .pipes
                    .get(&id)
                    .is_some_and(|p| p.processes[side] == process);
                if mine {
                    self.close_side(&mut st, id, side);
                }
            }
        }
        drop(st);
        drop(gone);
    }

    fn close_side(&self, st: &mut State, id: u64, side: usize) {
        let fin = match st.pipes.get_mut(&id) {
            Some(p) => {
                p.dropped[side] = true;
                let peer = &mut p.dirs[1 - side];
                peer.reader_gone = true;
                peer.wake();
                !std::mem::replace(&mut p.dirs[side].fin_sent, true)
            }
            None => return,
        };
        if fin {
            self.send_chunk(st, id, side, Chunk::Fin);
        }
        if st.pipes.get(&id).is_some_and(|p| p.dropped == [true, true]) {
            st.pipes.remove(&id);
        }
    }

    /// Sends `chunk` from `side` of pipe `id` (data already counted in flight).
    fn send_chunk(&self, st: &mut State, id: u64, side: usize, chunk: Chunk) {
        let Some(p) = st.pipes.get(&id) else { return };
        let hosts = p.hosts;
        let held_before = !p.dirs[side].held.is_empty();
        if held_before || st.cut.contains(&pair(hosts[0], hosts[1])) {
            if let Some(p) = st.pipes.get_mut(&id) {
                p.dirs[side].held.push_back(chunk);
            }
            return;
        }
        let latency = st.latency(hosts[side], hosts[1 - side]);
        let now_ns = nanos(self.sim.now());
        let Some(p) = st.pipes.get_mut(&id) else {
            return;
        };
        let dir = &mut p.dirs[side];
        let at_ns = (now_ns + nanos(latency)).max(dir.last_at_ns);
        dir.last_at_ns = at_ns;
        let net = self.clone();
        self.sim
            .schedule(Duration::from_nanos(at_ns - now_ns), move || {
                net.arrive(id, side, chunk)
            });
    }

    fn arrive(&self, id: u64, side: usize, chunk: Chunk) {
        let mut st = self.lock();
        let cut = match st.pipes.get(&id) {
            Some(p) => st.cut.contains(&pair(p.hosts[0], p.hosts[1])),
            None => return,
        };
        let Some(p) = st.pipes.get_mut(&id) else {
            return;
        };
        if p.reset {
            return;
        }
        let dir = &mut p.dirs[side];
        if cut {
            // Caught in the air by a partition: it waits for the heal.
            dir.held.push_back(chunk);
            return;
        }
        match chunk {
            Chunk::Data(bytes) => {
                dir.in_flight -= bytes.len();
                dir.delivered.extend(bytes);
            }
            Chunk::Fin => dir.eof = true,
        }
        dir.wake();
    }
}

impl State {
    fn latency(&mut self, from: IpAddr, to: IpAddr) -> Duration {
        let lo = nanos(self.cfg.latency_min);
        let hi = nanos(self.cfg.latency_max);
        let base = Duration::from_nanos(self.rng.between(lo, hi));
        let extra = self.slow.get(&from).copied().unwrap_or_default()
            + self.slow.get(&to).copied().unwrap_or_default();
        base + extra
    }

    fn reset(&mut self, id: u64) {
        if let Some(p) = self.pipes.get_mut(&id) {
            if !p.reset {
                p.reset = true;
                self.resets += 1;
                for d in &mut p.dirs {
                    d.delivered.clear();
                    d.held.clear();
                    d.in_flight = 0;
                    d.wake();
                }
            }
        }
    }
}

/// A listening socket.
pub struct SimListener {
    net: Net,
    addr: SocketAddr,
}

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimListener({})", self.addr)
    }
}

impl SimListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<SimStream> {
        std::future::poll_fn(|cx| {
            let mut st = self.net.lock();
            let Some(l) = st.listeners.get_mut(&self.addr) else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "listener closed",
                )));
            };
            match l.backlog.pop_front() {
                Some(s) => Poll::Ready(Ok(s)),
                None => {
                    l.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        // Dropped outside the lock: its backlog holds streams.
        let gone = self.net.lock().listeners.remove(&self.addr);
        drop(gone);
    }
}

/// One end of a connection.
pub struct SimStream {
    net: Net,
    pipe: u64,
    side: usize,
}

impl std::fmt::Debug for SimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimStream({}:{})", self.pipe, self.side)
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset")
}

impl SimStream {
    /// This connection's id (for a fault injector).
    pub fn pipe(&self) -> u64 {
        self.pipe
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.net.lock().pipes.get(&self.pipe) {
            Some(p) => Ok(p.addrs[1 - self.side]),
            None => Err(reset_error()),
        }
    }

    fn read_into(&self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut st = self.net.lock();
        let Some(p) = st.pipes.get_mut(&self.pipe) else {
            return Poll::Ready(Err(reset_error()));
        };
        if p.reset {
            return Poll::Ready(Err(reset_error()));
        }
        let dir = &mut p.dirs[1 - self.side];
        if !dir.delivered.is_empty() {
            let n = out.len().min(dir.delivered.len());
            for (slot, byte) in out.iter_mut().zip(dir.delivered.drain(..n)) {
                *slot = byte;
            }
            // Room in the window again: a waiting writer may go on.
            if let Some(w) = dir.write_waker.take() {
                w.wake();
            }
            return Poll::Ready(Ok(n));
        }
        if dir.eof || out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        dir.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn write_from(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.net.lock();
        let window = st.cfg.window_bytes;
        let Some(p) = st.pipes.get_mut(&self.pipe) else {
            return Poll::Ready(Err(reset_error()));
        };
        if p.reset {
            return Poll::Ready(Err(reset_error()));
        }
        let dir = &mut p.dirs[self.side];
        if dir.reader_gone || dir.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "peer closed the connection",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // The window covers what is in the air and what waits unread at
        // the peer, like a socket's send and receive buffers together.
        let room = window.saturating_sub(dir.in_flight + dir.delivered.len());
        if room == 0 {
            dir.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        dir.in_flight += n;
        let net = self.net.clone();
        net.send_chunk(
            &mut st,
            self.pipe,
            self.side,
            Chunk::Data(buf[..n].to_vec()),
        );
        Poll::Ready(Ok(n))
    }

    fn shutdown_write(&self) -> Poll<io::Result<()>> {
        let mut st = self.net.lock();
        let send = match st.pipes.get_mut(&self.pipe) {
            Some(p) => !std::mem::replace(&mut p.dirs[self.side].fin_sent, true),
            None => false,
        };
        if send {
            let net = self.net.clone();
            net.send_chunk(&mut st, self.pipe, self.side, Chunk::Fin);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let net = self.net.clone();
        let mut st = net.lock();
        net.close_side(&mut st, self.pipe, self.side);
    }
}

impl tokio::io::AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let out = buf.initialize_unfilled();
        match self.read_into(cx, out) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_write()
    }
}

impl futures_io::AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read_into(cx, buf)
    }
}

impl futures_io::AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{spawn_with_output, Sim};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn setup(seed: u64) -> (Sim, Net, SocketAddr) {
        let sim = Sim::new(Rng::new(seed));
        let net = Net::new(
            sim.handle().clone(),
            NetConfig::default(),
            Rng::new(seed + 1),
        );
        (sim, net, SocketAddr::new(ip(1), 7000))
    }

    /// A server on host 1 that echoes every byte until end of stream.
    fn echo_server(sim: &Sim, net: &Net, addr: SocketAddr) {
        let listener = net.listen(1, addr).expect("listen");
        let h = sim.handle().clone();
        sim.handle().spawn_in(1, async move {
            while let Ok(mut s) = listener.accept().await {
                h.spawn(async move {
                    let mut buf = [0u8; 1000];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn bytes_arrive_in_order_after_a_latency() {
        let (mut sim, net, addr) = setup(5);
        echo_server(&sim, &net, addr);
        let n2 = net.clone();
        let out = spawn_with_output(sim.handle(), 2, async move {
            let mut c = n2.connect(2, ip(2), addr).await.expect("connect");
            let sent: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
            c.write_all(&sent).await.expect("write");
            c.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.expect("read");
            back == sent
        });
        assert!(sim.run_until(Duration::from_secs(5), |_| out.is_done()));
        assert_eq!(out.take(), Some(true));
        assert!(sim.now() >= Duration::from_micros(150), "latency was paid");
    }

    #[test]
    fn a_partition_holds_bytes_and_blocks_connects_until_healed() {
        let (mut sim, net, addr) = setup(6);
        echo_server(&sim, &net, addr);
        let n2 = net.clone();
        let conn = spawn_with_output(sim.handle(), 2, async move {
            n2.connect(2, ip(2), addr).await.expect("connect")
        });
        assert!(sim.run_until(Duration::from_secs(1), |_| conn.is_done()));
        let Some(mut c) = conn.take() else {
            panic!("no connection")
        };
        net.cut(ip(1), ip(2));
        let got = spawn_with_output(sim.handle(), 2, async move {
            c.write_all(b"ping").await.expect("write");
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.expect("read");
            b
        });
        let blocked = sim.run_until(Duration::from_secs(2), |_| got.is_done());
        assert!(!blocked, "nothing crosses a cut");
        let n3 = net.clone();
        let refused = spawn_with_output(sim.handle(), 3, async move {
            n3.connect(3, ip(2), addr).await.map(|_| ())
        });
        assert!(sim.run_until(Duration::from_secs(5), |_| refused.is_done()));
        assert_eq!(
            refused.take().and_then(|r| r.err()).map(|e| e.kind()),
            Some(io::ErrorKind::TimedOut)
        );
        net.heal();
        assert!(sim.run_until(Duration::from_secs(10), |_| got.is_done()));
        assert_eq!(got.take(), Some(*b"ping"));
    }

    #[test]
    fn resets_and_killed_peers_end_connections() {
        let (mut sim, net, addr) = setup(7);
        echo_server(&sim, &net, addr);
        let n2 = net.clone();
        let out = spawn_with_output(sim.handle(), 2, async move {
            let mut c = n2.connect(2, ip(2), addr).await.expect("connect");
            let pipe = c.pipe();
            c.write_all(b"x").await.expect("write");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.expect("echo");
            (pipe, c)
        });
        assert!(sim.run_until(Duration::from_secs(1), |_| out.is_done()));
        let Some((pipe, mut c)) = out.take() else {
            panic!("no connection")
        };
        net.reset_pipe(pipe);
        assert_eq!(net.resets(), 1);
        let r = spawn_with_output(sim.handle(), 2, async move {
            let mut b = [0u8; 1];
            c.read(&mut b).await.map_err(|e| e.kind())
        });
        assert!(sim.run_until(Duration::from_secs(1), |_| r.is_done()));
        assert_eq!(r.take(), Some(Err(io::ErrorKind::ConnectionReset)));
        // A killed server: the client reads end of stream, then cannot
        // reconnect.
        let n2 = net.clone();
        let c2 = spawn_with_output(sim.handle(), 2, async move {
            n2.connect(2, ip(2), addr).await.expect("connect")
        });
        assert!(sim.run_until(Duration::from_secs(1), |_| c2.is_done()));
        let Some(mut c2) = c2.take() else {
            panic!("no connection")
        };
        sim.kill(1);
        net.kill_process(1);
        let n2 = net.clone();
        let after = spawn_with_output(sim.handle(), 2, async move {
            let mut b = [0u8; 1];
            let read = c2.read(&mut b).await.map_err(|e| e.kind());
            let again = n2
                .connect(2, ip(2), addr)
                .await
                .map(|_| ())
                .map_err(|e| e.kind());
            (read, again)
        });
        assert!(sim.run_until(Duration::from_secs(2), |_| after.is_done()));
        assert_eq!(
            after.take(),
            Some((Ok(0), Err(io::ErrorKind::ConnectionRefused)))
        );
    }

    #[test]
    fn a_full_window_makes_the_writer_wait() {
        let (mut sim, net, addr) = setup(8);
        // A server that accepts and never reads.
        let listener = net.listen(1, addr).expect("listen");
        let keep = spawn_with_output(sim.handle(), 1, async move { listener.accept().await });
        let n2 = net.clone();
        let wrote = spawn_with_output(sim.handle(), 2, async move {
            let mut c = n2.connect(2, ip(2), addr).await.expect("connect");
            let big = vec![0u8; 3 << 20];
            c.write_all(&big).await.map(|_| ())
        });
        let done = sim.run_until(Duration::from_secs(5), |_| wrote.is_done());
        assert!(!done, "3 MiB cannot be in flight in a 1 MiB window");
        assert!(keep.is_done());
    }
}
