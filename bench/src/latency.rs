//! Latency histograms and their table.

use hdrhistogram::Histogram;

/// A histogram of microseconds, 1 us to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 100_000_000, 3) {
        Ok(h) => h,
        Err(e) => panic!("fixed histogram bounds are valid: {e}"),
    }
}

/// Records `us`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let us = us.clamp(1, h.high());
    h.saturating_record(us);
}

/// The percentiles every report prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    Summary {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean(),
    }
}

/// A fixed-width table row per named histogram.
pub fn table(rows: &[(&str, Summary)]) -> String {
    let mut out = format!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "latency (us)", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, s) in rows {
        out.push_str(&format!(
            "{:<24} {:>9} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            name, s.count, s.mean_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert!((495..=505).contains(&s.p50_us), "{s:?}");
        assert!((985..=995).contains(&s.p99_us), "{s:?}");
        assert!(table(&[("x", s)]).contains("p99.9"));
    }
}
