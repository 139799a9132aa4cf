//! relay
#![allow(missing_docs)]
pub mod config;
pub mod control;
pub mod feed;
pub mod queue;
pub mod routing;
pub mod shard;
pub mod topic;
