//! trilog-sim: a deterministic simulator of trilog's shipped code.
//!
//! One seeded thread runs a whole cluster: the executor ([`executor`]) with
//! a virtual clock, a simulated network ([`net`]) and the randomness they
//! draw from ([`rng`]).

pub mod executor;
pub mod net;
pub mod rng;
