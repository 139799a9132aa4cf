//! One worker's histograms, one per hop.

use hdrhistogram::Histogram;

/// Where in the relay a latency was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// Read completion → parsed and routed.
    Ingress,
    /// Handed to another worker's channel → taken off it.
    Queue,
    /// Queued for a subscriber → the ring took its write's completion.
    Egress,
    /// Compressing one message (permessage-deflate), on the worker that ingested it.
    Deflate,
    /// Received from NATS by the NATS thread → taken by the worker that ingests it.
    Import,
}

impl Hop {
    /// Every hop, in path order.
    pub const ALL: [Hop; 5] = [
        Hop::Ingress,
        Hop::Queue,
        Hop::Egress,
        Hop::Deflate,
        Hop::Import,
    ];

    /// The label and hlog tag.
    pub fn name(self) -> &'static str {
        match self {
            Hop::Ingress => "ingress",
            Hop::Queue => "queue",
            Hop::Egress => "egress",
            Hop::Deflate => "deflate",
            Hop::Import => "import",
        }
    }

    /// Whether a table may leave this hop out when nothing was recorded (compression
    /// is off or nothing qualified; nothing imported from NATS).
    pub fn optional(self) -> bool {
        matches!(self, Hop::Deflate | Hop::Import)
    }
}

/// Largest latency recorded, in ns (60 s); larger values are clamped to it.
pub const MAX_TRACKABLE_NS: u64 = 60_000_000_000;

/// Three significant digits: 0.1% resolution at any magnitude.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram sized for hop latencies.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid: 1 <= low, high >= 2 * low, digits <= 5")
}

/// Histograms for every hop, in ns.
#[derive(Debug, Clone)]
pub struct HopHistograms {
    hists: [Histogram<u64>; Hop::ALL.len()],
}

impl Default for HopHistograms {
    fn default() -> Self {
        HopHistograms {
            hists: std::array::from_fn(|_| new_histogram()),
        }
    }
}

impl HopHistograms {
    /// Records one latency (clamped to 1 ns .. [`MAX_TRACKABLE_NS`]).
    #[inline]
    pub fn record(&mut self, hop: Hop, ns: u64) {
        let _ = self.hists[hop as usize].record(ns.clamp(1, MAX_TRACKABLE_NS));
    }

    /// The histogram of one hop.
    pub fn get(&self, hop: Hop) -> &Histogram<u64> {
        &self.hists[hop as usize]
    }

    /// Adds `other` into these.
    pub fn add(&mut self, other: &HopHistograms) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            let _ = a.add(b);
        }
    }

    /// Moves the recorded values into `empty` and takes its (empty) histograms in
    /// their place: no allocation and no clearing here. `empty` must have been
    /// [`reset`](Self::reset) (the collector resets the ones it hands back, off the
    /// workers).
    pub fn swap_out(&mut self, empty: &mut HopHistograms) {
        std::mem::swap(&mut self.hists, &mut empty.hists);
    }

    /// Clears every histogram (their memory kept).
    pub fn reset(&mut self) {
        for h in &mut self.hists {
            h.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_take_and_add() {
        let mut h = HopHistograms::default();
        h.record(Hop::Ingress, 1_000);
        h.record(Hop::Egress, 0);
        h.record(Hop::Queue, u64::MAX);
        let mut interval = HopHistograms::default();
        h.swap_out(&mut interval);
        assert_eq!(h.get(Hop::Ingress).len(), 0);
        assert_eq!(interval.get(Hop::Ingress).len(), 1);
        assert_eq!(interval.get(Hop::Egress).min(), 1);
        assert!(interval.get(Hop::Queue).max() >= MAX_TRACKABLE_NS);
        let mut total = HopHistograms::default();
        total.add(&interval);
        total.add(&interval);
        assert_eq!(total.get(Hop::Ingress).len(), 2);
    }
}
