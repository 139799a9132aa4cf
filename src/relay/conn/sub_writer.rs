//! A subscriber's writer as the others see it (`SubWriter`): the reader, the
//! worker's flush and the keepalive sweep wake it, close it, and read when it last
//! heard from its peer. The worker keeps one per local subscriber.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::io::driver::port_write::PortWriter;
use crate::io::driver::Driver;
use crate::io::local::WakeFlag;
use crate::io::rt;
use crate::relay::access::revocation::Held;
use crate::ws::CloseCode;

/// A subscriber's writer, as the reader, the worker's flush and the keepalive sweep
/// see it.
pub(in crate::relay) struct SubWriter {
    pub(super) driver: Rc<Driver>,
    pub(super) notify: WakeFlag,
    /// When the subscriber last sent anything (a pong counts).
    pub(in crate::relay) last_rx: Cell<Instant>,
    /// Set when the relay closes the subscriber on its own account (idle past the
    /// timeout, token expired): the code and reason of the close frame.
    pub(super) close_now: Cell<Option<(CloseCode, &'static str)>>,
    /// When its token expires (`None`: no token, or no expiry).
    pub(super) expires: Cell<Option<SystemTime>>,
    /// Raised when `expires` changes or the subscriber is gone (wakes the expiry task).
    pub(super) expiry: WakeFlag,
    /// A vectored write is in flight (the peer may have stopped reading).
    pub(super) writing: Cell<bool>,
    /// It was logged as behind and has not caught up since.
    pub(in crate::relay) behind: Cell<bool>,
    /// The reader is done: the writer stops touching the shard (the id may be reused).
    pub(in crate::relay) gone: Cell<bool>,
    /// The writer has ended (after FIN, or after a failed write).
    pub(super) finished: WakeFlag,
    pub(super) finished_flag: Cell<bool>,
    /// What the subscriber was admitted with (its token follows a `refresh`), for the
    /// re-check after a reload.
    pub(in crate::relay) held: RefCell<Held>,
    /// Its part in the worker's fan-out.
    pub(super) direct: Direct,
}

impl SubWriter {
    /// Closes the subscriber with `code` and `reason`: what is queued is dropped, the
    /// close frame goes out.
    pub(in crate::relay) fn close(
        self: &Rc<Self>,
        code: CloseCode,
        reason: &'static str,
        linger: Duration,
    ) {
        self.close_now.set(Some((code, reason)));
        self.wake(false, linger);
    }

    /// The subscriber's address.
    pub(in crate::relay) fn peer(&self) -> std::net::SocketAddr {
        self.driver.peer()
    }

    /// Wakes the writer: its queue changed. If the relay is closing the subscriber and
    /// a write is stuck behind a full socket, the subscriber stopped reading and will
    /// never read our close frame: it gets the linger period, then is cut.
    pub(in crate::relay) fn wake(self: &Rc<Self>, closing: bool, linger: Duration) {
        self.notify.raise();
        if closing && self.writing.get() {
            let w = Rc::clone(self);
            rt::spawn(async move {
                rt::sleep(linger).await;
                if w.writing.get() {
                    w.driver.transport().shutdown_both_now();
                }
            });
        }
    }
}

impl SubWriter {
    /// A writer for the subscriber on `driver`, whose token (if any) expires at
    /// `expires`.
    pub(super) fn new(driver: Rc<Driver>, expires: Option<SystemTime>, held: Held) -> SubWriter {
        SubWriter {
            direct: Direct::new(Rc::clone(&driver)),
            driver,
            notify: WakeFlag::new(),
            last_rx: Cell::new(Instant::now()),
            close_now: Cell::new(None),
            expires: Cell::new(expires),
            expiry: WakeFlag::new(),
            writing: Cell::new(false),
            behind: Cell::new(false),
            gone: Cell::new(false),
            finished: WakeFlag::new(),
            finished_flag: Cell::new(false),
            held: RefCell::new(held),
        }
    }
}

/// Closes the subscriber with 1008 when its token expires, unless a refresh moved the
/// expiry on first; ends when the subscriber is gone.
pub(super) async fn close_when_expired(writer: Rc<SubWriter>, linger: Duration) {
    loop {
        if writer.gone.get() {
            return;
        }
        let Some(at) = writer.expires.get() else {
            return;
        };
        match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => {
                let _ = rt::timeout(left, writer.expiry.wait()).await;
            }
            _ => {
                writer.close(CloseCode::POLICY_VIOLATION, "token expired", linger);
                return;
            }
        }
    }
}

/// A subscriber's side of the worker's fan-out ([`fanout`](super::fanout)).
pub(in crate::relay) struct Direct {
    /// Its writer task waits with nothing in hand and lets the fan-out write.
    pub(super) parked: Cell<bool>,
    /// On the ready list, or with a write in flight.
    pub(super) listed: Cell<bool>,
    /// The writer task waits for the fan-out's write in flight to end.
    pub(super) task_waiting: Cell<bool>,
    /// A write of the fan-out's failed: the writer task ends the connection.
    pub(super) failed: Cell<bool>,
    /// The connection's writes through the fan-out's port (inline: the fan-out reads
    /// it with the flags above on every write, so one allocation, not two).
    pub(super) port: PortWriter,
}

impl Direct {
    pub(super) fn new(driver: Rc<Driver>) -> Direct {
        Direct {
            parked: Cell::new(false),
            listed: Cell::new(false),
            task_waiting: Cell::new(false),
            failed: Cell::new(false),
            port: PortWriter::new(driver),
        }
    }
}
