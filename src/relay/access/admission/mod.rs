//! Who may start a handshake: limits checked at accept, before a connection costs more
//! than its socket.
//!
//! - `max_connections` bounds connections open over all workers, handshaking or not.
//!   When the relay is full, its workers stop accepting: new connections wait in the
//!   kernel's backlog (and are served as soon as room frees) instead of being answered
//!   503 after a handshake they did not need to make.
//! - `max_pending_handshakes` bounds connections that have not finished their opening
//!   handshake, over all workers, and `max_pending_per_address` what one source may
//!   have under way (an IPv4 address, or an IPv6 /64, the smallest block one host is
//!   given). A connection past either is *held*: it waits, holding only its socket, for
//!   a slot (within `handshake_timeout_ms`, then closed). So a burst from one address (a
//!   gateway, every desk reconnecting after a restart) is served in turn instead of cut
//!   mid-handshake.
//! - Slots are shared fairly between sources, as nginx and HAProxy users expect of a
//!   server facing the internet: a freed slot goes to the held connection whose source
//!   has the fewest handshakes under way, and when every slot is taken, a connection
//!   from a source holding fewer than the greediest one *evicts* that source's oldest
//!   handshake (closed, counted as `evicted`). A few addresses holding every slot with
//!   connections that never speak cannot keep anyone else out for longer than it takes
//!   the evicted connection's worker to close it.
//! - `max_connections_per_address` bounds what one source holds open (held ones
//!   included), and `max_new_connections_per_address_per_second` how fast it may open
//!   them (`rate`); past either, a connection is closed at accept.
//!
//! Every refusal is counted by reason. The counts are shared by the workers (atomics, and
//! a lock held for a map update per connection opened, handshaken or closed, never per
//! message).

mod rate;
mod source;
mod ticket;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use slab::Slab;

use crate::io::listener::AcceptGate;
use rate::ConnectRate;
pub use source::AddressKey;
use ticket::Ticket;
pub use ticket::{Evicted, Granted};

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections open at once, over all workers, handshaking or not.
    pub max_connections: usize,
    /// Connections in their opening handshake at once, over all workers.
    pub max_pending_handshakes: usize,
    /// Connections open at once from one source address.
    pub max_connections_per_address: usize,
    /// Connections in their opening handshake at once from one source address.
    pub max_pending_per_address: usize,
    /// New connections a second from one source address (a burst of this many at once
    /// passes); 0: no limit.
    pub max_new_connections_per_address_per_second: u32,
}

/// Why a connection was closed before its handshake finished: at accept, held past
/// the timeout, or evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds `max_connections_per_address` already.
    AddressConnections,
    /// Held for a handshake slot longer than the handshake timeout.
    AddressPending,
    /// The relay filled up between the pause check and the accept (workers race).
    Full,
    /// Its address opened more than `max_new_connections_per_address_per_second`.
    AddressRate,
    /// Its handshake slot was given to a source holding fewer (the fair share).
    Evicted,
    /// It came from a trusted load balancer without a valid PROXY header.
    ProxyHeader,
}

impl Refusal {
    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::AddressConnections => "address_connections",
            Refusal::AddressPending => "address_pending",
            Refusal::Full => "full",
            Refusal::AddressRate => "address_rate",
            Refusal::Evicted => "evicted",
            Refusal::ProxyHeader => "proxy_header",
        }
    }

    /// Every reason, in label order.
    pub const ALL: [Refusal; 6] = [
        Refusal::AddressConnections,
        Refusal::AddressPending,
        Refusal::Full,
        Refusal::AddressRate,
        Refusal::Evicted,
        Refusal::ProxyHeader,
    ];
}

/// What one source address holds.
#[derive(Debug, Default)]
struct PerAddress {
    open: usize,
    /// Handshake slots it holds (granted ones whose task has not looked yet included).
    pending: usize,
    /// Of those, the ones told to give their slot up and not yet gone.
    evicting: usize,
    /// Its handshakes under way, oldest first (the next to evict at the front).
    handshaking: VecDeque<Arc<Ticket>>,
    /// Its connections held for a slot, in the order they came.
    waiting: VecDeque<Arc<Ticket>>,
}

impl PerAddress {
    /// The slots it holds that are not already being given up.
    fn share(&self) -> usize {
        self.pending - self.evicting
    }
}

/// The per-address state and the relay-wide counts that go with it, under one lock.
#[derive(Debug)]
struct Book {
    by_address: HashMap<AddressKey, PerAddress>,
    /// Connections held for a slot, over all addresses.
    waiting: usize,
    rate: ConnectRate,
}

/// The relay's admission state, shared by its workers.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    open: AtomicUsize,
    pending: AtomicUsize,
    book: Mutex<Book>,
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Accept loops paused for room, woken when a connection closes.
    waiting: Mutex<Slab<Waker>>,
}

/// A connection let in: it holds its place in the counts until dropped (so a panic or
/// an early return releases it too).
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    key: AddressKey,
    ticket: Arc<Ticket>,
    /// It holds a handshake slot (its address's and the relay's) and has seen so.
    pending: bool,
    /// It was held at accept and has not seen a slot yet (see [`Admitted::slot`]).
    held: bool,
}

impl Admitted {
    /// Whether it must wait for a handshake slot before its handshake starts.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Resolves once a handshake slot is granted (at once for a connection that was
    /// not held). Slots go to the source holding fewest, each source's in the order
    /// they came.
    pub async fn slot(&mut self) {
        if !self.held {
            return;
        }
        Granted(Arc::clone(&self.ticket)).await;
        self.held = false;
        self.pending = true;
    }

    /// Resolves if this connection's handshake slot is taken back for a source
    /// holding fewer: the handshake must stop (counted here).
    pub fn evicted(&self) -> Evicted {
        Evicted(Arc::clone(&self.ticket))
    }

    /// Counts this connection as closed for eviction.
    pub fn count_evicted(&self) {
        self.admission.count(Refusal::Evicted);
    }

    /// The opening handshake finished: the connection no longer counts as pending.
    pub fn handshake_done(&mut self) {
        if !std::mem::replace(&mut self.pending, false) {
            return;
        }
        let a = &self.admission;
        if let Ok(mut book) = a.book.lock() {
            a.release_slot(&mut book, self.key, &self.ticket);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        a.open.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut book) = a.book.lock() {
            // Granted while it was not looking: the slot is its to give back.
            let holds_slot = self.pending || (self.held && self.ticket.is_granted());
            if self.held && !holds_slot {
                if let Some(e) = book.by_address.get_mut(&self.key) {
                    let before = e.waiting.len();
                    e.waiting.retain(|t| !Arc::ptr_eq(t, &self.ticket));
                    let left = before - e.waiting.len();
                    book.waiting -= left;
                }
            }
            if holds_slot {
                a.release_slot(&mut book, self.key, &self.ticket);
            }
            if let Some(e) = book.by_address.get_mut(&self.key) {
                e.open = e.open.saturating_sub(1);
                if e.open == 0 {
                    book.by_address.remove(&self.key);
                }
            }
        }
        a.wake_waiting();
    }
}

impl Admission {
    /// Admission with these limits.
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            book: Mutex::new(Book {
                by_address: HashMap::new(),
                waiting: 0,
                rate: ConnectRate::new(
                    limits.max_new_connections_per_address_per_second,
                    Instant::now(),
                ),
            }),
            refused: Default::default(),
            waiting: Mutex::new(Slab::new()),
        })
    }

    /// Lets a connection from `peer` start its handshake, or holds it for a slot
    /// ([`Admitted::is_held`]), or says why not (counted).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let key = AddressKey::of(peer.ip());
        let Ok(mut guard) = self.book.lock() else {
            return Err(self.count(Refusal::Full));
        };
        let book = &mut *guard;
        if self.open.load(Ordering::Acquire) >= self.limits.max_connections {
            return Err(self.count(Refusal::Full));
        }
        if book
            .by_address
            .get(&key)
            .is_some_and(|e| e.open >= self.limits.max_connections_per_address)
        {
            return Err(self.count(Refusal::AddressConnections));
        }
        if !book.rate.take(key, Instant::now()) {
            return Err(self.count(Refusal::AddressRate));
        }
        let ticket = Ticket::new();
        let relay_room = self.pending.load(Ordering::Acquire) < self.limits.max_pending_handshakes;
        let entry = book.by_address.entry(key).or_default();
        entry.open += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        let address_room = entry.pending < self.limits.max_pending_per_address;
        // Behind the ones already held: slots go in the order connections came.
        let direct = relay_room && address_room && entry.waiting.is_empty();
        if direct {
            entry.pending += 1;
            entry.handshaking.push_back(Arc::clone(&ticket));
            self.pending.fetch_add(1, Ordering::AcqRel);
        } else {
            entry.waiting.push_back(Arc::clone(&ticket));
            book.waiting += 1;
            if !relay_room && address_room {
                self.evict_for(book, key);
            }
            self.hand_over(book);
        }
        drop(guard);
        let mut admitted = Admitted {
            admission: Arc::clone(self),
            key,
            ticket,
            pending: direct,
            held: !direct,
        };
        if admitted.held && admitted.ticket.is_granted() {
            // Handed a slot on the spot (see `hand_over`).
            admitted.held = false;
            admitted.pending = true;
        }
        Ok(admitted)
    }

    /// Every slot is taken and `key` holds fewer than the greediest source: that
    /// source's oldest handshake is told to give its slot up (which then goes to the
    /// fairest held connection, see [`Admission::hand_over`]).
    fn evict_for(&self, book: &mut Book, key: AddressKey) {
        let mine = book.by_address.get(&key).map_or(0, PerAddress::share);
        let greediest = book
            .by_address
            .iter_mut()
            .filter(|(k, _)| **k != key)
            .max_by_key(|(_, e)| e.share());
        if let Some((_, g)) = greediest {
            if g.share() > mine + 1 {
                if let Some(t) = g.handshaking.pop_front() {
                    g.evicting += 1;
                    t.evict();
                }
            }
        }
    }

    /// A slot held by `ticket` of `key` is given back; handed on to whoever should
    /// have it next.
    fn release_slot(&self, book: &mut Book, key: AddressKey, ticket: &Arc<Ticket>) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        if let Some(e) = book.by_address.get_mut(&key) {
            e.pending = e.pending.saturating_sub(1);
            let before = e.handshaking.len();
            e.handshaking.retain(|t| !Arc::ptr_eq(t, ticket));
            if before == e.handshaking.len() && ticket.is_evicted() {
                // Taken out of the list when it was evicted.
                e.evicting = e.evicting.saturating_sub(1);
            }
        }
        self.hand_over(book);
    }

    /// Grants free slots to held connections: each to the first held connection of
    /// the source with the fewest handshakes under way (and room under its own cap).
    fn hand_over(&self, book: &mut Book) {
        while book.waiting > 0
            && self.pending.load(Ordering::Acquire) < self.limits.max_pending_handshakes
        {
            let cap = self.limits.max_pending_per_address;
            let fairest = book
                .by_address
                .values_mut()
                .filter(|e| !e.waiting.is_empty() && e.pending < cap)
                .min_by_key(|e| e.share());
            let Some(e) = fairest else { return };
            let Some(t) = e.waiting.pop_front() else {
                return;
            };
            e.pending += 1;
            e.handshaking.push_back(Arc::clone(&t));
            book.waiting -= 1;
            self.pending.fetch_add(1, Ordering::AcqRel);
            t.grant();
        }
    }

    /// Counts a connection from a trusted load balancer closed for a bad PROXY header.
    pub fn count_bad_proxy_header(&self) {
        self.count(Refusal::ProxyHeader);
    }

    /// Counts a held connection closed because no slot freed in time.
    pub fn count_held_too_long(&self) {
        self.count(Refusal::AddressPending);
    }

    fn count(&self, r: Refusal) -> Refusal {
        self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Connections open now (handshaking or not).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections in their opening handshake now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Source addresses with a connection open now.
    pub fn addresses(&self) -> usize {
        self.book.lock().map_or(0, |b| b.by_address.len())
    }

    /// Connections closed before their handshake so far, by reason.
    pub fn refused(&self) -> [(Refusal, u64); Refusal::ALL.len()] {
        Refusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }

    fn has_room_now(&self) -> bool {
        self.open.load(Ordering::Acquire) < self.limits.max_connections
    }

    fn wake_waiting(&self) {
        let wakers: Vec<Waker> = match self.waiting.lock() {
            Ok(mut w) if !w.is_empty() => w.drain().collect(),
            _ => return,
        };
        for w in wakers {
            w.wake();
        }
    }
}

impl AcceptGate for Arc<Admission> {
    fn has_room(&self) -> bool {
        self.has_room_now()
    }

    fn room(&self) -> impl Future<Output = ()> + '_ {
        Room {
            admission: self,
            key: None,
        }
    }
}

/// Resolves when the relay has room for another connection.
struct Room<'a> {
    admission: &'a Admission,
    key: Option<usize>,
}

impl Future for Room<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.admission.has_room_now() {
            return Poll::Ready(());
        }
        let Ok(mut waiting) = self.admission.waiting.lock() else {
            return Poll::Pending;
        };
        match self.key.and_then(|k| waiting.get_mut(k)) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => self.key = Some(waiting.insert(cx.waker().clone())),
        }
        drop(waiting);
        // Room freed between the check and the registration: do not miss it.
        if self.admission.has_room_now() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        if let (Some(k), Ok(mut waiting)) = (self.key.take(), self.admission.waiting.lock()) {
            waiting.try_remove(k);
        }
    }
}

#[cfg(test)]
mod tests;
