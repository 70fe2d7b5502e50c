//! The latency floor of one append at queue depth 1, measured in the same
//! run as the systems: one network round trip (through the same delay
//! proxies the nodes sit behind, or plain loopback) plus one durable 4 KiB
//! write on the same disk (fio). No replicated log can acknowledge faster:
//! the producer's bytes must reach a replica and be on its disk, and the
//! answer must come back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trilog_testkit::delay::DelayProxy;

use crate::fio::{fio_durable_write, FioError};

/// The floor, as the JSON report carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The median round trip of a 4 KiB message and a small answer.
    pub rtt_us: u64,
    /// The median of a 4 KiB direct write plus its fdatasync (fio).
    pub durable_write_p50_us: u64,
    /// `rtt_us + durable_write_p50_us`.
    pub p50_us: u64,
}

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("round trip: {0}")]
    Net(#[from] std::io::Error),
    #[error("durable write: {0}")]
    Fio(#[from] FioError),
}

/// Round trips timed for the median.
const ROUND_TRIPS: usize = 400;
const REQUEST_BYTES: usize = 4096;
/// An append's answer is small; so is this one.
const ANSWER_BYTES: usize = 64;

/// Measures the floor: round trips through a delay proxy adding
/// `rtt_us / 2` each way (none: plain loopback), then fio for
/// `fio_seconds` in `dir`.
pub async fn measure(
    rtt_us: Option<u64>,
    dir: &Path,
    fio_seconds: u64,
) -> Result<Floor, FloorError> {
    let rtt_us = round_trip_p50_us(rtt_us).await?;
    let dir = dir.to_path_buf();
    let durable = tokio::task::spawn_blocking(move || fio_durable_write(&dir, fio_seconds))
        .await
        .map_err(|e| FloorError::Net(std::io::Error::other(e)))??;
    let durable_write_p50_us = durable.p50_us();
    Ok(Floor {
        rtt_us,
        durable_write_p50_us,
        p50_us: rtt_us + durable_write_p50_us,
    })
}

/// The median round trip of [`REQUEST_BYTES`] out and [`ANSWER_BYTES`]
/// back to an echoing peer on loopback, through a delay proxy if asked.
async fn round_trip_p50_us(rtt_us: Option<u64>) -> std::io::Result<u64> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = TcpListener::bind(loopback).await?;
    let peer = listener.local_addr()?;
    let answering = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut request = vec![0u8; REQUEST_BYTES];
        let answer = [7u8; ANSWER_BYTES];
        for _ in 0..ROUND_TRIPS {
            s.read_exact(&mut request).await?;
            s.write_all(&answer).await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let proxy = match rtt_us {
        Some(us) => Some(DelayProxy::start(loopback, peer, Duration::from_micros(us) / 2).await?),
        None => None,
    };
    let target = proxy.as_ref().map_or(peer, |p| p.listen);
    let mut s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    let request = vec![1u8; REQUEST_BYTES];
    let mut answer = [0u8; ANSWER_BYTES];
    let mut took = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        s.write_all(&request).await?;
        s.read_exact(&mut answer).await?;
        took.push(started.elapsed());
    }
    answering.await.map_err(std::io::Error::other)??;
    Ok(median(&mut took).as_micros() as u64)
}

fn median(samples: &mut [Duration]) -> Duration {
    assert!(!samples.is_empty(), "a median of nothing");
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_sample() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(&mut [ms(9)]), ms(9));
    }

    #[tokio::test]
    async fn a_proxied_round_trip_takes_at_least_the_delay_asked() {
        // The proxy's delay is a floor on every round trip: a property of
        // what is measured, not a timing of the machine.
        let plain = round_trip_p50_us(None).await.expect("loopback");
        let proxied = round_trip_p50_us(Some(2_000))
            .await
            .expect("through a proxy");
        assert!(proxied >= 2_000, "{proxied} us");
        assert!(
            plain < proxied,
            "{plain} us on loopback, {proxied} us proxied"
        );
    }
}
