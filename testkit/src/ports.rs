//! Free loopback ports for the processes the kit starts.

use std::net::TcpListener;

/// Ports for nodes are drawn below the kernel's ephemeral range
/// (32768 and up by default): a port from that range, once its node is
/// killed, may be taken by any outgoing connection's local end, and the
/// restarted node could not bind it again.
pub const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Ports tried before giving up.
const PORT_TRIES_MAX: usize = 1000;

const _: () = assert!(NODE_PORTS.end <= 32_768, "below the ephemeral range");
const _: () = assert!(PORT_TRIES_MAX < (NODE_PORTS.end - NODE_PORTS.start) as usize);

/// Picks a free loopback port for a node, at random in [`NODE_PORTS`].
/// Free when asked: a process that binds it later may find it taken.
pub fn free_port() -> std::io::Result<u16> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..PORT_TRIES_MAX {
        let port = rng.gen_range(NODE_PORTS);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port for a node",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_in_the_range_and_bindable() {
        let port = free_port().expect("a free port");
        assert!(NODE_PORTS.contains(&port));
        TcpListener::bind(("127.0.0.1", port)).expect("still free");
    }
}
