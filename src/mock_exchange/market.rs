//! A deterministic trade stream: the same wall-clock tick gives the same message on
//! every mock exchange process, so two of them are true redundant A/B lines.
//!
//! Tick `k` happens at `k / rate` seconds after the Unix epoch; it is a trade on symbol
//! `k % symbols` with per-symbol sequence number `k / symbols`. A restarted exchange
//! carries on from the current tick, so a client that was away sees a gap, as it would
//! on a real feed.

use std::fmt::Write;

/// Ticker names for the first symbols; more are numbered.
const NAMES: [&str; 20] = [
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT",
    "DOTUSDT", "LINKUSDT", "LTCUSDT", "TRXUSDT", "ATOMUSDT", "NEARUSDT", "APTUSDT", "ARBUSDT",
    "OPUSDT", "FILUSDT", "ETCUSDT", "XLMUSDT",
];

/// The symbols and the tick rate of a stream.
#[derive(Debug, Clone)]
pub struct Market {
    symbols: Vec<String>,
    /// Stream names, `btcusdt@trade`.
    streams: Vec<String>,
    rate: u64,
}

impl Market {
    /// `symbols` symbols, `rate` trades per second over all of them.
    pub fn new(symbols: usize, rate: u64) -> Market {
        let symbols: Vec<String> = (0..symbols.max(1))
            .map(|i| match NAMES.get(i) {
                Some(n) => (*n).to_owned(),
                None => format!("SYM{i:04}USDT"),
            })
            .collect();
        let streams = symbols
            .iter()
            .map(|s| format!("{}@trade", s.to_ascii_lowercase()))
            .collect();
        Market {
            symbols,
            streams,
            rate: rate.max(1),
        }
    }

    /// Number of symbols.
    pub fn symbols(&self) -> usize {
        self.symbols.len()
    }

    /// The symbols' names (`BTCUSDT`, ...), the topics at `/data/s`.
    pub fn symbol_names(&self) -> &[String] {
        &self.symbols
    }

    /// The index of stream `name` (`btcusdt@trade`), if it exists.
    pub fn stream_index(&self, name: &str) -> Option<usize> {
        self.streams.iter().position(|s| s == name)
    }

    /// The tick current at `unix_ns`.
    pub fn tick_at(&self, unix_ns: u64) -> u64 {
        (u128::from(unix_ns) * u128::from(self.rate) / 1_000_000_000) as u64
    }

    /// When tick `k` happens, in ns since the epoch.
    pub fn time_of(&self, k: u64) -> u64 {
        (u128::from(k) * 1_000_000_000).div_ceil(u128::from(self.rate)) as u64
    }

    /// The symbol index of tick `k`.
    pub fn symbol_of(&self, k: u64) -> usize {
        (k % self.symbols.len() as u64) as usize
    }

    /// Appends tick `k`'s message (a Binance-style combined-stream trade) to `out`.
    /// Topic at `/data/s`, sequence number at `/data/u`, and the tick's scheduled time
    /// in ns at `/data/ts` (latency measured from it is free of coordinated omission).
    pub fn write_trade(&self, k: u64, out: &mut String) {
        let n = self.symbols.len() as u64;
        let sym = (k % n) as usize;
        let seq = k / n;
        // A price that wanders deterministically.
        let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let price = 100_000 + (sym as u64 * 7_919) % 50_000 + h % 1_000;
        let qty = 1 + h % 997;
        let due_ns = self.time_of(k);
        let event_ms = due_ns / 1_000_000;
        let _ = write!(
            out,
            r#"{{"stream":"{}","data":{{"e":"trade","E":{event_ms},"ts":{due_ns},"s":"{}","u":{seq},"p":"{}.{:02}","q":"0.{qty:03}","m":{}}}}}"#,
            self.streams[sym],
            self.symbols[sym],
            price / 100,
            price % 100,
            h & 1 == 1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_the_same_everywhere_and_sequences_are_per_symbol() {
        let m = Market::new(3, 1000);
        assert_eq!(m.tick_at(1_000_000_000), 1000);
        assert_eq!(m.tick_at(m.time_of(12_345)), 12_345);
        let (mut a, mut b) = (String::new(), String::new());
        m.write_trade(3001, &mut a);
        Market::new(3, 1000).write_trade(3001, &mut b);
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["data"]["s"], "ETHUSDT");
        assert_eq!(v["data"]["u"], 1000);
        assert_eq!(v["data"]["ts"], 3_001_000_000u64);
        assert_eq!(v["stream"], "ethusdt@trade");
        assert_eq!(m.stream_index("solusdt@trade"), Some(2));
        assert_eq!(Market::new(25, 1).symbols(), 25);
    }
}
