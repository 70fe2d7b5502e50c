//! The comparison's outputs: a table, a JSON document and an SVG plot of
//! the latency percentile curves of every system, written by hand so they
//! need no plotting or serialization library.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

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

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value for the `config` object: numbers and strings only.
#[derive(Debug, Clone)]
pub enum ConfigValue {
    Num(f64),
    Str(String),
    Bool(bool),
}

/// `{"config": {...}, "systems": [{"name", "nodes", "p50_us", "p99_us",
/// "p999_us", "ops_per_s", ...}]}`.
pub fn json(config: &[(&str, ConfigValue)], results: &[SystemResult]) -> String {
    let mut out = String::from("{\n  \"config\": {");
    for (i, (k, v)) in config.iter().enumerate() {
        let v = match v {
            ConfigValue::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            ConfigValue::Num(n) => format!("{n}"),
            ConfigValue::Str(s) => json_string(s),
            ConfigValue::Bool(b) => b.to_string(),
        };
        let _ = write!(
            out,
            "{}\n    {}: {}",
            if i == 0 { "" } else { "," },
            json_string(k),
            v
        );
    }
    out.push_str("\n  },\n  \"systems\": [");
    for (i, r) in results.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n    {{\"name\": {}, \"nodes\": {}, \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \"ops_per_s\": {:.1}, \"errors\": {}}}",
            if i == 0 { "" } else { "," },
            json_string(&r.name),
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
    out.push_str("\n  ]\n}\n");
    out
}

const COLORS: [&str; 6] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
];

/// The highest percentile plotted, in nines: p99.99.
const NINES_MAX: f64 = 4.0;
/// Points of each curve, evenly spaced in nines.
const CURVE_POINTS: usize = 400;

/// Where the plot's axes are and how a (percentile, latency) maps onto
/// them.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    top: f64,
    pw: f64,
    ph: f64,
    /// The latency axis's ends, whole decades of microseconds.
    ylo: f64,
    yhi: f64,
}

impl Frame {
    /// A frame whose latency axis spans every value of `curves`.
    fn new(curves: &[Vec<(f64, f64)>]) -> Frame {
        let (w, h) = (900.0_f64, 520.0_f64);
        let (left, right, top, bottom) = (80.0, 170.0, 50.0, 60.0);
        // No curve at all: one decade from 1 us (a fold from f64::MAX
        // would make the axis infinite, and drawing its decades endless).
        let values = || curves.iter().flatten().map(|(_, v)| *v);
        let lo = values().reduce(f64::min).unwrap_or(1.0).max(1.0);
        let hi = values().fold(1.0, f64::max);
        Frame {
            w,
            h,
            left,
            top,
            pw: w - left - right,
            ph: h - top - bottom,
            ylo: 10f64.powf(lo.log10().floor()),
            yhi: 10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
        }
    }

    fn x(&self, p: f64) -> f64 {
        self.left + self.pw * ((-(1.0 - p).max(1e-9).log10()) / NINES_MAX).min(1.0)
    }

    fn y(&self, v: f64) -> f64 {
        self.top
            + self.ph
                * (1.0 - (v.log10() - self.ylo.log10()) / (self.yhi.log10() - self.ylo.log10()))
    }
}

/// Each result's latency at [`CURVE_POINTS`] + 1 percentiles from p0 to
/// p99.99: (percentile, microseconds, at least 1).
fn curves(results: &[SystemResult]) -> Vec<Vec<(f64, f64)>> {
    let percentiles: Vec<f64> = (0..=CURVE_POINTS)
        .map(|i| 1.0 - 10f64.powf(-(i as f64) * NINES_MAX / CURVE_POINTS as f64))
        .collect();
    results
        .iter()
        .map(|r| {
            percentiles
                .iter()
                .map(|p| {
                    (
                        *p,
                        r.histogram.value_at_quantile(p.min(0.99999)).max(1) as f64,
                    )
                })
                .collect()
        })
        .collect()
}

/// Latency by percentile, the x axis spaced by "nines" (log of 1/(1-p))
/// from p0 to p99.99, the y axis logarithmic in microseconds.
pub fn svg(title: &str, results: &[SystemResult]) -> String {
    let values = curves(results);
    let f = Frame::new(&values);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        f.w, f.h
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="25" font-size="15" text-anchor="middle">{}</text>"#,
        f.left + f.pw / 2.0,
        xml(title)
    );
    draw_axes(&mut s, &f);
    for (i, (r, pts)) in results.iter().zip(values.iter()).enumerate() {
        draw_curve(&mut s, &f, i, r, pts);
    }
    s.push_str("</svg>\n");
    s
}

/// The grid, the axes' labels and the frame.
fn draw_axes(s: &mut String, f: &Frame) {
    let (left, top, pw, ph) = (f.left, f.top, f.pw, f.ph);
    for (label, nines) in [
        ("p0", 0.0),
        ("p90", 1.0),
        ("p99", 2.0),
        ("p99.9", 3.0),
        ("p99.99", 4.0),
    ] {
        let gx = left + pw * nines / NINES_MAX;
        let _ = writeln!(
            s,
            r##"<line x1="{gx}" y1="{top}" x2="{gx}" y2="{}" stroke="#ddd"/>"##,
            top + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{gx}" y="{}" text-anchor="middle">{label}</text>"#,
            top + ph + 18.0
        );
    }
    let mut decade = f.ylo;
    while decade <= f.yhi * 1.0001 {
        let gy = f.y(decade);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{gy}" x2="{}" y2="{gy}" stroke="#ddd"/>"##,
            left + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            gy + 4.0,
            human_us(decade)
        );
        decade *= 10.0;
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        left + pw / 2.0,
        f.h - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">append latency</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
}

/// Result `i`'s curve and its line in the legend.
fn draw_curve(s: &mut String, f: &Frame, i: usize, r: &SystemResult, pts: &[(f64, f64)]) {
    let color = COLORS[i % COLORS.len()];
    let path: Vec<String> = pts
        .iter()
        .map(|(p, v)| format!("{:.1},{:.1}", f.x(*p), f.y(*v)))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        path.join(" ")
    );
    let ly = f.top + 20.0 + 22.0 * i as f64;
    let _ = writeln!(
        s,
        r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
        f.left + f.pw + 15.0,
        f.left + f.pw + 40.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">{} ({} nodes)</text>"#,
        f.left + f.pw + 46.0,
        ly + 4.0,
        xml(&r.name),
        r.nodes
    );
}

fn human_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{} s", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{} ms", v / 1000.0)
    } else {
        format!("{v} us")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{new_histogram, record};

    fn result(name: &str, base: u64) -> SystemResult {
        let mut h = new_histogram();
        for i in 0..1000 {
            record(&mut h, base + i);
        }
        SystemResult::new(name, 3, h, 1234.5, 0)
    }

    #[test]
    fn json_has_the_fields_and_escapes() {
        let j = json(
            &[
                ("rtt_us", ConfigValue::Num(500.0)),
                ("note", ConfigValue::Str("a\"b".into())),
            ],
            &[result("trilog", 100), result("raft3", 200)],
        );
        for field in [
            "\"config\"",
            "\"systems\"",
            "\"name\": \"trilog\"",
            "\"p50_us\"",
            "\"p99_us\"",
            "\"p999_us\"",
            "\"ops_per_s\": 1234.5",
            "\"nodes\": 3",
            "\"rtt_us\": 500",
            "a\\\"b",
        ] {
            assert!(j.contains(field), "{field} missing in {j}");
        }
    }

    #[test]
    fn svg_of_no_result_is_an_empty_plot() {
        let s = svg("nothing", &[]);
        assert_eq!(s.matches("<polyline").count(), 0);
        assert!(s.contains("1 us") && s.contains("10 us"), "one decade: {s}");
    }

    #[test]
    fn svg_draws_one_curve_per_system() {
        let s = svg(
            "t <x>",
            &[
                result("trilog", 100),
                result("raft3", 200),
                result("raft5", 300),
            ],
        );
        assert_eq!(s.matches("<polyline").count(), 3);
        assert!(s.contains("t &lt;x&gt;"));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }
}
