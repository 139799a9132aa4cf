//! The service behind `feedrelay echo`: every message goes back as it came.
//!
//! It exercises the whole server path (handshake, frames, unmasking, UTF-8, close) and
//! is what conformance suites and the interop tests talk to.

use crate::io::server::Service;
use crate::ws::{encode_frame, MessageKind};

/// Echoes each message back as one frame of the same type, unmasked (server side).
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    fn on_message(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) {
        encode_frame(out, kind.opcode(), true, payload, None);
    }
}
