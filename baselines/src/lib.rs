//! trilog-baselines: the systems trilog is compared with, each a cluster
//! of real processes on loopback with the durability trilog has (no append
//! acknowledged before the replicas it waits for fsynced it).
//!
//! - [`raft`]: a replicated log on openraft 0.9 (`raft3`, `raft5`), its
//!   nodes run as `trilog-bench raft-node` or `trilog-raft-node`, and its
//!   client, which appends each payload exactly once across retries.
//! - [`etcd`]: a cluster of Debian's `etcd` and etcd used as a log, a put
//!   per entry.
//!
//! The baselines use none of trilog's protocol, client or node; what they
//! share with trilog's own tools (free ports, delay proxies, the wait with
//! a deadline, where clusters live) comes from `trilog-testkit`.
//! `trilog-bench` drives both with its load generator. Every process
//! started belongs to a cluster handle that kills and reaps it when
//! dropped.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod raft;
