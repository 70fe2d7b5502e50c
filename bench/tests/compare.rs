//! The comparison end to end at small scale: all four systems started as
//! real processes behind delay proxies, one after another, each loaded
//! briefly, healthy and with a node slowed; the JSON report names them
//! all, each with appends done, and trilog's log left the slowed node.

use std::path::PathBuf;
use std::time::Duration;

use trilog_baselines::raft::RaftNodeCommand;
use trilog_bench::compare::{self, Commands, System};
use trilog_bench::load::{LoadConfig, Mode};
use trilog_bench::report::{self, Report, SystemResult};
use trilog_testkit::node_command::NodeCommand;

fn commands() -> Commands {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_trilog-bench"));
    Commands {
        node: NodeCommand::subcommand(exe.clone(), "node"),
        raft: RaftNodeCommand {
            program: exe,
            prefix: vec!["raft-node".into()],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_system_runs_behind_delay_proxies_and_is_reported() {
    let load = LoadConfig {
        mode: Mode::Closed { writers: 4 },
        payload_bytes: 256,
        batch: 1,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(300),
        progress: false,
    };
    let rtt_us = Some(400);
    let hist = tempfile::tempdir().expect("dir");
    let slow = Some(Duration::from_millis(5));
    let outcomes = compare::compare(
        &System::ALL,
        &commands(),
        rtt_us,
        slow,
        &load,
        Some(hist.path()),
    )
    .await
    .expect("every system ran (etcd needs apt-get install etcd-server)");
    let results: Vec<SystemResult> = outcomes.iter().map(|o| o.result.clone()).collect();
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    let all = [
        "trilog",
        "trilog-slow",
        "raft3",
        "raft3-slow",
        "raft5",
        "raft5-slow",
        "etcd3",
        "etcd3-slow",
    ];
    assert_eq!(names, all);
    for o in &outcomes {
        let slowed = o.result.name.ends_with("-slow");
        match &o.slowed {
            Some(Ok(s)) => assert!(slowed, "{}: slowed {}", o.result.name, s.which),
            Some(Err(why)) => panic!("{}: no node slowed: {why}", o.result.name),
            None => assert!(!slowed, "{}: nothing slowed", o.result.name),
        }
    }
    // trilog's producer left the slow replica: a 5 ms slowdown never
    // reaches the ack timeout, so only the slow switch moves the log.
    let trilog_slow = outcomes[1].slowed.clone().and_then(Result::ok);
    assert!(
        trilog_slow.as_ref().and_then(|s| s.left_after).is_some(),
        "trilog-slow: the log stayed on the slowed node: {trilog_slow:?}"
    );
    for o in &outcomes {
        assert!(o.result.ops_per_s > 0.0, "{}: no appends", o.result.name);
        assert_eq!(o.result.errors, 0, "{}", o.result.name);
        // Every append crossed the proxies: they forwarded something.
        let (chunks, _) = o.proxied.expect("proxied run");
        assert!(
            chunks > 0,
            "{}: nothing went through the proxies",
            o.result.name
        );
        assert!(hist.path().join(format!("{}.hdr", o.result.name)).exists());
    }

    let config = compare::report_config(rtt_us, &load, "test");
    let json = Report::new(config, &results).to_json().expect("JSON");
    let read = Report::from_json(&json).expect("the report reads back");
    let names: Vec<&str> = read.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, all, "{json}");
    assert_eq!(read.config.rtt_us, 400, "{json}");
    assert!(read.systems.iter().all(|s| s.ops_per_s > 0.0), "{json}");
    let svg = report::svg("t", &results).expect("plot");
    for name in names {
        assert!(
            svg.contains(&format!("{name} (")),
            "{name} not in the legend"
        );
    }
}
