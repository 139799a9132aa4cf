//! Events the relay sends subscribers on its own account (not relayed messages): a
//! feed gone `stale` or `live` again, and a sequence `gap` no line could fill. Each is
//! one text frame, sent once per change to every subscriber of the topics concerned
//! (that has not opted out with `events=0`), never per message. A `stale`/`live` event
//! names the topics the subscriber holds (all of them for a `*` subscriber): a feed of
//! 10,000 topics going stale sends a subscriber of two a frame naming two, not 10,000.
//!
//! ```text
//! {"event":"stale","feed":"nasdaq","topics":["AAPL","MSFT"]}
//! {"event":"live","feed":"nasdaq","topics":["AAPL","MSFT"]}
//! {"event":"gap","topic":"AAPL","from":1201,"to":1204}
//! {"event":"shutdown","reconnect_in_ms":412}
//! ```
//!
//! `shutdown` comes last, just before the close (1001), when the relay is stopped
//! (SIGTERM/SIGINT): reconnect after `reconnect_in_ms` (spread over a second, so that
//! every client of a restarted relay does not come back in the same instant), to the
//! same address (a rolling restart has another process there already).

use bytes::Bytes;
use serde::Serialize;

use super::control::control_frame;

/// An event to deliver, as the shards see it (shared between workers).
#[derive(Debug)]
pub struct Notice {
    /// The topics it concerns.
    pub topics: Vec<Bytes>,
    /// The event naming all of them (for `*` subscribers, and subscribers of all).
    pub frame: Bytes,
    /// For a health event, its name (`stale`, `live`) and feed: a subscriber of only
    /// some of the topics gets an event naming just those.
    pub health: Option<(&'static str, String)>,
}

impl Notice {
    /// A `stale`/`live` event of `feed` over `topics`.
    pub fn health(event: &'static str, feed: String, topics: Vec<Bytes>) -> Notice {
        let frame = control_frame(&health(event, &feed, &topics));
        Notice {
            topics,
            frame,
            health: Some((event, feed)),
        }
    }

    /// A `gap` event of `topic`.
    pub fn gap(topic: Bytes, from: u64, to: u64) -> Notice {
        let frame = control_frame(&gap(&topic, from, to));
        Notice {
            topics: vec![topic],
            frame,
            health: None,
        }
    }

    /// The frame for a subscriber holding the topics at `held` (indexes into
    /// `topics`): the shared one when it holds all of them (or this is not a health
    /// event), else one naming only those.
    pub fn frame_for(&self, held: &[u32]) -> Bytes {
        match &self.health {
            Some((event, feed)) if held.len() < self.topics.len() => {
                let topics: Vec<Bytes> = held
                    .iter()
                    .filter_map(|&i| self.topics.get(i as usize).cloned())
                    .collect();
                control_frame(&health(event, feed, &topics))
            }
            _ => self.frame.clone(),
        }
    }
}

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

/// How far the `shutdown` event's reconnect hints are spread, ms.
pub const RECONNECT_SPREAD_MS: u64 = 1_000;

/// `{"event":"shutdown","reconnect_in_ms":N}`.
pub fn shutdown(reconnect_in_ms: u64) -> String {
    format!(r#"{{"event":"shutdown","reconnect_in_ms":{reconnect_in_ms}}}"#)
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
