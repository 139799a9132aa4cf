//! One accepted connection, from its handshake to its close: served ([`session`]) as
//! the side its path asks for, if it may take it (`route`); a publisher
//! ([`publisher`]), a subscriber's reader ([`subscriber`], its token's [`refresh`])
//! and writer ([`writer`], woken through its [`sub_writer`] handle, or written for by
//! the worker's [`fanout`], from its [`fanout_list`], while it is parked), the pings
//! and idle closes of every connection ([`keepalive`]), and the per-second budgets of
//! a connection's requests ([`per_second`]).

pub mod fanout;
pub mod fanout_list;
pub mod keepalive;
pub mod per_second;
pub mod publisher;
pub mod refresh;
mod route;
pub mod session;
pub mod sub_writer;
pub mod subscriber;
pub mod writer;
