//! The scale run's plot: throughput and latency against the number of
//! logs the same load is spread over, side by side, drawn with plotters
//! into an SVG document. The x axes are logarithmic (1, 10, 100, 1000
//! logs); the latency axis is logarithmic in microseconds.

use plotters::prelude::*;

use super::ReportError;
use crate::scale::ScaleRun;

const WIDTH_PX: u32 = 1000;
const HEIGHT_PX: u32 = 460;
const TITLE_FONT: u32 = 20;
const LABEL_FONT: u32 = 15;
const THROUGHPUT: RGBColor = RGBColor(0x1b, 0x9e, 0x77);
const P50: RGBColor = RGBColor(0x75, 0x70, 0xb3);
const P99: RGBColor = RGBColor(0xd9, 0x5f, 0x02);

/// Throughput (left) and p50 and p99 (right) of every run, by its number
/// of logs, titled `title`, as an SVG document.
pub fn scale_svg(title: &str, runs: &[ScaleRun]) -> Result<String, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::Plot("no run to plot".into()));
    }
    let mut out = String::new();
    draw(&mut out, title, runs).map_err(|e| ReportError::Plot(e.to_string()))?;
    Ok(out)
}

/// The logs axis: from 1 to the next power of ten past the largest run.
fn logs_axis(runs: &[ScaleRun]) -> (f64, f64) {
    let max = runs.iter().map(|r| r.logs).max().unwrap_or(1).max(1) as f64;
    (1.0, 10f64.powf(max.log10().floor() + 1.0))
}

fn draw(
    out: &mut String,
    title: &str,
    runs: &[ScaleRun],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", TITLE_FONT))?;
    let (left, right) = root.split_horizontally(WIDTH_PX / 2);
    let (xlo, xhi) = logs_axis(runs);
    let ops_max = runs.iter().map(|r| r.ops_per_s).fold(0.0, f64::max) * 1.2;

    let mut ops = ChartBuilder::on(&left)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xlo..xhi).log_scale(), 0f64..ops_max.max(1.0))?;
    ops.configure_mesh()
        .x_desc("logs")
        .y_desc("committed appends/s")
        .x_label_formatter(&|n| format!("{n:.0}"))
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", LABEL_FONT))
        .draw()?;
    let points: Vec<(f64, f64)> = runs.iter().map(|r| (r.logs as f64, r.ops_per_s)).collect();
    ops.draw_series(LineSeries::new(
        points.iter().copied(),
        THROUGHPUT.stroke_width(2),
    ))?
    .label("throughput")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], THROUGHPUT.stroke_width(3)));
    ops.draw_series(
        points
            .iter()
            .map(|p| Circle::new(*p, 4, THROUGHPUT.filled())),
    )?;
    legend(&mut ops, SeriesLabelPosition::LowerRight)?;

    let us_max = runs
        .iter()
        .map(|r| r.p99_us.max(r.p50_us))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let us_min = runs
        .iter()
        .map(|r| r.p50_us.min(r.p99_us))
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let ylo = 10f64.powf(us_min.log10().floor());
    let yhi = 10f64.powf(us_max.log10().floor() + 1.0);
    let mut lat = ChartBuilder::on(&right)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    lat.configure_mesh()
        .x_desc("logs")
        .y_desc("append latency (us)")
        .x_label_formatter(&|n| format!("{n:.0}"))
        .y_label_formatter(&|us| format!("{us:.0}"))
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", LABEL_FONT))
        .draw()?;
    for (name, color, pick) in [
        (
            "p50",
            P50,
            (|r: &ScaleRun| r.p50_us) as fn(&ScaleRun) -> u64,
        ),
        ("p99", P99, |r: &ScaleRun| r.p99_us),
    ] {
        let points: Vec<(f64, f64)> = runs
            .iter()
            .map(|r| (r.logs as f64, pick(r).max(1) as f64))
            .collect();
        lat.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        lat.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    legend(&mut lat, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

/// A chart's legend of its labelled series, boxed, at `at`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font(("sans-serif", LABEL_FONT))
        .background_style(WHITE)
        .border_style(BLACK)
        .position(at)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(logs: usize, ops_per_s: f64, p50_us: u64, p99_us: u64) -> ScaleRun {
        ScaleRun {
            logs,
            ops_per_s,
            p50_us,
            p99_us,
            node_rss_bytes: 0,
            errors: 0,
            dropped: 0,
        }
    }

    #[test]
    fn every_run_is_a_point_of_each_curve() {
        let runs = [
            run(1, 2000.0, 2026, 18_319),
            run(100, 2000.0, 4619, 41_535),
            run(1000, 1990.0, 3471, 19_471),
        ];
        let svg = scale_svg("scale", &runs).expect("plot");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for label in ["throughput", "p50", "p99", "logs"] {
            assert!(svg.contains(label), "{label} missing");
        }
        // A dot per run on each of the three curves.
        assert_eq!(svg.matches("<circle").count(), 3 * runs.len());
        assert_eq!(logs_axis(&runs), (1.0, 10_000.0));
        assert!(scale_svg("none", &[]).is_err());
    }
}
