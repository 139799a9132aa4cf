//! `feedrelay echo`: every message goes back as it came.
//!
//! It exercises the whole server path (handshake, frames, unmasking, UTF-8, close,
//! permessage-deflate) and is what conformance suites and the interop tests talk to.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::io::driver::server::{accept_loop, ServerConfig, Service};
use crate::io::driver::Reply;
use crate::io::worker::{run_workers, CoreMap};
use crate::io::IoError;
use crate::relay::run::{listen, Say};
use crate::ws::{DeflateServerConfig, MessageKind};

/// Echoes each message back as one frame of the same type.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    fn on_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        _: Option<&[u8]>,
        reply: &mut Reply,
    ) {
        reply.send(kind, payload);
    }
}

/// Runs the echo server on `listen_on` until SIGINT/SIGTERM.
pub fn run(
    listen_on: SocketAddr,
    workers: Option<usize>,
    cores: Option<Vec<usize>>,
    max_message_bytes: usize,
    deflate: bool,
    say: Say<'_>,
) -> Result<(), IoError> {
    let map = CoreMap::new(workers, cores.as_deref())?;
    let started = listen(&map, listen_on, &Default::default(), "ws", "echo", "", say)?;
    let mut config = ServerConfig::default();
    config.limits.max_message_bytes = max_message_bytes;
    config.limits.max_frame_bytes = max_message_bytes;
    config.deflate = deflate.then(DeflateServerConfig::default);
    let listeners: Arc<Mutex<Vec<Option<std::net::TcpListener>>>> = Arc::new(Mutex::new(
        started.listeners.into_iter().map(Some).collect(),
    ));
    let shutdown = started.shutdown;
    run_workers(&map, move |i| {
        let listener = listeners.lock().ok().and_then(|mut l| l.get_mut(i)?.take());
        let config = Rc::new(config.clone());
        let shutdown = shutdown.clone();
        async move {
            let listener =
                listener.ok_or_else(|| IoError::Config(format!("no listener for worker {i}")))?;
            accept_loop(listener, || Echo, config, shutdown).await
        }
    })?;
    say("feedrelay echo stopped");
    Ok(())
}
