//! trilog-testkit: starting and controlling clusters of real processes on
//! loopback, for the tests and for the tools of `trilog-bench`, and what
//! they share to check a log.
//!
//! **Processes and network** ([`cluster`], [`node_command`], [`ports`],
//! [`proxy`], [`delay`]): a cluster of log node processes, each started
//! from a [`node_command::NodeCommand`] with a data directory of its own,
//! that a test kills (SIGKILL), restarts, pauses (SIGSTOP) and resumes;
//! TCP proxies in front of nodes that cut them off the network (a
//! partition) and heal them; delay proxies that add a round trip.
//!
//! **In process** (`in_process`, with the feature `in-process`): the
//! embedded metadata store and log nodes as threads of the calling
//! process, for examples and tests that need a real cluster but no node
//! binary.
//!
//! **Load and checks** ([`payload`], [`writers`], [`ledger`], [`reader`],
//! [`verify`], [`producer_proc`]): payloads that name themselves, workers
//! that append them through a replaceable producer and file every outcome,
//! a consumer that tails the log beside them, and the check of what was
//! read against what was acknowledged. They are here rather than in
//! `trilog-bench` because the integration tests of both `trilog-bench` and
//! `trilog-baselines` use them, and `trilog-baselines` sits below
//! `trilog-bench`.
//!
//! Guarantees:
//!
//! - Everything listens and connects on 127.0.0.1 only.
//! - A process the kit starts belongs to a handle that kills and reaps it
//!   when dropped; a cluster's directory is a temporary one, removed with
//!   it.
//! - Every wait is for a condition, with a deadline ([`wait::wait_for`]);
//!   nothing sleeps in the hope that a state was reached.
//! - A node keeps its port across restarts: ports are drawn below the
//!   kernel's ephemeral range ([`ports::NODE_PORTS`]).
//! - A partition loses nothing and reorders nothing: what was held is
//!   delivered in order once healed, as TCP would after a real partition;
//!   a delay proxy keeps the order of each direction.
//! - The check counts every committed entry not read back, read twice,
//!   read out of order, or read without having been appended ([`verify`]).
//!
//! Everything async runs on tokio; the cluster's restarts block until the
//! node is ready (call them through `block_in_place` on a multi-threaded
//! runtime under load).

pub mod cluster;
pub mod delay;
pub mod disk_faults;
#[cfg(feature = "in-process")]
pub mod in_process;
pub mod ledger;
pub mod loop_disk;
pub mod node_command;
pub mod payload;
pub mod ports;
pub mod producer_proc;
pub mod proxy;
pub mod reader;
pub mod verify;
pub mod wait;
pub mod writers;
