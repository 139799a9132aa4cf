//! One accepted connection, from its handshake to its close: routed by path
//! ([`session`]), a publisher ([`publisher`]), a subscriber's reader
//! ([`subscriber`]) and writer ([`writer`], woken through its [`sub_writer`] handle),
//! and the pings and idle closes of every connection ([`keepalive`]).

pub mod keepalive;
pub mod publisher;
pub mod session;
pub mod sub_writer;
pub mod subscriber;
pub mod writer;
