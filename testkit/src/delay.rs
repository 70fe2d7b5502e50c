//! A TCP proxy that delays every byte by a fixed one-way time in each
//! direction, keeping order: a stand-in for a network round trip between
//! hosts where the kernel has no `netem` (this machine's kernel is built
//! without CONFIG_NET_SCH_NETEM, so `tc qdisc ... netem` is refused).
//!
//! One proxy stands in front of each node port; every connection to that
//! node (from a client or from a peer) goes through it, so every round
//! trip to a node costs `2 x one_way` more than loopback, for every system
//! alike.
//!
//! **Why threads, not tokio timers.** tokio's timer wheel ticks in whole
//! milliseconds and rounds a sleep up to the next tick, so a 250 us delay
//! would come out as 1-2 ms. Each direction of a connection here has a
//! reader thread that stamps every chunk with its due time and a writer
//! thread that `nanosleep`s until then (high-resolution timers, with the
//! thread's timer slack set to 1 ns), which keeps the delay within tens of
//! microseconds of what was asked on an idle machine. A loaded machine can
//! only make it longer, for every system alike.
//!
//! Even so a sleep here wakes some 50-100 us late (the VM's timer and the
//! scheduler), which would charge each hop more than it asked, and a Raft
//! append (two hops) twice what a trilog append (one hop) pays. So each
//! process measures once how late a sleep wakes ([`sleep_lateness`]) and
//! sleeps that much less; [`observed`] reports the one-way delay chunks
//! really got, from arrival at the proxy to their write onward.
//!
//! [`DelayProxy::set_extra`] slows one proxy down further, in both
//! directions, from the next chunk on: a slow node (a congested link, a
//! busy host) for the benchmarks that run with one. Chunks delayed by it
//! are left out of [`observed`], which stays the base delay.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Bytes read at a time: a chunk is delayed as a unit.
const CHUNK_BYTES: usize = 64 * 1024;

/// Sleeps timed to measure how late a sleep wakes.
const CALIBRATION_SLEEPS: usize = 40;
/// The sleep timed (about a 500 us round trip's half).
const CALIBRATION_SLEEP_US: u64 = 250;

/// Chunks forwarded and their total delay, over every proxy of the
/// process (the systems of a comparison run one at a time).
static FORWARDED_CHUNKS: AtomicU64 = AtomicU64::new(0);
static FORWARDED_DELAY_NS: AtomicU64 = AtomicU64::new(0);

/// Chunks forwarded since the last [`reset_observed`] and their mean
/// one-way delay (arrival to write), over all proxies of this process.
pub fn observed() -> (u64, Duration) {
    let n = FORWARDED_CHUNKS.load(Ordering::Relaxed);
    let ns = FORWARDED_DELAY_NS.load(Ordering::Relaxed);
    (n, Duration::from_nanos(ns.checked_div(n).unwrap_or(0)))
}

/// Starts [`observed`] over.
pub fn reset_observed() {
    FORWARDED_CHUNKS.store(0, Ordering::Relaxed);
    FORWARDED_DELAY_NS.store(0, Ordering::Relaxed);
}

/// How late a sleep of this process wakes: the median of a few timed
/// sleeps, measured once (about 10 ms) on a thread with precise timers.
pub fn sleep_lateness() -> Duration {
    static LATENESS: OnceLock<Duration> = OnceLock::new();
    *LATENESS.get_or_init(|| {
        let measure = || {
            precise_timers();
            let asked = Duration::from_micros(CALIBRATION_SLEEP_US);
            let mut late: Vec<Duration> = (0..CALIBRATION_SLEEPS)
                .map(|_| {
                    let t0 = Instant::now();
                    std::thread::sleep(asked);
                    t0.elapsed().saturating_sub(asked)
                })
                .collect();
            late.sort();
            late[late.len() / 2]
        };
        std::thread::spawn(measure).join().unwrap_or(Duration::ZERO)
    })
}

/// A running proxy; dropping it stops accepting (open connections end when
/// either side closes).
#[derive(Debug)]
pub struct DelayProxy {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Extra delay each way, in ns, shared by every connection.
    extra_ns: Arc<AtomicU64>,
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_millis(100));
    }
}

impl DelayProxy {
    /// Listens on `listen` (port 0: any) and forwards to `target`, each
    /// direction delayed by `one_way`. Async only so that callers in a
    /// runtime can treat it like the other starts; it runs on threads of
    /// its own.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        one_way: Duration,
    ) -> std::io::Result<DelayProxy> {
        assert!(
            listen.ip().is_loopback() && target.ip().is_loopback(),
            "the kit stays on loopback: {listen} -> {target}"
        );
        let listener = TcpListener::bind(listen)?;
        let listen = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let extra_ns = Arc::new(AtomicU64::new(0));
        let delays = Delays {
            base: one_way,
            extra_ns: extra_ns.clone(),
        };
        std::thread::Builder::new()
            .name(format!("delay-{}", listen.port()))
            .spawn(move || accept_loop(listener, target, delays, s))?;
        Ok(DelayProxy {
            listen,
            target,
            stop,
            extra_ns,
        })
    }

    /// Adds `extra` to the delay each way, from the next chunk read on, on
    /// every connection through this proxy (zero: back to the base).
    pub fn set_extra(&self, extra: Duration) {
        let ns = u64::try_from(extra.as_nanos()).unwrap_or(u64::MAX);
        self.extra_ns.store(ns, Ordering::SeqCst);
    }
}

/// The base delay of a proxy and its adjustable extra.
#[derive(Clone)]
struct Delays {
    base: Duration,
    extra_ns: Arc<AtomicU64>,
}

impl Delays {
    fn extra(&self) -> Duration {
        Duration::from_nanos(self.extra_ns.load(Ordering::Relaxed))
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, delays: Delays, stop: Arc<AtomicBool>) {
    for inbound in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else {
            continue;
        };
        let Ok(outbound) = TcpStream::connect(target) else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (Ok(i2), Ok(o2)) = (inbound.try_clone(), outbound.try_clone()) else {
            continue;
        };
        let _ = spawn_direction(inbound, o2, delays.clone());
        let _ = spawn_direction(outbound, i2, delays.clone());
    }
}

/// Copies `from` to `to`, each chunk leaving `delay` after it arrived: a
/// reader thread and a writer thread joined by a queue of due chunks.
fn spawn_direction(mut from: TcpStream, mut to: TcpStream, delays: Delays) -> std::io::Result<()> {
    // (due, extra delay it got, bytes)
    let (tx, rx) = mpsc::channel::<(Instant, Duration, Vec<u8>)>();
    let delay = delays.base;
    let lateness = sleep_lateness();
    std::thread::Builder::new()
        .name("delay-write".into())
        .spawn(move || {
            precise_timers();
            while let Ok((due, extra, chunk)) = rx.recv() {
                let wait = due.saturating_duration_since(Instant::now());
                if wait > lateness {
                    std::thread::sleep(wait - lateness);
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
                if !extra.is_zero() {
                    continue;
                }
                let arrived = due - delay;
                FORWARDED_CHUNKS.fetch_add(1, Ordering::Relaxed);
                FORWARDED_DELAY_NS
                    .fetch_add(arrived.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    std::thread::Builder::new()
        .name("delay-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let extra = delays.extra();
                        if tx
                            .send((Instant::now() + delay + extra, extra, buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = from.shutdown(Shutdown::Read);
        })?;
    Ok(())
}

/// Asks the kernel to wake this thread's sleeps on time rather than up to
/// 50 us late (the default timer slack).
fn precise_timers() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
    // slack; it takes an integer argument and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_in_order_and_delays_each_way() {
        let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().expect("accept");
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).expect("read");
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).expect("write");
            }
        });
        let one_way = Duration::from_millis(20);
        let proxy = DelayProxy::start("127.0.0.1:0".parse().expect("addr"), echo_addr, one_way)
            .await
            .expect("proxy");
        let mut c = TcpStream::connect(proxy.listen).expect("connect");
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        for i in 0..50u8 {
            c.write_all(&[i]).expect("write");
        }
        while got.len() < 50 {
            let mut b = [0u8; 64];
            let n = c.read(&mut b).expect("read");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&b[..n]);
        }
        // Order kept; and no byte came back before both delays passed,
        // less what the proxy takes off for its sleeps' lateness (a lower
        // bound only: a slow machine can only add to it).
        assert_eq!(got, (0..50u8).collect::<Vec<_>>());
        let floor = one_way.saturating_sub(sleep_lateness()) * 2;
        assert!(t0.elapsed() >= floor, "{:?}", t0.elapsed());

        // Slowed: a round trip now takes the extra twice more.
        let extra = Duration::from_millis(30);
        proxy.set_extra(extra);
        let t1 = std::time::Instant::now();
        c.write_all(&[7]).expect("write");
        let mut b = [0u8; 1];
        c.read_exact(&mut b).expect("read");
        assert_eq!(b, [7]);
        let slowed = (one_way + extra).saturating_sub(sleep_lateness()) * 2;
        assert!(t1.elapsed() >= slowed, "{:?}", t1.elapsed());
    }
}
