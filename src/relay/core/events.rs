//! Events the relay sends subscribers on its own account (not relayed messages): a
//! feed gone `stale` or `live` again, and a sequence `gap` no line could fill. Each is
//! one text frame, sent once per change to every subscriber of the topics concerned
//! (that has not opted out with `events=0`), never per message.
//!
//! ```text
//! {"event":"stale","feed":"nasdaq","topics":["AAPL","MSFT"]}
//! {"event":"live","feed":"nasdaq","topics":["AAPL","MSFT"]}
//! {"event":"gap","topic":"AAPL","from":1201,"to":1204}
//! ```

use bytes::Bytes;
use serde::Serialize;

#[derive(Serialize)]
struct Health<'a> {
    event: &'a str,
    feed: &'a str,
    topics: Vec<&'a str>,
}

#[derive(Serialize)]
struct Gap<'a> {
    event: &'a str,
    topic: &'a str,
    from: u64,
    to: u64,
}

/// `{"event":"stale"|"live","feed":..,"topics":[..]}`.
pub fn health(event: &str, feed: &str, topics: &[Bytes]) -> String {
    let topics = topics
        .iter()
        .map(|t| std::str::from_utf8(t).unwrap_or("\u{fffd}"))
        .collect();
    simd_json::to_string(&Health {
        event,
        feed,
        topics,
    })
    .unwrap_or_default()
}

/// `{"event":"gap","topic":..,"from":A,"to":B}`: `from..=to` were never delivered.
pub fn gap(topic: &[u8], from: u64, to: u64) -> String {
    let topic = String::from_utf8_lossy(topic);
    simd_json::to_string(&Gap {
        event: "gap",
        topic: &topic,
        from,
        to,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_json() {
        let topics = [Bytes::from_static(b"AAPL"), Bytes::from_static(b"MS\"FT")];
        assert_eq!(
            health("stale", "nasdaq", &topics),
            r#"{"event":"stale","feed":"nasdaq","topics":["AAPL","MS\"FT"]}"#
        );
        assert_eq!(
            gap(b"AAPL", 1201, 1204),
            r#"{"event":"gap","topic":"AAPL","from":1201,"to":1204}"#
        );
    }
}
