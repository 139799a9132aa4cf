//! Who may start a handshake: limits checked at accept, before a connection costs more
//! than its socket.
//!
//! - `max_connections` bounds connections open over all workers, handshaking or not.
//!   When the relay is full, its workers stop accepting: new connections wait in the
//!   kernel's backlog (and are served as soon as room frees) instead of being answered
//!   503 after a handshake they did not need to make.
//! - `max_pending_handshakes` bounds connections that have not finished their opening
//!   handshake, over all workers: a slow or silent client holds a slot for at most
//!   `handshake_timeout_ms`, and only so many can.
//! - `max_connections_per_address` and `max_pending_per_address` bound what one source
//!   may hold (an IPv4 address, or an IPv6 /64, the smallest block one host is given).
//!   A connection past the first is closed at accept. One past the second is *held*:
//!   it waits, holding only its socket, for one of its address's handshake slots (in
//!   the order they came, within `handshake_timeout_ms`, then closed), so a burst from
//!   one address (a gateway, every desk reconnecting after a restart) is served in
//!   turn instead of cut mid-handshake, while one address flooding the relay with
//!   connections that never speak holds at most its own slots and cannot keep anyone
//!   else out.
//!
//! Every refusal is counted by reason. The counts are shared by the workers (atomics, and
//! a lock held for a map update per connection opened or closed, never per message).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::io::listener::AcceptGate;

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
}

/// Why a connection was closed before its handshake: at accept, or held past the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds `max_connections_per_address` already.
    AddressConnections,
    /// Held for a handshake slot of its address (`max_pending_per_address` were under
    /// way) longer than the handshake timeout.
    AddressPending,
    /// The relay filled up between the pause check and the accept (workers race).
    Full,
}

impl Refusal {
    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::AddressConnections => "address_connections",
            Refusal::AddressPending => "address_pending",
            Refusal::Full => "full",
        }
    }

    /// Every reason, in label order.
    pub const ALL: [Refusal; 3] = [
        Refusal::AddressConnections,
        Refusal::AddressPending,
        Refusal::Full,
    ];
}

/// What one source address holds.
#[derive(Debug, Default)]
struct PerAddress {
    open: usize,
    pending: usize,
    /// Connections held for a handshake slot, woken one per slot freed, in order.
    waiting: std::collections::VecDeque<Waker>,
}

/// The relay's admission state, shared by its workers.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    open: AtomicUsize,
    pending: AtomicUsize,
    by_address: Mutex<HashMap<AddressKey, PerAddress>>,
    refused: [AtomicU64; 3],
    /// Accept loops paused for room, woken when a connection closes or finishes its
    /// handshake.
    waiting: Mutex<Slab<Waker>>,
}

/// A source as the per-address limits see it: an IPv4 address, or an IPv6 /64
/// (IPv4-mapped IPv6 addresses count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    AddressKey::V6(prefix)
                }
            },
        }
    }
}

/// A connection let in: it holds its place in the counts until dropped (so a panic or
/// an early return releases it too).
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    key: AddressKey,
    /// It holds one of the handshake slots (its address's and the relay's).
    pending: bool,
    /// It was held at accept and has not had a slot yet (see [`Admitted::slot`]).
    held: bool,
}

impl Admitted {
    /// Whether it must wait for a handshake slot before its handshake starts.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Resolves once a handshake slot of its address is free and taken (at once for a
    /// connection that was not held). Waiters are served in the order they came.
    pub fn slot(&mut self) -> Slot<'_> {
        Slot {
            admitted: self,
            registered: None,
        }
    }

    /// The opening handshake finished: the connection no longer counts as pending.
    pub fn handshake_done(&mut self) {
        if !std::mem::replace(&mut self.pending, false) {
            return;
        }
        self.admission.pending.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut map) = self.admission.by_address.lock() {
            if let Some(a) = map.get_mut(&self.key) {
                a.pending = a.pending.saturating_sub(1);
                if let Some(w) = a.waiting.pop_front() {
                    w.wake();
                }
            }
        }
        self.admission.wake_waiting();
    }
}

/// The future of [`Admitted::slot`].
#[derive(Debug)]
pub struct Slot<'a> {
    admitted: &'a mut Admitted,
    /// The waker it left in its address's queue, if any.
    registered: Option<Waker>,
}

impl Future for Slot<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let admitted = &mut *this.admitted;
        if !admitted.held {
            return Poll::Ready(());
        }
        let a = Arc::clone(&admitted.admission);
        let Ok(mut map) = a.by_address.lock() else {
            return Poll::Pending;
        };
        let Some(entry) = map.get_mut(&admitted.key) else {
            return Poll::Pending;
        };
        let room = entry.pending < a.limits.max_pending_per_address
            && a.pending.load(Ordering::Acquire) < a.limits.max_pending_handshakes;
        if room {
            entry.pending += 1;
            a.pending.fetch_add(1, Ordering::AcqRel);
            admitted.pending = true;
            admitted.held = false;
            return Poll::Ready(());
        }
        if !entry.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            entry.waiting.push_back(cx.waker().clone());
            this.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Slot<'_> {
    /// A connection that stops waiting (timed out, closed) leaves the queue, so the
    /// next slot wakes one that still waits.
    fn drop(&mut self) {
        let admitted = &*self.admitted;
        if !admitted.held {
            return;
        }
        if let Ok(mut map) = admitted.admission.by_address.lock() {
            if let Some(entry) = map.get_mut(&admitted.key) {
                if let Some(mine) = &self.registered {
                    entry.waiting.retain(|w| !w.will_wake(mine));
                }
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        a.open.fetch_sub(1, Ordering::AcqRel);
        if self.pending {
            a.pending.fetch_sub(1, Ordering::AcqRel);
        }
        if let Ok(mut map) = a.by_address.lock() {
            if let Some(entry) = map.get_mut(&self.key) {
                entry.open = entry.open.saturating_sub(1);
                if self.pending {
                    entry.pending = entry.pending.saturating_sub(1);
                    if let Some(w) = entry.waiting.pop_front() {
                        w.wake();
                    }
                }
                if entry.open == 0 {
                    map.remove(&self.key);
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
            by_address: Mutex::new(HashMap::new()),
            refused: Default::default(),
            waiting: Mutex::new(Slab::new()),
        })
    }

    /// Lets a connection from `peer` start its handshake, or holds it for one of its
    /// address's slots ([`Admitted::is_held`]), or says why not (counted).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let key = AddressKey::of(peer.ip());
        let mut held = false;
        let refusal = {
            let Ok(mut map) = self.by_address.lock() else {
                return Err(self.count(Refusal::Full));
            };
            let entry = map.entry(key).or_default();
            if self.open.load(Ordering::Acquire) >= self.limits.max_connections
                || self.pending.load(Ordering::Acquire) >= self.limits.max_pending_handshakes
            {
                Some(Refusal::Full)
            } else if entry.open >= self.limits.max_connections_per_address {
                Some(Refusal::AddressConnections)
            } else if entry.pending >= self.limits.max_pending_per_address
                || !entry.waiting.is_empty()
            {
                // (Behind the ones already held: slots go in the order connections came.)
                // Held: it counts as open (so the per-address bound caps the held too),
                // not as pending, until a slot of its address frees.
                entry.open += 1;
                self.open.fetch_add(1, Ordering::AcqRel);
                held = true;
                None
            } else {
                entry.open += 1;
                entry.pending += 1;
                self.open.fetch_add(1, Ordering::AcqRel);
                self.pending.fetch_add(1, Ordering::AcqRel);
                None
            }
        };
        match refusal {
            Some(r) => {
                // An entry made for this check alone must not linger.
                if let Ok(mut map) = self.by_address.lock() {
                    if map.get(&key).is_some_and(|e| e.open == 0) {
                        map.remove(&key);
                    }
                }
                Err(self.count(r))
            }
            None => Ok(Admitted {
                admission: Arc::clone(self),
                key,
                pending: !held,
                held,
            }),
        }
    }

    /// Counts a held connection closed because no slot of its address freed in time.
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
        self.by_address.lock().map_or(0, |m| m.len())
    }

    /// Connections closed before their handshake so far, by reason.
    pub fn refused(&self) -> [(Refusal, u64); 3] {
        Refusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }

    fn has_room_now(&self) -> bool {
        self.open.load(Ordering::Acquire) < self.limits.max_connections
            && self.pending.load(Ordering::Acquire) < self.limits.max_pending_handshakes
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
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 10,
            max_pending_handshakes: 6,
            max_connections_per_address: 4,
            max_pending_per_address: 3,
        }
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Polls `slot` once: whether the held connection got its handshake slot.
    fn got_slot(held: &mut Admitted) -> bool {
        let mut slot = std::pin::pin!(held.slot());
        slot.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[test]
    fn one_address_is_held_to_its_caps_and_others_get_in() {
        let a = Admission::new(limits());
        let mut flood: Vec<Admitted> = (0..3)
            .map(|i| a.admit(peer(&format!("10.0.0.1:{}", 1000 + i))).unwrap())
            .collect();
        // Past the pending cap: held, not closed; it gets the first slot that frees.
        let mut held = a.admit(peer("10.0.0.1:2000")).unwrap();
        assert!(held.is_held() && !got_slot(&mut held));
        assert_eq!((a.open(), a.pending()), (4, 3));
        flood[0].handshake_done();
        assert!(got_slot(&mut held) && !held.is_held());
        assert_eq!((a.open(), a.pending()), (4, 3));
        flood.push(held);
        // Past the connection cap (held ones count): closed at accept.
        assert_eq!(
            a.admit(peer("10.0.0.1:2002")).unwrap_err(),
            Refusal::AddressConnections
        );
        let other = a.admit(peer("10.0.0.2:1")).unwrap();
        assert!(!other.is_held());
        assert_eq!((a.open(), a.pending(), a.addresses()), (5, 4, 2));
        drop(flood);
        drop(other);
        assert_eq!((a.open(), a.pending(), a.addresses()), (0, 0, 0));
        let counts = a.refused();
        assert_eq!(counts[0].1 + counts[1].1, 1);
    }

    #[test]
    fn held_connections_get_slots_in_the_order_they_came() {
        let a = Admission::new(limits());
        let mut first: Vec<Admitted> = (0..3)
            .map(|i| a.admit(peer(&format!("10.0.0.1:{i}"))).unwrap())
            .collect();
        let mut h1 = a.admit(peer("10.0.0.1:10")).unwrap();
        assert!(!got_slot(&mut h1), "registered first");
        // A held connection that gives up (its socket closed) frees nothing it had not.
        first.pop();
        assert!(got_slot(&mut h1), "the freed slot goes to the one waiting");
        assert_eq!(a.pending(), 3);
        drop(h1);
        assert_eq!((a.open(), a.pending()), (2, 2));
    }

    #[test]
    fn the_pending_budget_and_the_total_pause_accepting() {
        let a = Admission::new(limits());
        let mut held = Vec::new();
        for i in 0..6 {
            held.push(a.admit(peer(&format!("10.0.1.{i}:1"))).unwrap());
        }
        assert!(
            !a.has_room(),
            "six handshakes under way: the budget is spent"
        );
        assert_eq!(a.admit(peer("10.0.2.1:1")).unwrap_err(), Refusal::Full);
        for h in &mut held {
            h.handshake_done();
        }
        assert!(a.has_room());
        for i in 0..4 {
            let mut c = a.admit(peer(&format!("10.0.3.{i}:1"))).unwrap();
            c.handshake_done();
            held.push(c);
        }
        assert!(!a.has_room(), "ten open: full");
        held.pop();
        assert!(a.has_room());
    }

    #[test]
    fn ipv6_counts_by_64_bit_prefix_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| AddressKey::of(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
        let a = Admission::new(limits());
        let _held: Vec<_> = (0..3)
            .map(|i| a.admit(peer(&format!("[2001:db8::{i}]:1"))).unwrap())
            .collect();
        assert!(
            a.admit(peer("[2001:db8::99]:1")).unwrap().is_held(),
            "another address of the same /64 is the same source"
        );
        assert!(a.admit(peer("[2001:db8:0:1::1]:1")).is_ok());
    }
}
