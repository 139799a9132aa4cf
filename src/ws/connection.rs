//! One WebSocket connection's protocol state, after the opening handshake.
//!
//! See [`Connection`] for the contract with the IO layer.

use std::time::Instant;

use super::assembler::Assembler;
use super::close::{encode_close, parse_close_payload};
use super::close_code::CloseCode;
use super::deflate::session::DeflateSession;
use super::deflate::DeflateParams;
use super::error::WsError;
use super::frame::{encode_frame, encode_frame_rsv, encode_ping, FrameHeader, OpCode, RSV1};
use super::mask::apply_mask;
use super::types::{Event, Limits, MessageKind, Role, State};
use super::utf8::Utf8Validator;

/// The current frame whose payload is partly processed.
#[derive(Debug, Clone, Copy)]
struct FrameProgress {
    header: FrameHeader,
    header_len: usize,
    /// Payload bytes already unmasked and checked.
    done: u64,
    /// Whether the payload streams into the assembler instead of waiting in place.
    streaming: bool,
}

/// A WebSocket connection as a state machine: bytes in, events and bytes out.
///
/// It has no socket, no clock and no thread; the IO layer drives it:
///
/// - `handle_input(buf)` reads at most one frame from the start of `buf` and returns the
///   event and how many bytes it consumed; `Ok(None)` means "need more bytes". Bytes not
///   consumed must be presented again, unchanged, at the start of the next call (the
///   connection may already have unmasked and validated a prefix of a partial frame in
///   place). Call it until it returns `Ok(None)`, then read more.
/// - After each event, call `poll_transmit(out)`: it appends control frames that are due
///   (pongs, the close reply) so they go out in order with what the caller writes.
/// - `handle_timeout(now)` when `poll_timeout()` passes.
/// - Commands: `send` frames a message into the caller's buffer; `close` starts the
///   close handshake.
/// - When `state()` is [`State::Closed`] and `poll_transmit` has nothing left, close TCP
///   (a server right away; a client after the server does, §7.1.1).
///
/// An `Err` from `handle_input` fails the connection (§7.1.7): the close frame with the
/// error's code is queued and the state is `Closed`.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    limits: Limits,
    state: State,
    /// Kind of the fragmented message in progress, if any.
    fragmented: Option<MessageKind>,
    /// Frames of the current data message so far.
    fragments: usize,
    /// The frame whose payload is partly processed, if any.
    frame: Option<FrameProgress>,
    /// UTF-8 state of the text message in progress.
    utf8: Utf8Validator,
    assembler: Assembler,
    /// The assembler holds a message handed out last call; clear it first.
    assembler_delivered: bool,
    /// Encoded control frames waiting for `poll_transmit`.
    control_out: Vec<u8>,
    /// Masking-key generator (client role); see [`Connection::new`].
    rng: u64,
    /// permessage-deflate, when negotiated.
    deflate: Option<Box<DeflateSession>>,
}

impl Connection {
    /// A connection whose opening handshake is done.
    ///
    /// `seed` seeds the generator of client masking keys. RFC 6455 §5.3 wants them
    /// unpredictable to script in a browser; this core masks for a native client, so a
    /// fast generator seeded from the OS (the IO layer uses `getrandom`) is enough.
    pub fn new(role: Role, limits: Limits, seed: u64) -> Self {
        Connection {
            role,
            limits,
            state: State::Open,
            fragmented: None,
            fragments: 0,
            frame: None,
            utf8: Utf8Validator::new(),
            assembler: Assembler::new(limits.max_message_bytes),
            assembler_delivered: false,
            control_out: Vec::new(),
            rng: seed | 1,
            deflate: None,
        }
    }

    /// Runs the connection with permessage-deflate as negotiated (`params`): compressed
    /// messages are inflated (bounded by `max_message_bytes`), and what [`send`](Self::send)
    /// frames is compressed at `level` (0-9) when our side may compress at all.
    pub fn with_deflate(mut self, params: DeflateParams, level: u32) -> Self {
        self.deflate = Some(Box::new(DeflateSession::new(params, self.role, level)));
        self
    }

    /// The permessage-deflate parameters in force, if it was negotiated.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|d| d.params)
    }

    /// Whether the data message in progress is compressed.
    fn compressed(&self) -> bool {
        self.deflate.as_ref().is_some_and(|d| d.message)
    }

    /// Server or client.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the close handshake stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads at most one frame from the start of `input`. See the type's docs.
    pub fn handle_input<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<Option<(Event<'a>, usize)>, WsError> {
        if self.state == State::Closed {
            return Ok(None);
        }
        if self.assembler_delivered {
            self.assembler.clear();
            self.assembler_delivered = false;
        }
        match self.read_frame(input) {
            Ok(Some(step)) => Ok(Some(self.event(step, input))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Queued control frames (pongs, close) appended to `out`; false if there were none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.control_out.is_empty() {
            return false;
        }
        out.extend_from_slice(&self.control_out);
        self.control_out.clear();
        true
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::CloseSent { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Time passed: gives up on a close handshake the peer does not finish.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::CloseSent { deadline } = self.state {
            if now >= deadline {
                self.state = State::Closed;
            }
        }
    }

    /// Frames a message into `out` (masked in the client role), compressed when
    /// permessage-deflate was negotiated and our side may compress.
    pub fn send(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Closing> {
        if self.state != State::Open {
            return Err(Closing);
        }
        let mask = self.next_mask();
        match self
            .deflate
            .as_deref_mut()
            .and_then(|d| d.compress(payload))
        {
            Some(z) => encode_frame_rsv(out, kind.opcode(), true, RSV1, z, mask),
            None => encode_frame(out, kind.opcode(), true, payload, mask),
        }
        Ok(())
    }

    /// Frames one fragment of a message into `out`: the first uses the message's
    /// opcode, later ones [`OpCode::Continuation`]; `fin` marks the last.
    pub fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Closing> {
        if self.state != State::Open {
            return Err(Closing);
        }
        let mask = self.next_mask();
        encode_frame(out, opcode, fin, payload, mask);
        Ok(())
    }

    /// Frames a ping into `out`. Payloads over 125 bytes are cut (§5.5).
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Closing> {
        if self.state != State::Open {
            return Err(Closing);
        }
        let mask = self.next_mask();
        encode_ping(out, payload, mask);
        Ok(())
    }

    /// Starts the close handshake: queues a close frame (for `poll_transmit`) and waits
    /// for the peer's until `now + close_timeout`. The reason is cut to fit 125 bytes
    /// at a character boundary. Does nothing if a close was already sent or received.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.queue_close(Some((code, reason)));
        self.state = State::CloseSent {
            deadline: now + self.limits.close_timeout,
        };
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => {
                // xorshift64*: cheap, full period, good enough for masking (see `new`).
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                let v = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
                Some(((v >> 32) as u32).to_ne_bytes())
            }
        }
    }

    fn queue_close(&mut self, close: Option<(CloseCode, &str)>) {
        let mask = self.next_mask();
        encode_close(&mut self.control_out, close, mask);
    }

    /// §7.1.7 _Fail the WebSocket Connection_: send a close frame with the error's code
    /// (unless one was already sent), then the TCP connection is to be closed.
    fn fail(&mut self, e: &WsError) {
        if self.state == State::Open {
            let reason = e.to_string();
            self.queue_close(Some((e.close_code(), &reason)));
        }
        self.state = State::Closed;
        self.frame = None;
    }

    /// Parses and checks the frame at the start of `input`, unmasking and validating as
    /// much of its payload as is there. Returns what the frame completed, if anything.
    fn read_frame(&mut self, input: &mut [u8]) -> Result<Option<Step>, WsError> {
        let mut progress = match self.frame {
            Some(p) => p,
            None => match FrameHeader::parse_with(input, self.allowed_rsv())? {
                None => return Ok(None),
                Some((header, header_len)) => {
                    let p = self.begin_frame(header, header_len)?;
                    self.frame = Some(p);
                    if p.streaming {
                        // Consume the header now; the payload follows as it arrives.
                        return Ok(Some(Step::Progress { used: header_len }));
                    }
                    p
                }
            },
        };
        let header = progress.header;
        // A streaming frame's header was consumed when it began; an inline one's was not.
        let start = if progress.streaming {
            0
        } else {
            progress.header_len
        };
        let remaining = header.payload_len - progress.done;
        // Where the unprocessed payload starts in `input`: a streaming frame's processed
        // bytes were consumed, an inline frame's stay in place (already unmasked).
        let chunk_at = if progress.streaming {
            start
        } else {
            start + progress.done as usize
        };
        let available = (input.len().saturating_sub(chunk_at) as u64).min(remaining) as usize;
        let chunk = &mut input[chunk_at..chunk_at + available];
        if let Some(key) = header.mask {
            apply_mask(chunk, key, progress.done as usize);
        }
        // A compressed message's UTF-8 is checked once inflated.
        let text = self.frame_kind(header.opcode) == Some(MessageKind::Text);
        if text && !self.compressed() {
            self.utf8.feed(chunk).map_err(|_| WsError::InvalidUtf8)?;
        }
        progress.done += available as u64;
        let complete = progress.done == header.payload_len;
        if progress.streaming {
            if available == 0 {
                return Ok(None);
            }
            self.assembler.push(chunk)?;
            self.frame = if complete { None } else { Some(progress) };
            if !complete {
                return Ok(Some(Step::Progress { used: available }));
            }
            return self.end_data_frame(header, true, available);
        }
        if !complete {
            self.frame = Some(progress);
            return Ok(None);
        }
        self.frame = None;
        let used = start + header.payload_len as usize;
        let payload = start..used;
        match header.opcode {
            OpCode::Ping => Ok(Some(Step::Ping { payload, used })),
            OpCode::Pong => Ok(Some(Step::Pong { payload, used })),
            OpCode::Close => {
                parse_close_payload(&input[payload.clone()])?;
                Ok(Some(Step::Close { payload, used }))
            }
            _ if header.fin && header.opcode != OpCode::Continuation => {
                let kind = self
                    .frame_kind(header.opcode)
                    .unwrap_or(MessageKind::Binary);
                if self.compressed() {
                    self.inflate(kind, InflateFrom::Input(&input[payload.clone()]))?;
                    return Ok(Some(Step::Inflated {
                        kind,
                        used,
                        compressed: Some(payload),
                    }));
                }
                if text {
                    self.utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
                }
                Ok(Some(Step::InPlace {
                    kind,
                    payload,
                    used,
                }))
            }
            _ => {
                self.assembler.push(&input[payload])?;
                self.end_data_frame(header, false, used)
            }
        }
    }

    /// Reserved bits a frame header may carry: RSV1 once permessage-deflate is on.
    fn allowed_rsv(&self) -> u8 {
        if self.deflate.is_some() {
            RSV1
        } else {
            0
        }
    }

    /// Inflates the compressed message that just ended, from the caller's buffer or
    /// from the assembler, into the deflate state's buffer, and checks its UTF-8.
    fn inflate(&mut self, kind: MessageKind, from: InflateFrom<'_>) -> Result<(), WsError> {
        let Some(d) = self.deflate.as_deref_mut() else {
            return Ok(());
        };
        let compressed = match from {
            InflateFrom::Input(bytes) => bytes,
            InflateFrom::Assembler => self.assembler.as_slice(),
        };
        d.inflate(kind, compressed, self.limits.max_message_bytes)
    }

    /// Checks a new frame's header against the connection's state and limits.
    fn begin_frame(
        &mut self,
        header: FrameHeader,
        header_len: usize,
    ) -> Result<FrameProgress, WsError> {
        if header.rsv & RSV1 != 0 {
            // RFC 7692 §6: only the first frame of a data message carries "Per-Message
            // Compressed"; on a control frame or a continuation it means nothing.
            if !matches!(header.opcode, OpCode::Text | OpCode::Binary) {
                return Err(WsError::ReservedBitsSet(header.rsv));
            }
        }
        match (self.role, header.mask.is_some()) {
            // §5.1: "a server MUST close the connection upon receiving a frame that is
            // not masked."
            (Role::Server, false) => return Err(WsError::UnmaskedClientFrame),
            // §5.1: "A client MUST close a connection if it detects a masked frame."
            (Role::Client, true) => return Err(WsError::MaskedServerFrame),
            _ => {}
        }
        let data = !header.opcode.is_control();
        if data {
            // §5.4: "The fragments of one message MUST NOT be interleaved between the
            // fragments of another message" — a continuation needs an open message, and
            // a new message cannot start inside one.
            match (header.opcode, self.fragmented) {
                (OpCode::Continuation, None) => return Err(WsError::NothingToContinue),
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(WsError::ExpectedContinuation)
                }
                _ => {}
            }
            if header.payload_len > self.limits.max_frame_bytes as u64 {
                return Err(WsError::FrameTooLarge {
                    size: header.payload_len,
                    limit: self.limits.max_frame_bytes,
                });
            }
            let message_so_far = self.assembler.len() as u64 + header.payload_len;
            if message_so_far > self.limits.max_message_bytes as u64 {
                return Err(WsError::MessageTooLarge {
                    size: message_so_far,
                    limit: self.limits.max_message_bytes,
                });
            }
            if header.opcode == OpCode::Continuation {
                self.fragments += 1;
                if self.fragments > self.limits.max_fragments {
                    return Err(WsError::TooManyFragments {
                        limit: self.limits.max_fragments,
                    });
                }
            } else {
                self.fragments = 1;
                self.utf8.reset();
                if let Some(d) = self.deflate.as_deref_mut() {
                    d.message = header.rsv & RSV1 != 0;
                }
            }
        }
        let streaming =
            data && header_len as u64 + header.payload_len > self.limits.inline_frame_bytes as u64;
        if streaming {
            if let OpCode::Text | OpCode::Binary = header.opcode {
                if !header.fin {
                    self.fragmented = self.frame_kind(header.opcode);
                }
            }
        }
        Ok(FrameProgress {
            header,
            header_len,
            done: 0,
            streaming,
        })
    }

    /// The message kind a data frame belongs to.
    fn frame_kind(&self, opcode: OpCode) -> Option<MessageKind> {
        match opcode {
            OpCode::Text => Some(MessageKind::Text),
            OpCode::Binary => Some(MessageKind::Binary),
            OpCode::Continuation => self.fragmented,
            _ => None,
        }
    }

    /// A data frame whose payload is now in the assembler ended.
    fn end_data_frame(
        &mut self,
        header: FrameHeader,
        streamed: bool,
        used: usize,
    ) -> Result<Option<Step>, WsError> {
        let kind = self.frame_kind(header.opcode);
        if !header.fin {
            if !streamed && header.opcode != OpCode::Continuation {
                self.fragmented = kind;
            }
            return Ok(Some(Step::Progress { used }));
        }
        self.fragmented = None;
        if self.compressed() {
            let kind = kind.unwrap_or(MessageKind::Binary);
            self.inflate(kind, InflateFrom::Assembler)?;
            return Ok(Some(Step::Inflated {
                kind,
                used,
                compressed: None,
            }));
        }
        if kind == Some(MessageKind::Text) {
            self.utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
        }
        Ok(Some(Step::Assembled {
            kind: kind.unwrap_or(MessageKind::Binary),
            used,
        }))
    }

    /// Turns a completed step into the caller's event, acting on control frames.
    fn event<'a>(&'a mut self, step: Step, input: &'a [u8]) -> (Event<'a>, usize) {
        match step {
            Step::InPlace {
                kind,
                payload,
                used,
            } => (
                Event::Message {
                    kind,
                    payload: &input[payload],
                    compressed: None,
                },
                used,
            ),
            Step::Assembled { kind, used } => {
                self.assembler_delivered = true;
                (
                    Event::Message {
                        kind,
                        payload: self.assembler.as_slice(),
                        compressed: None,
                    },
                    used,
                )
            }
            Step::Inflated {
                kind,
                used,
                compressed,
            } => {
                // Fragments' compressed bytes are in the assembler: cleared next call.
                self.assembler_delivered = true;
                let compressed = match compressed {
                    Some(range) => &input[range],
                    None => self.assembler.as_slice(),
                };
                let payload = self.deflate.as_deref().map_or(&[][..], |d| d.inflated());
                (
                    Event::Message {
                        kind,
                        payload,
                        compressed: Some(compressed),
                    },
                    used,
                )
            }
            Step::Progress { used } => (Event::Progress, used),
            Step::Ping { payload, used } => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong
                // frame in response [...] with identical Application data", unless it
                // already sent a close frame.
                if self.state == State::Open {
                    let mask = self.next_mask();
                    encode_frame(
                        &mut self.control_out,
                        OpCode::Pong,
                        true,
                        &input[payload.clone()],
                        mask,
                    );
                }
                (Event::Ping(&input[payload]), used)
            }
            Step::Pong { payload, used } => (Event::Pong(&input[payload]), used),
            Step::Close { payload, used } => {
                // Checked in `read_frame`; parsed again here for the borrow of `input`.
                let close = parse_close_payload(&input[payload]).ok().flatten();
                // §5.5.1: "If an endpoint receives a Close frame and did not previously
                // send a Close frame, the endpoint MUST send a Close frame in response",
                // echoing the status code, as is usual.
                if self.state == State::Open {
                    self.queue_close(close.map(|(code, _)| (code, "")));
                }
                self.state = State::Closed;
                (Event::Close(close), used)
            }
        }
    }
}

/// A frame that completed, before it becomes an [`Event`] (ranges into the input, so
/// the borrow of `self` in `read_frame` ends before the event borrows again).
#[derive(Debug)]
enum Step {
    InPlace {
        kind: MessageKind,
        payload: std::ops::Range<usize>,
        used: usize,
    },
    Assembled {
        kind: MessageKind,
        used: usize,
    },
    /// A compressed message, inflated into the deflate state's buffer; its compressed
    /// bytes are in the input (`Some`) or the assembler.
    Inflated {
        kind: MessageKind,
        used: usize,
        compressed: Option<std::ops::Range<usize>>,
    },
    Progress {
        used: usize,
    },
    Ping {
        payload: std::ops::Range<usize>,
        used: usize,
    },
    Pong {
        payload: std::ops::Range<usize>,
        used: usize,
    },
    Close {
        payload: std::ops::Range<usize>,
        used: usize,
    },
}

/// Where a compressed message's bytes are.
enum InflateFrom<'a> {
    /// In place in the caller's buffer (a single frame).
    Input(&'a [u8]),
    /// In the reassembly buffer (fragments, or a frame too large to wait in place).
    Assembler,
}

/// The connection is closing: no more messages can be sent (caller's mistake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closing; no more messages can be sent")]
pub struct Closing;
