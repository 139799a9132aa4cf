//! History kept in a JetStream stream (`[nats] history = "jetstream"`): what relays
//! export is also kept by the server, each subject's last messages with their
//! positions ([`POSITION_HEADER`](super::POSITION_HEADER)), so a relay that starts, or
//! starts again, reads them back and resumes its subscribers from where they were
//! instead of resetting them.
//!
//! At start, before the relay takes connections: the stream is created if it does not
//! exist (capturing the configured subjects, keeping `per_subject` messages each, on
//! file, the oldest dropped first); an importing relay then reads it through an
//! ordered consumer from its first message to the last one there when reading began,
//! keeping what its import patterns match, up to `max_fill_bytes`. The live
//! subscriptions are made *before* that read, so nothing falls between the two; what
//! both carry is recognised by its position and taken once. A stream that cannot be
//! reached within `fill_timeout` is said and skipped: the relay starts with an empty
//! history (its subscribers get `reset`), never later than that.

use std::time::Instant;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::Client;
use futures_util::StreamExt;

use super::handoff::Imported;
use super::options::StreamHistory;

/// What reading the stream back gave, per worker in the order the stream kept it.
#[derive(Debug, Default)]
pub struct Filled {
    /// Messages for each worker (the worker their subject maps to).
    pub per_worker: Vec<Vec<Imported>>,
    /// Messages read back in all.
    pub messages: u64,
}

/// Creates the stream if it does not exist; then, when `patterns` is not empty, reads
/// it back. `worker_for` names the worker a subject's messages go to. Errors and the
/// timeout are said (the relay starts without the history), not returned.
pub(super) async fn prepare(
    client: &Client,
    h: &StreamHistory,
    patterns: &[String],
    workers: usize,
    worker_for: impl Fn(&str) -> usize,
) -> Filled {
    let started = Instant::now();
    let read = async {
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(stream::Config {
                name: h.stream.clone(),
                subjects: h.subjects.clone(),
                max_messages_per_subject: h.per_subject as i64,
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::Old,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the stream {:?}: {e}", h.stream))?;
        if patterns.is_empty() {
            return Ok(Filled::default());
        }
        read_back(stream, h, patterns, workers, worker_for).await
    };
    match tokio::time::timeout(h.fill_timeout, read).await {
        Ok(Ok(filled)) => {
            if !patterns.is_empty() {
                tracing::info!(
                    "nats: history read back from the stream {:?}: {} messages in {:?}",
                    h.stream,
                    filled.messages,
                    started.elapsed()
                );
            }
            filled
        }
        Ok(Err(e)) => {
            tracing::warn!(
                "nats: history: {e}; starting without it (subscribers that resume get reset)"
            );
            Filled::default()
        }
        Err(_) => {
            tracing::warn!(
                "nats: history: the stream {:?} was not read within {:?}; starting without it (subscribers that resume get reset)",
                h.stream,
                h.fill_timeout
            );
            Filled::default()
        }
    }
}

/// Reads the stream from its first message to the last one there now.
async fn read_back(
    mut stream: stream::Stream,
    h: &StreamHistory,
    patterns: &[String],
    workers: usize,
    worker_for: impl Fn(&str) -> usize,
) -> Result<Filled, String> {
    let mut filled = Filled {
        per_worker: (0..workers).map(|_| Vec::new()).collect(),
        messages: 0,
    };
    let last = stream
        .info()
        .await
        .map_err(|e| format!("the stream {:?}: {e}", h.stream))?
        .state
        .last_sequence;
    if last == 0 {
        return Ok(filled);
    }
    // One pattern is filtered by the server (2.9 servers take one filter); more are
    // matched here.
    let filter_subject = match patterns {
        [one] => one.clone(),
        _ => String::new(),
    };
    let messages = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("a consumer on {:?}: {e}", h.stream))?
        .messages()
        .await
        .map_err(|e| format!("reading {:?}: {e}", h.stream))?;
    tokio::pin!(messages);
    let mut bytes = 0usize;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| format!("reading {:?}: {e}", h.stream))?;
        let at = m.info().map(|i| i.stream_sequence).unwrap_or(last);
        let subject = m.subject.as_str();
        if patterns.iter().any(|p| subject_matches(p, subject)) {
            bytes += m.payload.len();
            if bytes > h.max_fill_bytes {
                tracing::warn!(
                    "nats: history: the stream holds more than max_fill_bytes ({} bytes); the rest is not read back",
                    h.max_fill_bytes
                );
                break;
            }
            let w = worker_for(subject);
            if let Some(queue) = filled.per_worker.get_mut(w) {
                let (payload, headers) = (m.message.payload.clone(), m.message.headers.as_ref());
                queue.push(Imported::from_nats(payload, headers, Instant::now(), None));
                filled.messages += 1;
            }
        }
        if at >= last {
            break;
        }
    }
    Ok(filled)
}

/// Whether NATS subject `subject` matches `pattern` (`*`: one token, `>`: one or more
/// at the end).
pub(super) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_patterns_as_nats_matches_them() {
        for (p, s, m) in [
            ("feedrelay.>", "feedrelay.BTC", true),
            ("feedrelay.>", "feedrelay.a.b", true),
            ("feedrelay.>", "feedrelay", false),
            ("feedrelay.*", "feedrelay.BTC", true),
            ("feedrelay.*", "feedrelay.a.b", false),
            ("feedrelay.BTC", "feedrelay.BTC", true),
            ("feedrelay.BTC", "feedrelay.ETH", false),
            ("feedrelay.BTC", "feedrelay.BTC.x", false),
            ("*.BTC", "other.BTC", true),
            ("other.>", "feedrelay.BTC", false),
        ] {
            assert_eq!(subject_matches(p, s), m, "{p} ~ {s}");
        }
    }
}
