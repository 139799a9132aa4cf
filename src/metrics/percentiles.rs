//! The one percentile table: p50 to max in µs, one row per histogram, with optional
//! extra columns. The relay's exit summary, `feedrelay bench` and `feedrelay demo` all
//! print latency through it, so a figure reads the same wherever it appears.

use hdrhistogram::Histogram;

/// The quantiles every report shows, in order, with their column titles.
pub const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50 us"),
    (0.9, "p90 us"),
    (0.99, "p99 us"),
    (0.999, "p99.9 us"),
    (0.9999, "p99.99 us"),
];

/// p50, p90, p99, p99.9, p99.99 and max of `h` (ns values), in µs; zeros when empty.
pub fn percentiles_us(h: &Histogram<u64>) -> [f64; 6] {
    let mut out = [0.0; 6];
    if h.is_empty() {
        return out;
    }
    for (slot, (q, _)) in out.iter_mut().zip(QUANTILES) {
        *slot = h.value_at_quantile(q) as f64 / 1e3;
    }
    out[5] = h.max() as f64 / 1e3;
    out
}

/// A table under construction: a name column, count, the quantiles, max, then any
/// extra columns the caller names.
#[derive(Debug, Clone)]
pub struct PercentileTable {
    name_width: usize,
    head: String,
    /// (name, the rest of the line).
    rows: Vec<(String, String)>,
    extra: Vec<String>,
}

impl PercentileTable {
    /// A table whose first column is titled `name` (e.g. `hop`, `variant`).
    pub fn new(name: &str) -> Self {
        PercentileTable {
            name_width: name.len().max(9),
            head: name.to_owned(),
            rows: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Extra columns after max, right-aligned, in this order.
    pub fn with_columns(mut self, titles: &[&str]) -> Self {
        self.extra = titles.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Adds a row: `name`, the histogram's count and percentiles, then `extra` values
    /// (as many as there are extra columns; missing ones are left blank).
    pub fn row(&mut self, name: &str, h: &Histogram<u64>, extra: &[String]) {
        self.name_width = self.name_width.max(name.len());
        let p = percentiles_us(h);
        let mut line = format!("{:>10}", h.len());
        for v in p {
            line.push_str(&format!(" {v:>10.1}"));
        }
        for (i, title) in self.extra.iter().enumerate() {
            let v = extra.get(i).map_or("", String::as_str);
            line.push_str(&format!(" {v:>w$}", w = title.len().max(8)));
        }
        self.rows.push((name.to_owned(), line));
    }

    /// The table as text, one line per row under a title line, no trailing newline.
    pub fn render(&self) -> String {
        let w = self.name_width;
        let mut t = format!("{:<w$} {:>10}", self.head, "count");
        for (_, title) in QUANTILES {
            t.push_str(&format!(" {title:>10}"));
        }
        t.push_str(&format!(" {:>10}", "max us"));
        for title in &self.extra {
            t.push_str(&format!(" {title:>8}"));
        }
        for (name, rest) in &self.rows {
            t.push_str(&format!("\n{name:<w$} {rest}"));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up_under_their_titles() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let mut t = PercentileTable::new("hop").with_columns(&["lost"]);
        t.row("ingress", &h, &["0".into()]);
        t.row("empty", &Histogram::new(3).unwrap(), &[]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines
            .iter()
            .all(|l| l.len() == lines[0].len() || l.starts_with("empty")));
        assert!(
            lines[1].contains("500.2"),
            "p50 of 1..1000 ms in us: {text}"
        );
        assert!(lines[1].contains("1000.4"), "max: {text}");
        assert!(lines[2].contains(" 0 "), "an empty row shows zeros: {text}");
        assert_eq!(percentiles_us(&Histogram::new(3).unwrap()), [0.0; 6]);
    }
}
