//! The relay's side of NATS (`[nats]`): the section checked and turned into the
//! client's options ([`config`]), and imported messages ingested on a worker,
//! arbitrated across exporting relays ([`import`]). The client itself runs on its own
//! thread in [`io::nats`](crate::io::nats).

pub mod config;
pub mod import;
