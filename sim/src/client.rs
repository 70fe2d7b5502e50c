//! The client runtime of a simulated process: the client library's own
//! producer, consumer and takeover drivers (`trilog_client`) run on it,
//! connecting over the simulated network from the process's host, on the
//! virtual clock, with tasks spawned into the process (so killing the
//! process kills the client).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use trilog_client::runtime::{BoxFuture, Connection, Runtime};

use crate::executor::{ProcessId, SimHandle};
use crate::net::Net;
use crate::rng::Rng;

/// See the module doc.
pub struct SimClientRuntime {
    sim: SimHandle,
    net: Net,
    process: ProcessId,
    host: IpAddr,
    rng: Mutex<Rng>,
}

impl std::fmt::Debug for SimClientRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SimClientRuntime(process {}, {})",
            self.process, self.host
        )
    }
}

impl SimClientRuntime {
    pub fn new(
        sim: SimHandle,
        net: Net,
        process: ProcessId,
        host: IpAddr,
        rng: Rng,
    ) -> Arc<SimClientRuntime> {
        Arc::new(SimClientRuntime {
            sim,
            net,
            process,
            host,
            rng: Mutex::new(rng),
        })
    }
}

impl Runtime for SimClientRuntime {
    fn now(&self) -> Duration {
        self.sim.now()
    }

    fn sleep(&self, after: Duration) -> BoxFuture<()> {
        Box::pin(self.sim.sleep(after))
    }

    fn spawn(&self, task: BoxFuture<()>) {
        self.sim.spawn_in(self.process, task);
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<Box<dyn Connection>>> {
        let net = self.net.clone();
        let (process, host) = (self.process, self.host);
        Box::pin(async move {
            let stream = net.connect(process, host, addr).await?;
            Ok(Box::new(stream) as Box<dyn Connection>)
        })
    }

    fn random(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64()
    }
}
