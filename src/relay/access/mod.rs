//! Who may connect, decided before and at the handshake.
//!
//! - [`admission`]: who may start a handshake: the pending budget and the caps per
//!   source address.
//! - [`rules`]: the rules a handshake is checked against ([`rules::Access`]): the
//!   Origin allow-list, publisher tokens and their topic patterns, subscriber JWTs;
//!   the refusal to run open to the network.
//! - [`counts`]: what the rules refused and revoked, counted per worker.
//! - [`exposure`]: the roles a client can take, which `allow_anonymous` opens, and
//!   where each is reachable.
//! - [`refusal_log`]: refused handshakes logged at info, at most ten a second.
//! - [`jwt`]: subscriber JWTs and the topics they grant; [`jwks`]: several keys chosen
//!   by `kid`.
//! - [`revocation`]: what an open connection was admitted with, re-checked after a
//!   reload.
//! - [`secret`]: secrets read from files (tokens, keys), never logged.

pub mod admission;
pub mod counts;
pub mod exposure;
pub mod jwks;
pub mod jwt;
pub mod refusal_log;
pub mod revocation;
pub mod rules;
pub mod secret;
