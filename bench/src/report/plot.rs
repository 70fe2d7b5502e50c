//! The comparison's plot: each system's append latency by percentile, one
//! curve per system, drawn with plotters into an SVG document.
//!
//! The x axis is spaced by "nines" (`-log10(1 - p)`: p90 is 1, p99 is 2)
//! from p0 to p99.99, so the tail gets as much room as the median; the y
//! axis is logarithmic in microseconds, so systems an order of magnitude
//! apart share one plot.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{ReportError, SystemResult};

/// The highest percentile plotted, in nines: p99.99.
const NINES_MAX: f64 = 4.0;
/// Points of each curve, evenly spaced in nines.
const CURVE_POINTS: usize = 400;
/// The plot's size in pixels.
const WIDTH_PX: u32 = 900;
const HEIGHT_PX: u32 = 520;
/// Font sizes, in plotters' units (it draws them at about 0.8 of that
/// many pixels).
const TITLE_FONT: u32 = 20;
const LABEL_FONT: u32 = 15;
/// The legend's column, right of the plot (inside, it would hide the
/// curves of the slowest systems).
const LEGEND_WIDTH_PX: u32 = 170;
/// The first legend line's height, and the step to the next.
const LEGEND_TOP_PX: i32 = 60;
const LEGEND_STEP_PX: i32 = 22;
/// The curves' colours, in the order of the systems (ColorBrewer's Dark2:
/// told apart in print and by most colour-blind readers).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0xe7, 0x29, 0x8a),
    RGBColor(0x66, 0xa6, 0x1e),
    RGBColor(0xe6, 0xab, 0x02),
];

/// Each result's latency at [`CURVE_POINTS`] + 1 points from p0 to
/// p99.99: (nines, microseconds, at least 1 for the log axis).
fn curves(results: &[SystemResult]) -> Vec<Vec<(f64, f64)>> {
    results
        .iter()
        .map(|r| {
            (0..=CURVE_POINTS)
                .map(|i| {
                    let nines = i as f64 * NINES_MAX / CURVE_POINTS as f64;
                    let p = 1.0 - 10f64.powf(-nines);
                    // hdrhistogram's quantile 1.0 is the maximum: stop
                    // just short of it, as the axis does.
                    let us = r.histogram.value_at_quantile(p.min(0.99999)).max(1);
                    (nines, us as f64)
                })
                .collect()
        })
        .collect()
}

/// The latency axis's ends: whole decades of microseconds around every
/// value, at least one decade; 1 to 10 us with no value at all.
fn decades(curves: &[Vec<(f64, f64)>]) -> (f64, f64) {
    let values = || curves.iter().flatten().map(|(_, us)| *us);
    let lo = values().reduce(f64::min).unwrap_or(1.0).max(1.0);
    let hi = values().fold(1.0, f64::max);
    let lo_decade = lo.log10().floor();
    let hi_decade = hi.log10().ceil().max(lo_decade + 1.0);
    (10f64.powf(lo_decade), 10f64.powf(hi_decade))
}

/// `p90` for 1 nine, `p99.9` for 3; between whole nines, the percentile
/// to two decimals.
fn percentile_label(nines: f64) -> String {
    let whole = nines.round();
    if (nines - whole).abs() > 1e-9 || whole < 0.0 {
        return format!("p{:.2}", 100.0 * (1.0 - 10f64.powf(-nines)));
    }
    match whole as usize {
        0 => "p0".into(),
        1 => "p90".into(),
        n => format!("p99{}{}", if n > 2 { "." } else { "" }, "9".repeat(n - 2)),
    }
}

/// Microseconds as `100 us`, `1 ms`, `10 s`.
fn human_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{} ms", us / 1000.0)
    } else {
        format!("{us} us")
    }
}

/// The plot of every result's latency by percentile, titled `title`, as
/// an SVG document.
pub fn svg(title: &str, results: &[SystemResult]) -> Result<String, ReportError> {
    let values = curves(results);
    let (ylo, yhi) = decades(&values);
    let mut out = String::new();
    draw(&mut out, title, results, &values, (ylo, yhi))
        .map_err(|e| ReportError::Plot(e.to_string()))?;
    Ok(out)
}

fn draw(
    out: &mut String,
    title: &str,
    results: &[SystemResult],
    values: &[Vec<(f64, f64)>],
    (ylo, yhi): (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(WIDTH_PX - LEGEND_WIDTH_PX);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", TITLE_FONT))
        .margin(15)
        // Room for the last percentile's label, centred on the edge.
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..NINES_MAX, (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        // A line at each whole nine (p90, p99, ...); between them, lines
        // would only crowd the tail.
        .x_labels(NINES_MAX as usize + 1)
        .x_max_light_lines(0)
        .x_label_formatter(&|n| percentile_label(*n))
        .y_label_formatter(&|us| human_us(*us))
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", LABEL_FONT))
        .x_desc("percentile")
        .y_desc("append latency")
        .draw()?;
    let label_style = ("sans-serif", LABEL_FONT)
        .into_text_style(&legend)
        .pos(Pos::new(HPos::Left, VPos::Center));
    // A slowed run (`raft3-slow`) takes its system's colour, dashed.
    let mut systems: Vec<&str> = Vec::new();
    for (i, (r, points)) in results.iter().zip(values).enumerate() {
        let (system, slowed) = match r.name.strip_suffix("-slow") {
            Some(base) => (base, true),
            None => (r.name.as_str(), false),
        };
        let k = match systems.iter().position(|s| *s == system) {
            Some(k) => k,
            None => {
                systems.push(system);
                systems.len() - 1
            }
        };
        let color = PALETTE[k % PALETTE.len()];
        let y = LEGEND_TOP_PX + LEGEND_STEP_PX * i as i32;
        if slowed {
            chart.draw_series(DashedLineSeries::new(
                points.iter().copied(),
                6,
                4,
                color.stroke_width(2),
            ))?;
            legend.draw(&DashedPathElement::new(
                [(5, y), (30, y)],
                6,
                4,
                color.stroke_width(3),
            ))?;
        } else {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?;
            legend.draw(&PathElement::new([(5, y), (30, y)], color.stroke_width(3)))?;
        }
        legend.draw(&Text::new(
            format!("{} ({} nodes)", r.name, r.nodes),
            (36, y),
            label_style.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::result;

    #[test]
    fn whole_nines_are_named_as_percentiles() {
        let labels: Vec<String> = (0..=4).map(|n| percentile_label(n as f64)).collect();
        assert_eq!(labels, ["p0", "p90", "p99", "p99.9", "p99.99"]);
        assert_eq!(percentile_label(0.5), "p68.38");
    }

    #[test]
    fn the_latency_axis_spans_whole_decades_around_every_value() {
        let curves = vec![vec![(0.0, 150.0), (4.0, 23_000.0)]];
        assert_eq!(decades(&curves), (100.0, 100_000.0));
        assert_eq!(decades(&[]), (1.0, 10.0), "one decade for no value");
        let flat = vec![vec![(0.0, 1000.0), (4.0, 1000.0)]];
        assert_eq!(decades(&flat), (1000.0, 10_000.0), "never an empty axis");
    }

    /// The points of the curve drawn in `color` (the legend's line is
    /// wider: 3, not 2).
    fn curve_points(svg: &str, color: RGBColor) -> Vec<(f64, f64)> {
        let RGBColor(r, g, b) = color;
        let head = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\" stroke-width=\"2\" points=\"");
        let Some(at) = svg.find(&head) else {
            return Vec::new();
        };
        let rest = &svg[at + head.len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        rest[..end]
            .split_whitespace()
            .filter_map(|xy| {
                let (x, y) = xy.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn a_slowed_run_takes_its_systems_colour_dashed() {
        let results = [
            result("trilog", 100),
            result("trilog-slow", 200),
            result("raft3", 2000),
        ];
        let s = svg("slow", &results).expect("drawn");
        assert!(s.contains("trilog-slow (3 nodes)"), "in the legend");
        // raft3 is the second system: the second colour, not the third.
        assert!(curve_points(&s, PALETTE[1]).len() > 100, "raft3's curve");
        assert!(curve_points(&s, PALETTE[2]).is_empty(), "no third colour");
        // trilog's one solid curve, and many dashes of its colour.
        let RGBColor(r, g, b) = PALETTE[0];
        let dashes = s
            .matches(&format!("stroke=\"#{r:02X}{g:02X}{b:02X}\""))
            .count();
        assert!(dashes > 10, "{dashes} strokes of trilog's colour");
    }

    #[test]
    fn each_system_is_a_rising_curve_named_in_the_legend() {
        let results = [
            result("trilog", 100),
            result("raft3", 2000),
            result("raft5", 30_000),
        ];
        let s = svg("append latency <loopback>", &results).expect("drawn");
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
        for name in ["trilog (3 nodes)", "raft3 (3 nodes)", "raft5 (3 nodes)"] {
            assert!(s.contains(name), "{name} missing in the legend");
        }
        for label in ["p0", "p90", "p99", "p99.9", "p99.99", "100 us", "100 ms"] {
            assert!(
                s.contains(&format!("\n{label}\n")),
                "axis label {label} missing"
            );
        }
        assert!(s.contains("&lt;loopback&gt;"), "the title is escaped");
        let mut right_ends = Vec::new();
        for (i, r) in results.iter().enumerate() {
            let points = curve_points(&s, PALETTE[i]);
            // plotters merges points that fall on one pixel.
            assert!(points.len() > 100, "{}: {} points", r.name, points.len());
            // Left to right, and up (SVG's y grows downwards): latency
            // never falls as the percentile rises.
            for w in points.windows(2) {
                assert!(w[0].0 <= w[1].0 && w[0].1 >= w[1].1, "{}: {w:?}", r.name);
            }
            right_ends.push(points[points.len() - 1]);
        }
        // A slower system's curve ends higher up.
        assert!(right_ends[0].1 > right_ends[1].1 && right_ends[1].1 > right_ends[2].1);
    }

    #[test]
    fn no_result_is_an_empty_plot() {
        let s = svg("nothing", &[]).expect("drawn");
        assert!(curve_points(&s, PALETTE[0]).is_empty());
        assert!(
            s.contains("\n1 us\n") && s.contains("\n10 us\n"),
            "one decade: {s}"
        );
        assert!(!s.contains("nodes)"), "no legend");
    }
}
