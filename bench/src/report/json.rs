//! The comparison's JSON report: what ran ([`ReportConfig`]) and each
//! system's figures ([`SystemSummary`]), as
//! `{"config": {...}, "systems": [{"name", "nodes", "p50_us", ...}]}`.
//! The committed `docs/compare-*.json` are such documents: the types
//! read them back (a test checks every one of them).

use serde::{Deserialize, Serialize};

use super::{ReportError, SystemResult};
use crate::floor::Floor;

/// How the load was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Writers, each with one append in flight.
    Closed,
    /// Appends at a fixed rate, with a bound on those in flight.
    Open,
}

/// What the comparison ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportConfig {
    /// The command line of the run.
    pub command: String,
    /// The machine it ran on (`crate::machine`).
    pub machine: String,
    /// The simulated round trip to every node; 0 for none.
    pub rtt_us: u64,
    /// How the nodes were reached, in words.
    pub network: String,
    pub mode: LoadMode,
    /// Writers of a closed load, or the bound on appends in flight of an
    /// open one.
    pub concurrency: usize,
    /// The offered rate of an open load; 0 for a closed one.
    pub rate_per_s: f64,
    pub payload_bytes: usize,
    /// Entries per append.
    pub batch: usize,
    /// Measured time per system.
    pub duration_s: f64,
    /// Warmup per system, not measured.
    pub warmup_s: f64,
    /// What each system waits for before it acknowledges, in words.
    pub durability: String,
}

/// One system's figures: a [`SystemResult`] without its histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemSummary {
    pub name: String,
    pub nodes: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Appends acknowledged per second, to a tenth.
    pub ops_per_s: f64,
    pub errors: u64,
}

impl From<&SystemResult> for SystemSummary {
    fn from(r: &SystemResult) -> SystemSummary {
        SystemSummary {
            name: r.name.clone(),
            nodes: r.nodes,
            p50_us: r.p50_us,
            p90_us: r.p90_us,
            p99_us: r.p99_us,
            p999_us: r.p999_us,
            max_us: r.max_us,
            // A tenth is all a rate measured over seconds can tell.
            ops_per_s: (r.ops_per_s * 10.0).round() / 10.0,
            errors: r.errors,
        }
    }
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub config: ReportConfig,
    pub systems: Vec<SystemSummary>,
    /// The latency floor measured in the same run (`compare --concurrency
    /// 1`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
}

impl Report {
    pub fn new(config: ReportConfig, results: &[SystemResult]) -> Report {
        Report {
            config,
            systems: results.iter().map(SystemSummary::from).collect(),
            floor: None,
        }
    }

    /// The report with the run's latency floor.
    pub fn with_floor(mut self, floor: Option<Floor>) -> Report {
        self.floor = floor;
        self
    }

    /// The document, indented, with a final newline.
    pub fn to_json(&self) -> Result<String, ReportError> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// Reads a document written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Report, ReportError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The figures of system `name`, if it ran.
    pub fn system(&self, name: &str) -> Option<&SystemSummary> {
        self.systems.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::result;

    fn config() -> ReportConfig {
        ReportConfig {
            command: "trilog-bench compare --note \"a\\b\"".into(),
            machine: "2 cpus".into(),
            rtt_us: 500,
            network: "loopback".into(),
            mode: LoadMode::Closed,
            concurrency: 16,
            rate_per_s: 0.0,
            payload_bytes: 256,
            batch: 1,
            duration_s: 1.5,
            warmup_s: 0.5,
            durability: "fsync".into(),
        }
    }

    #[test]
    fn a_report_reads_back_as_written() {
        let report = Report::new(config(), &[result("trilog", 100), result("raft3", 200)]);
        let text = report.to_json().expect("serializable");
        assert!(text.ends_with("}\n"), "{text}");
        let back = Report::from_json(&text).expect("reads back");
        assert_eq!(back, report);
        assert_eq!(back.config.command, "trilog-bench compare --note \"a\\b\"");
        let trilog = back.system("trilog").expect("trilog ran");
        assert_eq!((trilog.p50_us, trilog.nodes), (599, 3));
        assert_eq!(trilog.ops_per_s, 1234.5);
        assert!(back.system("etcd3").is_none());
    }

    #[test]
    fn the_fields_keep_their_names_and_the_mode_its_spelling() {
        let text = Report::new(config(), &[result("trilog", 100)])
            .to_json()
            .expect("serializable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["config"]["mode"], "closed");
        assert_eq!(value["config"]["rtt_us"], 500);
        let system = &value["systems"][0];
        for field in [
            "name",
            "nodes",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "ops_per_s",
            "errors",
        ] {
            assert!(!system[field].is_null(), "{field} missing in {text}");
        }
    }

    #[test]
    fn the_floor_is_written_only_when_measured() {
        let without = Report::new(config(), &[result("trilog", 100)]);
        let text = without.to_json().expect("serializable");
        assert!(!text.contains("floor"), "{text}");
        assert_eq!(Report::from_json(&text).expect("reads").floor, None);
        let floor = Floor {
            rtt_us: 703,
            durable_write_p50_us: 194,
            p50_us: 897,
        };
        let with = without.with_floor(Some(floor));
        let text = with.to_json().expect("serializable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["floor"]["rtt_us"], 703, "{text}");
        assert_eq!(value["floor"]["durable_write_p50_us"], 194, "{text}");
        assert_eq!(value["floor"]["p50_us"], 897, "{text}");
        assert_eq!(Report::from_json(&text).expect("reads").floor, Some(floor));
    }

    #[test]
    fn the_rate_is_kept_to_a_tenth() {
        let mut r = result("trilog", 100);
        r.ops_per_s = 6816.6349;
        assert_eq!(SystemSummary::from(&r).ops_per_s, 6816.6);
    }

    #[test]
    fn the_committed_reports_read() {
        for (file, text) in [
            (
                "compare-loopback.json",
                include_str!("../../../docs/compare-loopback.json"),
            ),
            (
                "compare-rtt500.json",
                include_str!("../../../docs/compare-rtt500.json"),
            ),
            (
                "compare-rtt500-1writer.json",
                include_str!("../../../docs/compare-rtt500-1writer.json"),
            ),
        ] {
            let report = Report::from_json(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let names: Vec<&str> = report.systems.iter().map(|s| s.name.as_str()).collect();
            assert!(names.contains(&"trilog"), "{file}: {names:?}");
            assert_eq!(report.config.mode, LoadMode::Closed, "{file}");
            assert!(
                report.systems.iter().all(|s| s.p50_us <= s.p99_us),
                "{file}"
            );
        }
    }
}
