//! Plots (SVG). Latency by percentile, one line per series, as HdrHistogram's own
//! plotter draws them: the x axis is `1 / (1 - percentile)` on a log scale, so 90%,
//! 99%, 99.9% and 99.99% are evenly spaced and the tail gets the room it deserves.
//! And latency against throughput for a rate sweep, with the 1 ms line that defines a
//! relay's capacity.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Draws `series` (label, latency histogram in ns) into an SVG file at `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let max_us = series
        .iter()
        .map(|(_, h)| h.max() as f64 / 1e3)
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (1.0f64..100_000.0f64).log_scale(),
            (0.1f64..max_us * 1.5).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&|x| percent_label(100.0 * (1.0 - 1.0 / x)))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    for (i, (label, h)) in series.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = (0..=400)
            .map(|k| {
                // From p = 0 to p = 0.99999, evenly on the 1/(1-p) log axis.
                let x = 10f64.powf(k as f64 * 5.0 / 400.0);
                let p = 1.0 - 1.0 / x;
                (x, (h.value_at_quantile(p) as f64 / 1e3).max(0.1))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

/// One variant's latency–throughput curve: (deliveries/s, p50, p99, p99.99 in µs).
pub type Curve = (String, Vec<(f64, f64, f64, f64)>);

/// Which latency of a curve point a line draws.
type PointValue = fn(&(f64, f64, f64, f64)) -> f64;

/// Draws latency against delivered throughput (x: deliveries/s, y: µs on a log scale),
/// p50, p99 and p99.99 per variant, and the 1 ms line that defines capacity.
pub fn write_curve_svg(path: &Path, title: &str, curves: &[Curve]) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plot: {e}");
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let points = curves.iter().flat_map(|(_, c)| c.iter());
    let max_x = points.clone().map(|p| p.0).fold(1.0f64, f64::max);
    let max_y = points.map(|p| p.3).fold(1_000.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x * 1.05, (10f64..max_y * 1.5).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("deliveries per second")
        .y_desc("latency (us)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 1000.0), (max_x * 1.05, 1000.0)],
            BLACK.mix(0.4),
        ))
        .map_err(|e| err(&e))?
        .label("1 ms (capacity limit on p99)");
    for (i, (label, curve)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series: [(&str, PointValue, u32); 3] = [
            ("p50", |p| p.1, 1),
            ("p99", |p| p.2, 3),
            ("p99.99", |p| p.3, 1),
        ];
        for (q, value, width) in series {
            let line: Vec<(f64, f64)> = curve.iter().map(|p| (p.0, value(p).max(10.0))).collect();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(width)))
                .map_err(|e| err(&e))?
                .label(format!("{label} {q}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                });
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// `0%`, `90%`, `99.9%`: as many decimals as the percentile needs, no trailing zeros.
fn percent_label(p: f64) -> String {
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_a_plot() {
        assert_eq!(percent_label(0.0), "0%");
        assert_eq!(percent_label(99.9), "99.9%");
        assert_eq!(percent_label(99.99), "99.99%");
        let mut h = crate::metrics::hop::new_histogram();
        for v in 1..10_000u64 {
            let _ = h.record(v * 100);
        }
        let path = std::env::temp_dir().join(format!("feedrelay-plot-{}.svg", std::process::id()));
        write_svg(&path, "test", &[("a".into(), &h)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("99.9%"));
        let curves = vec![(
            "relay".to_owned(),
            vec![(1e5, 100.0, 300.0, 900.0), (5e5, 200.0, 1200.0, 4000.0)],
        )];
        write_curve_svg(&path, "curve", &curves).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("relay p99") && svg.contains("deliveries per second"));
        let _ = std::fs::remove_file(&path);
    }
}
