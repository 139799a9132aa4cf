//! The relay's side of NATS (`[nats]`): the section checked and turned into the
//! client's options ([`config`]); how a topic becomes one subject token
//! ([`subject`]); the books the NATS thread keeps for the relay ([`ledger`]: subjects
//! and numbers per exported topic, [`sequence`]; gaps per imported origin; origins as
//! indexes); and imported messages ingested on a worker, arbitrated across exporting
//! relays ([`import`]). The client itself runs on its own thread in
//! [`io::nats`](crate::io::nats) and only carries what these decide.

pub mod config;
pub mod import;
pub mod ledger;
pub mod sequence;
pub mod subject;
