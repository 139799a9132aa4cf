//! The relay: topics, routing and fan-out, the application on top of [`io`](crate::io)
//! and [`ws`](crate::ws).
//!
//! A feed message (from a `/pub` publisher or an exchange feed line) has its topic read
//! and is framed once; the same `Bytes` goes to every subscriber of its topic, on this
//! worker and, over bounded channels, on the others. A slow subscriber only ever affects
//! its own queue. The pure parts ([`shard`], [`routing`], [`queue`], [`control`],
//! [`topic`], [`feed::arbiter`]) do no IO and are tested without sockets; the rest
//! drives them from the workers through `io`'s driver and runtime.
//!
//! - [`run`]: starting and stopping a relay (`feedrelay run`).
//! - [`config`]: the TOML configuration, checked at load.
//! - [`worker`]: one worker's context and the tasks it runs.
//! - [`arena`]: the chunks relayed frames are encoded into (no allocation per message).
//! - [`session`]: one accepted connection, routed by path.
//! - [`ingest`]: a message enters: topic, frame once, publish.
//! - [`compression`]: permessage-deflate: which messages, compressed once for everyone.
//! - [`subscriber`]: a subscriber's reader (control ops) and writer (batched writes).
//! - [`keepalive`]: pings and idle closes, one sweep per worker.
//! - [`links`]: the channels between workers.
//! - [`shard`]: one worker's share of the routing state (no IO); [`stats`], its counters.
//! - [`last_value`], [`snapshot`]: the last message of each topic, and a subscription
//!   that starts with them.
//! - [`routing`]: which subscribers want a topic, here and on other workers.
//! - [`queue`]: a subscriber's bounded queue and slow-consumer policies.
//! - [`control`]: subscribe/unsubscribe requests and the replies.
//! - [`topic`]: a message's topic (and sequence number) by JSON pointer.
//! - [`feed`]: exchange feed lines: config, arbitration, backoff, the line task.
//! - [`report`]: metrics intervals, feed counters and the exit summary.
//! - [`nats`]: `[nats]`, NATS as the backbone between relays: what is exported and
//!   imported, and imports ingested on the workers.

pub mod access;
pub mod admission;
pub mod arena;
pub mod compression;
pub mod config;
pub mod control;
pub mod events;
pub mod feed;
pub mod ingest;
pub mod jwt;
pub mod keepalive;
pub mod last_value;
pub mod links;
pub mod live;
pub mod nats;
pub mod queue;
pub mod report;
pub mod routing;
pub mod run;
pub mod session;
pub mod shard;
pub mod snapshot;
pub mod stats;
pub mod subscriber;
pub mod topic;
pub mod worker;
