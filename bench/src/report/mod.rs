//! The comparison's outputs: a table ([`table`]), a JSON document
//! ([`json`], with serde) and an SVG plot of the latency percentile curves
//! of every system ([`plot`], with plotters' SVG backend).

pub mod json;
pub mod plot;
pub mod scale_plot;

use std::fmt::Write as _;

use hdrhistogram::Histogram;

pub use json::{LoadMode, Report, ReportConfig, SystemSummary};
pub use plot::svg;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("JSON report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("plot: {0}")]
    Plot(String),
}

/// One system's result in a comparison.
#[derive(Debug, Clone)]
pub struct SystemResult {
    pub name: String,
    pub nodes: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub ops_per_s: f64,
    pub errors: u64,
    pub histogram: Histogram<u64>,
}

impl SystemResult {
    pub fn new(
        name: &str,
        nodes: usize,
        h: Histogram<u64>,
        ops_per_s: f64,
        errors: u64,
    ) -> SystemResult {
        SystemResult {
            name: name.to_string(),
            nodes,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            ops_per_s,
            errors,
            histogram: h,
        }
    }
}

/// A fixed-width table of the results.
pub fn table(results: &[SystemResult]) -> String {
    let mut out = format!(
        "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}\n",
        "system", "nodes", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "ops/s", "errors"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11.0} {:>7}",
            r.name,
            r.nodes,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.ops_per_s,
            r.errors
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::latency::{new_histogram, record};

    /// A result of 1000 appends of `base..base + 1000` us.
    pub(crate) fn result(name: &str, base: u64) -> SystemResult {
        let mut h = new_histogram();
        for i in 0..1000 {
            record(&mut h, base + i);
        }
        SystemResult::new(name, 3, h, 1234.5, 0)
    }

    #[test]
    fn the_table_has_a_line_per_system_under_its_header() {
        let t = table(&[result("trilog", 100), result("raft3", 200)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("system"), "{t}");
        assert!(lines[1].starts_with("trilog"), "{t}");
        assert!(lines[2].starts_with("raft3"), "{t}");
    }
}
