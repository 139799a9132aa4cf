//! One accepted connection, from its handshake to its close: routed by path
//! ([`session`]), a publisher ([`publisher`]), a subscriber's reader
//! ([`subscriber`]) and writer ([`writer`], woken through its [`sub_writer`] handle),
//! the pings and idle closes of every connection ([`keepalive`]), and the per-second
//! budgets of a connection's requests ([`per_second`]).

pub mod keepalive;
pub mod per_second;
pub mod publisher;
pub mod session;
pub mod sub_writer;
pub mod subscriber;
pub mod writer;
