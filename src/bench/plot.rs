//! Latency-by-percentile plots (SVG), one line per series, as HdrHistogram's own
//! plotter draws them: the x axis is `1 / (1 - percentile)` on a log scale, so 90%,
//! 99%, 99.9% and 99.99% are evenly spaced and the tail gets the room it deserves.

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
        let _ = std::fs::remove_file(&path);
    }
}
