//! The relay's socket-free core: what a message means and who gets it, with no socket,
//! no thread, no timer and no clock read (callers pass the time in).
//!
//! Everything here is driven by plain calls and tested without IO; the workers
//! ([`worker`](super::worker)) and connections ([`conn`](super::conn)) drive it.
//!
//! - [`shard`]: one worker's share of the routing state, its queues and counters.
//! - [`routing`]: which subscribers want a topic, here and on other workers.
//! - [`budget`]: the relay-wide budget of subscription state.
//! - [`queue`]: a subscriber's bounded queue and slow-consumer policies.
//! - [`last_value`], [`snapshot`]: the last message of each topic, and a subscription
//!   that starts with them.
//! - [`arena`]: the chunks relayed frames are encoded into (no allocation per message).
//! - [`compression`]: permessage-deflate for relayed messages, compressed once.
//! - [`control`]: subscribe/unsubscribe requests, the replies and their frames.
//! - [`topic`]: a message's topic (and sequence number) by JSON pointer, found by
//!   [`json_scan`], a single pass that also checks the message is JSON.
//! - [`jump`]: sequence numbers too far from the last one to believe.
//! - [`sequence`]: the relay's own sequence per topic, and its envelope; [`history`]:
//!   a topic's last messages, to resume from.
//! - [`events`]: the relay's own events (`stale`, `live`, `gap`) as JSON.

pub mod arena;
pub mod budget;
pub mod compression;
pub mod control;
pub mod events;
pub mod history;
pub mod json_scan;
pub mod jump;
pub mod last_value;
pub mod queue;
pub mod routing;
pub mod sequence;
pub mod shard;
pub mod snapshot;
pub mod topic;
