//! trilog-sim: the deterministic simulator of trilog's shipped code.
//!
//! The simulator runs the node's and the client's real code on one thread,
//! from one seed, with every source of nondeterminism (network, clock,
//! disk, metadata store) replaced by a simulated one that can fail on
//! purpose; a failing seed replays exactly.
//!
//! - [`executor::Sim`]: a deterministic executor with a virtual clock; tasks
//!   belong to processes that can be killed.
//! - [`net::Net`]: a simulated TCP network (latency, resets, partitions,
//!   killed peers, back-pressure).
//! - [`meta::SimMeta`]: the embedded store's pure state behind the metadata
//!   interface, over a link that is slow, loses calls and their answers
//!   (unknown outcomes) and goes down.
//! - [`disk::SimDisk`]: an in-memory [`trilog_node::storage::Disk`] that
//!   keeps only what was synced across a crash, tears unsynced writes at
//!   sector boundaries, flips bits and fills up, so the storage layer's
//!   recovery is checked against every crash a real disk can produce.
//! - [`rng::Rng`]: the one source of randomness, seeded.
//!
//! Guarantees: the same seed and the same calls give the same results,
//! byte for byte, on every machine; nothing here reads a clock, spawns a
//! thread or touches the real file system.

pub mod actors;
pub mod check;
pub mod client;
pub mod disk;
pub mod executor;
pub mod faults;
pub mod logs;
pub mod meta;
pub mod net;
pub mod node;
pub mod rng;
pub mod rogue;
pub mod run;
pub mod seeds;

pub use disk::SimDisk;
pub use rng::Rng;
