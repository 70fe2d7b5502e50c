//! trilog-bench: trilog's own tools, run from the `trilog-bench` binary:
//! the quickstart, the chaos run, the load generator and the comparison
//! with the baselines (`trilog-baselines`: Raft, etcd), their reports
//! (table, JSON with serde, SVG with plotters), the throughput run against
//! fio (whose JSON output is read with serde) and the overhead probe.
//!
//! Guarantees:
//!
//! - Every system is driven by the same load generator ([`load`]) through
//!   [`load::Target`], with the same payloads and concurrency, and none
//!   acknowledges an append before the replicas it waits for fsynced it:
//!   their numbers compare.
//! - Every report starts with the machine it ran on ([`machine`]) and the
//!   command; the comparison keeps each system's raw histogram on request.
//! - The quickstart and the chaos run check every entry they read back
//!   against what was acknowledged, and fail on anything lost, duplicated,
//!   out of order or made up; the chaos run's faults are a function of its
//!   seed.
//!
//! Clusters of real processes, proxies, the writers, the reader and the
//! checks come from `trilog-testkit`. The binary also carries the log node
//! and the Raft baseline's node as hidden subcommands (`node`,
//! `raft-node`), so a fresh clone needs this one binary; its integration
//! tests (`tests/`) run trilog end to end on processes of it.

pub mod chaos;
pub mod compare;
pub mod cpu;
pub mod fio;
pub mod floor;
pub mod latency;
pub mod load;
pub mod machine;
pub mod overhead;
pub mod quickstart;
pub mod report;
pub mod scale;
pub mod targets;
pub mod throughput;
