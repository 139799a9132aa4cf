//! Feed lines grouped and assigned to workers, before anything listens: a bad
//! `ca_file` stops the start with one line, and every line of a group lands on one
//! worker, so the group's arbiter is single-threaded state with no lock.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::arbiter::Arbiter;
use super::line::{Group, Line, LineState};
use super::FeedConfig;
use crate::io::transport;
use crate::io::IoError;
use crate::relay::config::Config;
use crate::relay::core::topic::JsonPointer;
use crate::ws::Limits;

/// A group of feed lines with their TLS trust, as planned before the workers start.
#[derive(Clone)]
pub struct FeedPlan {
    /// The group's name.
    pub group: String,
    /// Its lines.
    pub lines: Vec<(FeedConfig, Option<Arc<rustls::ClientConfig>>)>,
}

/// Groups the configured feeds, builds each line's TLS trust (a bad `ca_file` stops the
/// start), and assigns group `i` to worker `i % workers`.
pub fn plan_feeds(config: &Config, workers: usize) -> Result<Vec<Vec<FeedPlan>>, IoError> {
    let mut groups: Vec<FeedPlan> = Vec::new();
    for feed in &config.feeds {
        let tls = match (feed.url.starts_with("wss://"), &feed.ca_file) {
            (false, _) => None,
            (true, ca) => Some(
                transport::client_config(ca.as_deref())
                    .map_err(|e| IoError::Config(format!("feed {}: {e}", feed.name)))?,
            ),
        };
        let name = feed.group_name();
        match groups.iter_mut().find(|g| g.group == name) {
            Some(g) => g.lines.push((feed.clone(), tls)),
            None => groups.push(FeedPlan {
                group: name.to_owned(),
                lines: vec![(feed.clone(), tls)],
            }),
        }
    }
    let mut per_worker = vec![Vec::new(); workers.max(1)];
    for (i, g) in groups.into_iter().enumerate() {
        per_worker[i % workers.max(1)].push(g);
    }
    Ok(per_worker)
}

/// The lines of one planned group, ready to run on this worker: `pointer` is the
/// relay's topic pointer (for lines without their own), `limits` the protocol limits.
pub fn start_group(
    plan: FeedPlan,
    pointer: &JsonPointer,
    limits: Limits,
    config: &Config,
) -> Result<Vec<Rc<Line>>, IoError> {
    // The config was checked at load: a pointer that still fails to parse is a bug
    // worth a clear error, not a panic.
    let parse = |field: &str, p: &str| {
        JsonPointer::parse(p).map_err(|e| IoError::Config(format!("{field}: {e}")))
    };
    let group = Rc::new(Group {
        sequenced: plan.lines.iter().all(|(f, _)| f.seq_pointer.is_some()),
        arbiter: RefCell::new(Arbiter::new(plan.lines.len())),
        health: Default::default(),
        name: plan.group,
    });
    let mut lines = Vec::with_capacity(plan.lines.len());
    for (index, (feed, tls)) in plan.lines.into_iter().enumerate() {
        let topic_pointer = match &feed.topic_pointer {
            Some(p) => parse("topic_pointer", p)?,
            None => pointer.clone(),
        };
        let seq_pointer = feed
            .seq_pointer
            .as_deref()
            .map(|p| parse("seq_pointer", p))
            .transpose()?;
        lines.push(Rc::new(Line {
            config: feed,
            index,
            group: Rc::clone(&group),
            tls,
            limits,
            topic_pointer,
            seq_pointer,
            socket: config.socket_options(),
            write_timeout: config.write_timeout(),
            max_topic_bytes: config.max_topic_bytes,
            state: LineState::default(),
        }));
    }
    Ok(lines)
}
