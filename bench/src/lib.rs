//! trilog-bench: the quickstart, the load generator and the baselines,
//! and the local cluster of real node processes they run on.

pub mod chaos;
pub mod cluster;
pub mod compare;
pub mod delay;
pub mod etcd;
pub mod latency;
pub mod load;
pub mod overhead;
pub mod producer_proc;
pub mod proxy;
pub mod quickstart;
pub mod raft;
pub mod reader;
pub mod report;
pub mod throughput;
pub mod verify;
pub mod writers;
